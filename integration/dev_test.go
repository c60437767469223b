package integration_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// devCluster is one `gavel dev --name NAME` under test, on free ports, with
// its client config under work/home.
type devCluster struct {
	t    *testing.T
	name string
	work string
	d    *daemon
}

func startDev(t *testing.T, work, name string, extra ...string) *devCluster {
	t.Helper()
	args := []string{"dev", "--name", name, "--cells", "1", "--data-dir", filepath.Join(work, "data-"+name)}
	// The cluster's own addresses come from the gavel dev tests' port range
	// (below the kernel's ephemeral range): a port gavel dev picks for a name
	// is free when picked, but a component binding port 0 before the router
	// starts could be given it (seen once: the auctioneer's debug server took
	// the router's port).
	args = append(args, "--bbs-address", devAddr(t), "--debug-address", devAddr(t), "--router-address", devAddr(t),
		"--nats-port", strconv.Itoa(devPort(t)))
	args = append(args, extra...)
	d := &daemon{
		name: "gavel-dev-" + name, path: bin("gavel"), dir: work, logPath: filepath.Join(work, "dev-"+name+".out"),
		args: args, env: []string{"GAVEL_CONFIG=" + filepath.Join(work, "home", "config.json")},
	}
	c := &devCluster{t: t, name: name, work: work, d: d}
	t.Cleanup(func() {
		d.kill()
		killStrays(work)
		if t.Failed() {
			d.dump(t, 50)
			(&daemon{name: name + "/gavel.log", logPath: filepath.Join(work, "data-"+name, "gavel.log")}).dump(t, 60)
		}
	})
	c.start()
	return c
}

func (c *devCluster) start() {
	c.t.Helper()
	_ = os.Remove(c.d.logPath)
	if err := c.d.start(); err != nil {
		c.t.Fatal(err)
	}
	waitFor(c.t, 90*time.Second, "gavel dev --name "+c.name+" says it is running", func() error {
		if c.d.logLine("Gavel is running.") != "" {
			return nil
		}
		if err := c.d.exitedErr(); err != nil {
			return err
		}
		return errors.New("not yet")
	})
}

func (c *devCluster) stop() {
	c.t.Helper()
	if !c.d.signalGroup(syscall.SIGINT, 60*time.Second) {
		c.t.Fatalf("gavel dev --name %s did not stop within 60s of SIGINT", c.name)
	}
}

// gavel runs the CLI against this cluster (GAVEL_CLUSTER=name).
func (c *devCluster) gavel(args ...string) (string, error) {
	cmd := exec.Command(bin("gavel"), args...)
	cmd.Dir = c.work
	cmd.Env = append(os.Environ(), "GAVEL_CONFIG="+filepath.Join(c.work, "home", "config.json"), "GAVEL_CLUSTER="+c.name)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A second gavel dev on a data dir in use is refused at once, naming the
// running one's pid and BBS address; two named clusters run side by side,
// each driven through its own client config; a restarted cluster is back to
// its desired instances within a presence TTL (15 s) and 5 s.
func TestDevClustersSideBySideAndRestart(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	work := t.TempDir()
	a := startDev(t, work, "a")

	second := exec.Command(bin("gavel"), "dev", "--name", "a", "--cells", "1", "--data-dir", filepath.Join(work, "data-a"))
	second.Dir = work
	second.Env = append(os.Environ(), "GAVEL_CONFIG="+filepath.Join(work, "home", "other.json"))
	began := time.Now()
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = second.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = second.Process.Kill()
		<-done
		t.Fatalf("a second gavel dev on a's data dir still runs after 10 s: %s", out)
	}
	took := time.Since(began)
	if err == nil {
		t.Fatalf("a second gavel dev on a's data dir succeeded: %s", out)
	}
	pid := fmt.Sprintf("pid %d", a.d.cmd.Process.Pid)
	if !strings.Contains(string(out), "in use") || !strings.Contains(string(out), pid) || !strings.Contains(string(out), "bbs 127.0.0.1:") {
		t.Fatalf("the refusal does not name the running cluster (%s and its BBS): %s", pid, out)
	}
	if took > 2*time.Second {
		t.Fatalf("the refusal took %s, want within 2 s", took)
	}

	b := startDev(t, work, "b")
	if out, err := a.gavel("push", "hello", "--command", "exec "+bin("app"), "--instances", "2", "--route", "hello.example.com"); err != nil {
		t.Fatalf("push to a: %v: %s", err, out)
	}
	if out, err := a.gavel("wait", "hello", "--running", "2", "--timeout", "60s"); err != nil {
		t.Fatalf("wait on a: %v: %s", err, out)
	}
	if out, err := b.gavel("lrps"); err != nil || strings.Contains(out, "hello") {
		t.Fatalf("cluster b sees a's app or failed (%v): %s", err, out)
	}
	if out, err := b.gavel("lrp", "hello"); err == nil {
		t.Fatalf("cluster b has hello: %s", out)
	}

	// The dev router reaches each instance by hostname, round-robin.
	router := a.router()
	waitFor(t, 20*time.Second, "the router reaches both instances", func() error {
		seen := map[string]bool{}
		for range 6 {
			code, body, err := routerGet(router, "hello.example.com")
			if err != nil || code != 200 {
				return fmt.Errorf("%d %q %v", code, body, err)
			}
			seen[strings.TrimSpace(body)] = true
		}
		if !seen["index 0"] || !seen["index 1"] || len(seen) != 2 {
			return fmt.Errorf("answers %v, want index 0 and index 1", seen)
		}
		return nil
	})
	if code, body, _ := routerGet(router, "nope.example.com"); code != 404 || !strings.Contains(body, "no route") {
		t.Fatalf("unknown host: %d %q", code, body)
	}

	a.stop()
	a.start()
	restarted := time.Now()
	if out, err := a.gavel("wait", "hello", "--running", "2", "--timeout", "20s"); err != nil {
		t.Fatalf("after a restart, hello is not back to 2 RUNNING within 20 s (presence TTL 15 s + 5 s): %v: %s", err, out)
	}
	t.Logf("restarted cluster back to desired %s after gavel dev said it runs", time.Since(restarted).Round(time.Millisecond))

	// Removed, the app's route answers 404 at once (the unregister).
	router = a.router()
	waitFor(t, 20*time.Second, "the router reaches hello after the restart", func() error {
		if code, body, err := routerGet(router, "hello.example.com"); err != nil || code != 200 {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	if out, err := a.gavel("remove-lrp", "hello"); err != nil {
		t.Fatalf("remove-lrp: %v: %s", err, out)
	}
	waitFor(t, 10*time.Second, "404 after removal", func() error {
		if code, body, err := routerGet(router, "hello.example.com"); err != nil || code != 404 {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
}

// router is the dev router's address gavel dev printed.
func (c *devCluster) router() string {
	c.t.Helper()
	line := c.d.logLine("  router ")
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[1], "http://") {
		c.t.Fatalf("gavel dev printed no router line (%q)", line)
	}
	return strings.TrimPrefix(f[1], "http://")
}

func routerGet(addr, host string) (int, string, error) {
	req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// Output outlives its containers: a crashed instance's last lines are shown
// by gavel logs --previous, a finished task's by gavel logs --task, and an
// app's lines from before a restart by gavel logs --recent; gavel wait on a
// crashing app fails early, saying why.
func TestLogsOutliveInstances(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	work := t.TempDir()
	d := startDev(t, work, "logs")
	if out, err := d.gavel("push", "crashy", "--command", "echo boom from $INSTANCE_INDEX; sleep 1; exit 3", "--port", "8080", "--health-check", "port"); err != nil {
		t.Fatalf("push: %v: %s", err, out)
	}
	began := time.Now()
	out, err := d.gavel("wait", "crashy", "--running", "1", "--timeout", "120s")
	if err == nil {
		t.Fatalf("gavel wait on a crashing app succeeded: %s", out)
	}
	if took := time.Since(began); took > 60*time.Second || !strings.Contains(out, "crash") {
		t.Fatalf("gavel wait on a crashing app: after %s: %s", took.Round(time.Second), out)
	}
	waitFor(t, 30*time.Second, "gavel logs crashy --previous shows the crash's output", func() error {
		out, err := d.gavel("logs", "crashy", "--previous")
		if err != nil || !strings.Contains(out, "boom from 0") || !strings.Contains(out, "[APP/PROC/WEB/0] (ended)") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// A process cell runs no images: docker:// gets a placement error, not a run on the host.
	if out, err := d.gavel("push", "img", "--command", "true", "--rootfs", "docker:///busybox", "--port", "0", "--health-check", "none"); err != nil {
		t.Fatalf("push img: %v: %s", err, out)
	}
	waitFor(t, 20*time.Second, "docker:// is refused with a placement error", func() error {
		out, err := d.gavel("lrp", "img")
		if err != nil || !strings.Contains(out, "UNCLAIMED") || !strings.Contains(strings.ToLower(out), "compatible") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	if out, err := d.gavel("run-task", "t1", "--guid", "t1", "--command", "echo the task says hi"); err != nil {
		t.Fatalf("run-task: %v: %s", err, out)
	}
	waitFor(t, 30*time.Second, "gavel logs --task t1 shows the finished task's output", func() error {
		out, err := d.gavel("logs", "--task", "t1")
		if err != nil || !strings.Contains(out, "the task says hi") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	if out, err := d.gavel("push", "hello", "--command", "echo hello before the restart; exec "+bin("app"), "--instances", "1"); err != nil {
		t.Fatalf("push: %v: %s", err, out)
	}
	if out, err := d.gavel("wait", "hello", "--running", "1", "--timeout", "60s"); err != nil {
		t.Fatalf("wait: %v: %s", err, out)
	}
	d.stop()
	d.start()
	out, err = d.gavel("logs", "hello", "--recent")
	if err != nil || !strings.Contains(out, "hello before the restart") {
		t.Fatalf("after a restart, gavel logs hello --recent lacks the earlier output (%v): %s", err, out)
	}

	// gavel logs -f follows new instances too.
	follow := exec.Command(bin("gavel"), "logs", "hello", "-f")
	follow.Env = append(os.Environ(), "GAVEL_CONFIG="+filepath.Join(work, "home", "config.json"), "GAVEL_CLUSTER=logs")
	var buf syncBuffer
	follow.Stdout, follow.Stderr = &buf, &buf
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = follow.Process.Kill(); _ = follow.Wait() }()
	time.Sleep(time.Second)
	if out, err := d.gavel("scale", "hello", "2"); err != nil {
		t.Fatalf("scale: %v: %s", err, out)
	}
	waitFor(t, 30*time.Second, "gavel logs -f prints the new instance's first line", func() error {
		if !strings.Contains(buf.String(), "instance index 1") {
			return fmt.Errorf("so far: %s", buf.String())
		}
		return nil
	})
}

// syncBuffer is a bytes.Buffer safe for a process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Draining the cell of a routed instance never unregisters and registers
// the same endpoint again: the evacuating instance keeps its registration
// until its replacement runs, and only then goes.
func TestEvacuationKeepsTheEndpointRegistered(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	work := t.TempDir()
	d := startDev(t, work, "evac", "--cells", "2")
	natsLine := strings.Fields(d.d.logLine("  NATS "))
	if len(natsLine) < 2 {
		t.Fatal("gavel dev printed no NATS line")
	}
	nc, err := nats.Connect(natsLine[1])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	type msg struct {
		subject, endpoint string
		at                time.Time
	}
	var mu sync.Mutex
	var msgs []msg
	record := func(m *nats.Msg) {
		var r struct {
			Host string `json:"host"`
			Port int    `json:"port"`
		}
		_ = json.Unmarshal(m.Data, &r)
		mu.Lock()
		msgs = append(msgs, msg{m.Subject, fmt.Sprintf("%s:%d", r.Host, r.Port), time.Now()})
		mu.Unlock()
	}
	for _, s := range []string{"router.register", "router.unregister"} {
		if _, err := nc.Subscribe(s, record); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := d.gavel("push", "web", "--command", "exec "+bin("app"), "--route", "web.example.com"); err != nil {
		t.Fatalf("push: %v: %s", err, out)
	}
	if out, err := d.gavel("wait", "web", "--running", "1", "--timeout", "60s"); err != nil {
		t.Fatalf("wait: %v: %s", err, out)
	}
	out, err := d.gavel("lrp", "web", "--json")
	if err != nil {
		t.Fatalf("lrp: %v: %s", err, out)
	}
	var row struct {
		InstanceKey struct {
			CellID string `json:"cell_id"`
		} `json:"instance_key"`
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		_ = json.Unmarshal([]byte(line), &row)
		if row.InstanceKey.CellID != "" {
			break
		}
	}
	if row.InstanceKey.CellID == "" {
		t.Fatalf("no cell in %s", out)
	}
	if out, err := d.gavel("drain", row.InstanceKey.CellID, "--wait", "--wait-timeout", "60s"); err != nil {
		t.Fatalf("drain: %v: %s", err, out)
	}
	waitFor(t, 30*time.Second, "the replacement registered and the old endpoint unregistered", func() error {
		mu.Lock()
		defer mu.Unlock()
		regs := map[string]bool{}
		unregs := 0
		for _, m := range msgs {
			if m.subject == "router.register" {
				regs[m.endpoint] = true
			} else {
				unregs++
			}
		}
		if len(regs) < 2 || unregs == 0 {
			return fmt.Errorf("registered %v, %d unregisters", regs, unregs)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	gone := map[string]bool{}
	for _, m := range msgs {
		switch {
		case m.subject == "router.unregister":
			gone[m.endpoint] = true
		case gone[m.endpoint]:
			t.Fatalf("%s was unregistered, then registered again at %s", m.endpoint, m.at.Format("15:04:05.000000"))
		}
	}
}
