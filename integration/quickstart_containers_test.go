package integration_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// README's "Quickstart in containers", run as written: its first block as
// the built `gavel dev --backend runc` (with its own data dir, client config
// and ports), then every command of the second block, each checked for its
// effect; finally SIGINT stops gavel dev, which destroys every container and
// removes its cells' bridges.
func TestQuickstartInContainers(t *testing.T) {
	requireContainerHost(t)
	t.Parallel()
	blocks := readmeBlocks(t, "Quickstart in containers")
	if len(blocks) != 2 || len(blocks[0]) != 1 || blocks[0][0] != "make build && bin/gavel dev --backend runc" {
		t.Fatalf("the containers quickstart should be two blocks, the first `make build && bin/gavel dev --backend runc` alone; got %q", blocks)
	}
	work := t.TempDir()
	if err := os.Symlink(binDir, filepath.Join(work, "bin")); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(work, ".gavel")
	clientConfig := filepath.Join(work, "home", ".gavel", "config.json")
	dev := &daemon{
		name: "gavel-dev", path: bin("gavel"), dir: work, logPath: filepath.Join(work, "gavel-dev.out"),
		args: []string{"dev", "--backend", "runc", "--data-dir", dataDir, "--client-config", clientConfig,
			"--bbs-address", devAddr(t), "--nats-port", strconv.Itoa(devPort(t)), "--debug-address", devAddr(t),
			"--router-address", devAddr(t), "--keeper-path", bin("gavel-keeper"),
			// Host ports apart from the process-backend clusters of the other
			// tests (61000+): runc's port mappings DNAT loopback connections too,
			// and would catch their routers' connections to their instances.
			"--port-range-start", "5000"},
		env: []string{"GAVEL_CONFIG=" + clientConfig},
	}
	t.Cleanup(func() {
		dev.kill()
		killStrays(work)
		if t.Failed() {
			dev.dump(t, 60)
			(&daemon{name: "gavel.log", logPath: filepath.Join(dataDir, "gavel.log")}).dump(t, 100)
		}
	})
	before := devBridges(t)
	if err := dev.start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "gavel dev --backend runc says it is running", func() error {
		if dev.logLine("Gavel is running.") != "" {
			return nil
		}
		if err := dev.exitedErr(); err != nil {
			return err
		}
		return errors.New("not yet")
	})
	sh := &readmeShell{dir: work, env: []string{"GAVEL_CONFIG=" + clientConfig}}
	contains := func(subs ...string) func(string) error {
		return func(out string) error {
			for _, s := range subs {
				if !strings.Contains(out, s) {
					return fmt.Errorf("output lacks %q", s)
				}
			}
			return nil
		}
	}
	checks := []*quickstartCheck{
		{prefix: "export PATH=", check: func(string) error { return nil }},
		{prefix: "gavel push hello ", check: contains("desired hello")},
		{prefix: "gavel wait hello --running 2", check: contains("hello: 2/2 running")},
		{prefix: "gavel lrp hello", check: func(out string) error {
			if !containsRow(out, "hello", "0", "RUNNING") || !containsRow(out, "hello", "1", "RUNNING") {
				return errors.New("instances 0 and 1 are not shown RUNNING")
			}
			return contains("->8080", "preloaded:cflinuxfs4")(out)
		}},
		{prefix: "curl ", check: contains("Directory listing for /")},
		{prefix: "gavel run-task peek ", check: contains("task peek is PENDING")},
		{prefix: "gavel task peek", rerun: true, check: func(out string) error {
			if err := contains("COMPLETED", "failed:      false", "result:      peek")(out); err != nil {
				return err
			}
			// Only the hostname: the container's /home is empty.
			if _, rest, _ := strings.Cut(out, "result:      peek"); strings.TrimSpace(rest) != "" {
				return fmt.Errorf("the container's /home should be empty, got %q", rest)
			}
			return nil
		}},
		{prefix: "gavel remove-lrp hello", check: contains("removed hello")},
	}
	runReadmeCommands(t, "TestQuickstartInContainers", blocks[1], checks, sh)

	// Ctrl-C with an app running destroys its containers and the cells' bridges.
	if out, err := sh.run("gavel push leftover --command 'exec python3 -m http.server $PORT' --instances 2 && gavel wait leftover --running 2"); err != nil {
		t.Fatalf("push leftover: %v\n%s", err, out)
	}
	var bridges []string
	for b := range devBridges(t) {
		if !before[b] {
			bridges = append(bridges, b)
		}
	}
	if len(bridges) != 3 {
		t.Fatalf("want the 3 cells' bridges while gavel dev runs, found %v", bridges)
	}
	if !dev.signalGroup(syscall.SIGINT, 60*time.Second) {
		t.Fatal("gavel dev did not stop within 60 s of SIGINT")
	}
	if code := dev.exitCode(); code != 0 || dev.logLine("stopped") == "" {
		t.Errorf("gavel dev exited %d after SIGINT, want 0 after printing \"stopped\"", code)
	}
	if left := strays(work); len(left) > 0 {
		t.Errorf("processes left behind after Ctrl-C: %v", left)
	}
	if left := mountsUnder(t, work); len(left) > 0 {
		t.Errorf("mounts left behind after Ctrl-C: %v", left)
	}
	for _, b := range bridges {
		if _, err := os.Stat(filepath.Join("/sys/class/net", b)); err == nil {
			t.Errorf("bridge %s left behind after Ctrl-C", b)
			_ = exec.Command("ip", "link", "del", b).Run()
		}
	}
}

// devBridges lists the gavel dev cluster bridges (named gv<6 hex>-<cell>)
// on this host.
func devBridges(t *testing.T) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		if devBridgeName.MatchString(e.Name()) {
			out[e.Name()] = true
		}
	}
	return out
}

var devBridgeName = regexp.MustCompile(`^gv[0-9a-f]{6}-[0-9]+$`)

// mountsUnder lists the mount points below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}
