package runc

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gavelhq/gavel/rep/backend"
)

func create(t *testing.T, b *Backend, spec backend.ContainerSpec) backend.Container {
	t.Helper()
	if spec.Image == "" {
		spec.Image = "preloaded:busybox"
	}
	c, err := b.Create(context.Background(), spec)
	if err != nil {
		t.Fatalf("create %s: %v", spec.Handle, err)
	}
	return c
}

func TestProcessRunsIsolated(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	handle := "iso-" + e.suffix
	roDir, rwDir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(roDir, "shared"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := create(t, b, backend.ContainerSpec{Handle: handle, Env: []string{"FROM_CONTAINER=1", "OVERRIDE=container"},
		BindMounts: []backend.BindMount{{SrcPath: roDir, DstPath: "/etc/cf-assets"}, {SrcPath: rwDir, DstPath: "/data/rw", ReadWrite: true}}})
	status, out, errOut := run(t, c, sh("cat /etc/cf-assets/shared; echo; touch /etc/cf-assets/x 2>&1; echo written > /data/rw/out"))
	if status != 0 || !strings.HasPrefix(out, "from the host\n") || !strings.Contains(out, "Read-only file system") {
		t.Errorf("bind mounts: %d %q %q", status, out, errOut)
	}
	if got, _ := os.ReadFile(filepath.Join(rwDir, "out")); string(got) != "written\n" {
		t.Errorf("read-write bind mount: host sees %q", got)
	}

	hostSecret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(hostSecret, []byte("host-only"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`hostname; cat /proc/1/cmdline | tr '\0' ' '; echo; echo $$; cat %s 2>&1; ls /; echo env=$FROM_CONTAINER,$OVERRIDE; pwd`, hostSecret)
	spec := sh(script)
	spec.Env = []string{"OVERRIDE=process"}
	status, out, _ = run(t, c, spec)
	if status != 0 {
		t.Fatalf("status %d: %s", status, out)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != handle {
		t.Errorf("hostname %q, want the handle %q", lines[0], handle)
	}
	if got := strings.TrimSpace(lines[1]); got != initPath+" -gavel-init" {
		t.Errorf("pid 1 is %q, want the init", got)
	}
	if pid, _ := strconv.Atoi(lines[2]); pid <= 1 || pid > 50 {
		t.Errorf("process pid %s: not in a fresh pid namespace", lines[2])
	}
	if strings.Contains(out, "host-only") || !strings.Contains(out, "No such file") {
		t.Errorf("the container read a host file: %s", out)
	}
	if !strings.Contains(out, "env=1,process") {
		t.Errorf("env not merged (container, then process): %s", out)
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "/root") {
		t.Errorf("default working directory is not root's home: %s", out)
	}

	// A named user from the rootfs's /etc/passwd, its home as working
	// directory, and a Dir created when missing, owned by the user.
	spec = sh("id -u; id -g; pwd; touch f && ls -ln f")
	spec.User = "vcap"
	spec.Dir = "/home/vcap/app/new"
	status, out, errOut = run(t, c, spec)
	if status != 0 || !strings.HasPrefix(out, "2000\n2000\n/home/vcap/app/new\n") || !strings.Contains(out, " 2000 ") {
		t.Errorf("as vcap: status %d, out %q, err %q", status, out, errOut)
	}
	spec = sh("id -u; cat /proc/self/status | grep CapEff")
	spec.User = "1234:1234"
	if status, out, _ = run(t, c, spec); status != 0 || !strings.HasPrefix(out, "1234\n") || !strings.Contains(out, "0000000000000000") {
		t.Errorf("as 1234: status %d, out %q", status, out)
	}
	// Root in the container has no CAP_SYS_RESOURCE (bit 24) nor CAP_SYS_ADMIN (21).
	_, out, _ = run(t, c, sh("grep CapBnd /proc/self/status"))
	bnd, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "CapBnd:")), 16, 64)
	if err != nil || bnd&(1<<24) != 0 || bnd&(1<<21) != 0 {
		t.Errorf("root's bounding set %q has CAP_SYS_RESOURCE or CAP_SYS_ADMIN", out)
	}
	if _, err := c.Run(context.Background(), backend.ProcessSpec{Path: "/no/such/program"}, backend.ProcessIO{}); err == nil ||
		!strings.Contains(err.Error(), "no such file") {
		t.Errorf("run of a missing program: %v, want an error saying so", err)
	}
	if _, err := c.Run(context.Background(), backend.ProcessSpec{Path: "true", User: "nobody-here"}, backend.ProcessIO{}); err == nil {
		t.Error("run as an unknown user succeeded")
	}
}

func TestExitStatusesAndSignals(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	c := create(t, b, backend.ContainerSpec{Handle: "exit-" + e.suffix})
	if status, _, _ := run(t, c, sh("exit 3")); status != 3 {
		t.Errorf("exit 3: status %d", status)
	}
	if status, _, _ := run(t, c, sh("kill -9 $$")); status != 137 {
		t.Errorf("killed by SIGKILL: status %d, want 137", status)
	}
	for _, sig := range []backend.Signal{backend.SignalTerminate, backend.SignalKill} {
		p, err := c.Run(context.Background(), backend.ProcessSpec{Path: "sleep", Args: []string{"60"}}, backend.ProcessIO{})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Signal(sig); err != nil {
			t.Fatal(err)
		}
		want := map[backend.Signal]int{backend.SignalTerminate: 143, backend.SignalKill: 137}[sig]
		if status, _ := p.Wait(); status != want {
			t.Errorf("%s: status %d, want %d", sig, status, want)
		}
	}
	// Stdin reaches the process; output is delivered before Wait returns.
	var out syncBuffer
	p, err := c.Run(context.Background(), backend.ProcessSpec{Path: "tr", Args: []string{"a-z", "A-Z"}},
		backend.ProcessIO{Stdin: strings.NewReader("hello stdin\n"), Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := p.Wait(); status != 0 || out.String() != "HELLO STDIN\n" {
		t.Errorf("stdin: status %d, out %q", status, out.String())
	}
}

func TestStopKeepsContainer(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	c := create(t, b, backend.ContainerSpec{Handle: "stop-" + e.suffix})
	var out syncBuffer
	p, err := c.Run(context.Background(), sh("trap 'exit 42' TERM; echo trapped; sleep 60 & wait"), backend.ProcessIO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	// Stop only once the trap is set (a TERM before it kills the shell: 143).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "trapped") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Stop(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if status, _ := p.Wait(); status != 42 {
		t.Errorf("status after Stop %d, want 42 (its TERM trap)", status)
	}
	info, err := c.Info(context.Background())
	if err != nil || info.State != backend.StateStopped {
		t.Errorf("info after stop: %+v, %v", info, err)
	}
	if _, err := c.Run(context.Background(), sh("true"), backend.ProcessIO{}); !errors.Is(err, backend.ErrContainerStopped) {
		t.Errorf("run after stop: %v", err)
	}
}

func TestMemoryLimitEnforced(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	c := create(t, b, backend.ContainerSpec{Handle: "mem-" + e.suffix, Limits: backend.Limits{MemoryInBytes: 32 << 20}})
	status, _, errOut := run(t, c, backend.ProcessSpec{Path: "dd", Args: []string{"if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"}})
	if status != 137 {
		t.Errorf("allocating 96 MiB under a 32 MiB limit: status %d (%s), want 137", status, errOut)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Events, "Out of memory") || !info.MemoryLimitEnforced {
		t.Errorf("info events %v, enforced %v: want Out of memory", info.Events, info.MemoryLimitEnforced)
	}
	if status, _, _ := run(t, c, sh("echo still here")); status != 0 {
		t.Errorf("container unusable after the OOM kill: %d", status)
	}
	m, err := c.(backend.MetricsReporter).Metrics(context.Background())
	if err != nil || m.MemoryStat == nil || m.Age <= 0 {
		t.Errorf("metrics: %+v, %v", m, err)
	}
	l, err := c.(backend.LimitsReporter).Limits(context.Background())
	if err != nil || l.MemoryInBytes != 32<<20 {
		t.Errorf("limits %+v, %v", l, err)
	}
}

func TestPidsLimitStopsForkBomb(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	c := create(t, b, backend.ContainerSpec{Handle: "pids-" + e.suffix, Limits: backend.Limits{MaxPids: 40, CPUWeight: 256}})
	// Forks far past the limit; the children go away by themselves.
	// pids counts tasks: the init (a Go program) has a few threads.
	before, err := c.(backend.MetricsReporter).Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	status, _, errOut := run(t, c, sh("i=0; while [ $i -lt 100 ]; do sleep 1 & i=$((i+1)); done; wait"))
	if status == 0 || !strings.Contains(errOut, "fork") {
		t.Errorf("forking past pids.max: status %d, stderr %q: want fork failures", status, errOut)
	}
	m, err := c.(backend.MetricsReporter).Metrics(context.Background())
	if err != nil || m.PidsMax != 40 || m.PidsCurrent > 40 {
		t.Errorf("pids %d/%d (%v)", m.PidsCurrent, m.PidsMax, err)
	}
	// The host is unaffected, and the container recovers.
	if err := exec.Command("true").Run(); err != nil {
		t.Errorf("host cannot fork: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs, _ := b.cgroups.pids(containerID(c.Handle()))
		if len(procs) <= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	after, _ := c.(backend.MetricsReporter).Metrics(context.Background())
	t.Logf("forks past pids.max failed (%q); only init left after %v (tasks before %d, after %d)", strings.TrimSpace(errOut), time.Since(t0), before.PidsCurrent, after.PidsCurrent)
	if status, out, _ := run(t, c, sh("echo healthy")); status != 0 || out != "healthy\n" {
		t.Errorf("after the fork bomb: %d %q", status, out)
	}
	cpuShares, _ := os.ReadFile(filepath.Join(b.cgroups.dir("cpu", containerID("pids-"+e.suffix)), "cpu.shares"))
	if !b.cgroups.v2 && strings.TrimSpace(string(cpuShares)) != "256" {
		t.Errorf("cpu.shares %q, want 256", cpuShares)
	}
}

func TestTwoContainersListenOnTheSamePort(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	type served struct {
		c    backend.Container
		info backend.ContainerInfo
	}
	var all []served
	for i := range 2 {
		c := create(t, b, backend.ContainerSpec{Handle: fmt.Sprintf("web%d-%s", i, e.suffix), NetIn: []backend.NetIn{{ContainerPort: 8080}}})
		if _, err := c.Run(context.Background(), sh(fmt.Sprintf("mkdir -p /www && echo hello-%d > /www/index.html && exec httpd -f -p 8080 -h /www", i)), backend.ProcessIO{}); err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.SharedHostNetwork || info.ContainerIP == "" || info.ContainerIP == info.HostIP || len(info.MappedPorts) != 1 ||
			info.MappedPorts[0].ContainerPort != 8080 || info.MappedPorts[0].HostPort == 0 {
			t.Fatalf("info %+v", info)
		}
		all = append(all, served{c, info})
	}
	if all[0].info.ContainerIP == all[1].info.ContainerIP || all[0].info.MappedPorts[0].HostPort == all[1].info.MappedPorts[0].HostPort {
		t.Fatalf("two containers share an address: %+v", all)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(addr string) string {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := client.Get("http://" + addr + "/index.html")
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return strings.TrimSpace(string(body))
			}
			if time.Now().After(deadline) {
				return "error: " + err.Error()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i, s := range all {
		want := fmt.Sprintf("hello-%d", i)
		if got := get(net.JoinHostPort(s.info.ContainerIP, "8080")); got != want {
			t.Errorf("container %d via its IP: %q, want %q", i, got, want)
		}
		if got := get(net.JoinHostPort(s.info.HostIP, strconv.Itoa(int(s.info.MappedPorts[0].HostPort)))); got != want {
			t.Errorf("container %d via %s:%d: %q, want %q", i, s.info.HostIP, s.info.MappedPorts[0].HostPort, got, want)
		}
	}
	// Container to container, over the bridge.
	status, out, errOut := run(t, all[0].c, sh("wget -q -O - http://"+all[1].info.ContainerIP+":8080/index.html"))
	if status != 0 || strings.TrimSpace(out) != "hello-1" {
		t.Errorf("container 0 → container 1: %d %q %q", status, out, errOut)
	}
}

func TestStreamInAndOut(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	c := create(t, b, backend.ContainerSpec{Handle: "stream-" + e.suffix})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	content := []byte("#!/bin/sh\necho from the droplet\n")
	_ = tw.WriteHeader(&tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755})
	_ = tw.WriteHeader(&tar.Header{Name: "app/run.sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(content))})
	_, _ = tw.Write(content)
	_ = tw.Close()
	if err := c.StreamIn(context.Background(), backend.StreamInSpec{Path: "/home/vcap", User: "vcap", TarStream: &buf}); err != nil {
		t.Fatal(err)
	}
	status, out, _ := run(t, c, sh("/home/vcap/app/run.sh; stat -c %u /home/vcap/app/run.sh"))
	if status != 0 || out != "from the droplet\n2000\n" {
		t.Errorf("streamed-in script: %d %q", status, out)
	}
	rc, err := c.StreamOut(context.Background(), backend.StreamOutSpec{Path: "/home/vcap/app/run.sh", User: "vcap"})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(tr)
	rc.Close()
	if h.Name != "run.sh" || !bytes.Equal(got, content) {
		t.Errorf("streamed out %q: %q", h.Name, got)
	}
	// A relative path is relative to the user's home, as in guardian; a
	// user other than root gets guardian's PATH without sbin directories.
	buf.Reset()
	tw = tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	_, _ = tw.Write([]byte("r\n"))
	_ = tw.Close()
	if err := c.StreamIn(context.Background(), backend.StreamInSpec{Path: "rel", User: "vcap", TarStream: &buf}); err != nil {
		t.Fatal(err)
	}
	vcapSpec := sh("cat /home/vcap/rel/f; echo $PATH")
	vcapSpec.User = "vcap"
	if status, out, _ := run(t, c, vcapSpec); status != 0 || out != "r\n/usr/local/bin:/usr/bin:/bin\n" {
		t.Errorf("relative stream in, PATH of vcap: %d %q", status, out)
	}
	rc, err = c.StreamOut(context.Background(), backend.StreamOutSpec{Path: "rel/f", User: "vcap"})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := tar.NewReader(rc).Next(); err != nil || h.Name != "f" {
		t.Errorf("relative stream out: %v %v", h, err)
	}
	rc.Close()
	// A source ending in "/" streams the directory's contents as ./NAME,
	// as guardian does.
	rc, err = c.StreamOut(context.Background(), backend.StreamOutSpec{Path: "/home/vcap/app/", User: "vcap"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tr = tar.NewReader(rc); ; {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	rc.Close()
	if !slices.Equal(names, []string{"./", "./run.sh"}) {
		t.Errorf("streamed out app/: %q", names)
	}
	rc, err = c.StreamOut(context.Background(), backend.StreamOutSpec{Path: "/no/such/file"})
	if err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
	}
	if err == nil {
		t.Error("streaming out a missing path gave no error")
	}
}

func TestPropertiesAndErrors(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	ctx := context.Background()
	_, err := b.Create(ctx, backend.ContainerSpec{Handle: "x-" + e.suffix, Image: "preloaded:foo"})
	if err == nil || !strings.Contains(err.Error(), "rootfs preloaded:foo: not provided by this cell; it provides: preloaded:busybox (and local images") {
		t.Errorf("unknown rootfs: %v", err)
	}
	c := create(t, b, backend.ContainerSpec{Handle: "props-" + e.suffix, Properties: backend.Properties{"owner": "me"}})
	if _, err := b.Create(ctx, backend.ContainerSpec{Handle: c.Handle(), Image: "preloaded:busybox"}); !errors.Is(err, backend.ErrHandleExists) {
		t.Errorf("duplicate handle: %v", err)
	}
	pe := c.(backend.PropertyEditor)
	if err := pe.SetProperty(ctx, "log_config", "{}"); err != nil {
		t.Fatal(err)
	}
	if err := pe.RemoveProperty(ctx, "owner"); err != nil {
		t.Fatal(err)
	}
	if cs, _ := b.Containers(ctx, backend.Properties{"log_config": "{}"}); len(cs) != 1 {
		t.Errorf("filter on a set property: %d containers", len(cs))
	}
	if cs, _ := b.Containers(ctx, backend.Properties{"owner": "me"}); len(cs) != 0 {
		t.Errorf("filter on a removed property: %d containers", len(cs))
	}
	// A missing executable is an *exec.Error: the Garden server's
	// ExecutableNotFoundError, as guardian reports it.
	for _, path := range []string{"/no/such/binary", "no-such-command"} {
		var ee *exec.Error
		if _, err := c.Run(ctx, backend.ProcessSpec{Path: path}, backend.ProcessIO{}); !errors.As(err, &ee) {
			t.Errorf("run %s: %v, want an *exec.Error", path, err)
		}
	}
	// Two Destroys at once: one succeeds, the other is refused or finds nothing.
	var wg sync.WaitGroup
	results := make([]error, 2)
	for i := range results {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = b.Destroy(ctx, c.Handle()) }()
	}
	wg.Wait()
	ok := 0
	for _, err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrBeingDestroyed), errors.Is(err, backend.ErrContainerNotFound):
		default:
			t.Errorf("concurrent destroy: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("concurrent destroys: %v", results)
	}
	if err := b.Destroy(ctx, "nope"); !errors.Is(err, backend.ErrContainerNotFound) {
		t.Errorf("destroy unknown: %v", err)
	}
	if _, err := b.Lookup(ctx, "nope"); !errors.Is(err, backend.ErrContainerNotFound) {
		t.Errorf("lookup unknown: %v", err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
	if capacity, err := b.Capacity(ctx); err != nil || capacity.MemoryInBytes == 0 || !capacity.MemoryLimitsEnforced {
		t.Errorf("capacity %+v, %v", capacity, err)
	}
}

func TestHostUserlandRootfs(t *testing.T) {
	e := newEnv(t)
	e.opts.HostUserlandRootfs = "host"
	b := e.newBackend(t)
	c := create(t, b, backend.ContainerSpec{Handle: "host-" + e.suffix, Image: "preloaded:host"})
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("host-only"), 0o644); err != nil {
		t.Fatal(err)
	}
	prog := "sh"
	args := []string{"-c", "hostname; cat " + secret + " 2>&1; touch /usr/x 2>&1; true"}
	if _, err := exec.LookPath("python3"); err == nil {
		prog = "python3"
		args = []string{"-c", fmt.Sprintf(`
import socket, os
print(socket.gethostname())
try:
    print(open(%q).read())
except OSError as e:
    print("cannot read:", e.strerror)
try:
    open("/usr/x", "w")
except OSError as e:
    print("cannot write:", e.strerror)
`, secret)}
	}
	status, out, errOut := run(t, c, backend.ProcessSpec{Path: prog, Args: args})
	if status != 0 || !strings.HasPrefix(out, c.Handle()+"\n") || strings.Contains(out, "host-only") ||
		!strings.Contains(strings.ToLower(out+errOut), "read-only file system") {
		t.Errorf("%s in a host-userland container: %d %q %q", prog, status, out, errOut)
	}
}

func TestRediscovery(t *testing.T) {
	e := newEnv(t)
	first := e.newBackend(t)
	ctx := context.Background()
	c := create(t, first, backend.ContainerSpec{Handle: "again-" + e.suffix, Properties: backend.Properties{"k": "v"}})
	if _, err := c.Run(ctx, backend.ProcessSpec{ID: "waiter", Path: "sh", Args: []string{"-c", "while [ ! -f /tmp/go ]; do sleep 0.05; done; echo done; exit 7"}}, backend.ProcessIO{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx, backend.ProcessSpec{ID: "quick", Path: "sh", Args: []string{"-c", "sleep 0.3; exit 5"}}, backend.ProcessIO{}); err != nil {
		t.Fatal(err)
	}
	first.Detach() // as if the rep's OS process had exited
	time.Sleep(time.Second)

	second := e.newBackend(t)
	c2, err := second.Lookup(ctx, c.Handle())
	if err != nil {
		t.Fatal(err)
	}
	info, err := c2.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.ProcessIDs, []string{"quick", "waiter"}) || info.Properties["k"] != "v" || info.ContainerIP == "" {
		t.Fatalf("rediscovered info %+v", info)
	}
	quick, err := c2.Attach(ctx, "quick", backend.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := quick.Wait(); status != 5 {
		t.Errorf("status of the process that exited while no backend ran: %d, want 5", status)
	}
	var out syncBuffer
	waiter, err := c2.Attach(ctx, "waiter", backend.ProcessIO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if status, _, _ := run(t, c2, sh("touch /tmp/go")); status != 0 {
		t.Fatal("touch failed")
	}
	if status, _ := waiter.Wait(); status != 7 || out.String() != "done\n" {
		t.Errorf("re-attached process: %d %q, want 7 \"done\"", status, out.String())
	}
}

// TestDestroyLeavesNothing runs 100 create/run/destroy cycles (4 at a
// time), then counts what could leak.
func TestDestroyLeavesNothing(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	ctx := context.Background()
	const cycles, parallel = 100, 4
	// The counting sees a live container's resources (so zero below means
	// released, not missed).
	c := create(t, b, backend.ContainerSpec{Handle: "probe-" + e.suffix, NetIn: []backend.NetIn{{ContainerPort: 8080}}})
	for what, n := range leftovers(t, e, false) {
		if n == 0 {
			t.Errorf("leftovers does not see the %s of a live container", what)
		}
	}
	if err := b.Destroy(ctx, c.Handle()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, cycles)
	sem := make(chan struct{}, parallel)
	start := time.Now()
	for i := range cycles {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- cycle(ctx, b, fmt.Sprintf("leak%03d-%s", i, e.suffix))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d create/run/destroy cycles, %d at a time: %v", cycles, parallel, time.Since(start))
	for what, n := range leftovers(t, e, true) {
		if n != 0 {
			t.Errorf("%d %s left after %d destroys", n, what, cycles)
		}
	}
}

func cycle(ctx context.Context, b *Backend, handle string) error {
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: handle, Image: "preloaded:busybox", NetIn: []backend.NetIn{{ContainerPort: 8080}},
		Limits: backend.Limits{MemoryInBytes: 64 << 20, MaxPids: 100}})
	if err != nil {
		return err
	}
	p, err := c.Run(ctx, backend.ProcessSpec{Path: "sh", Args: []string{"-c", "echo hi > /tmp/x; sleep 60 & exit 0"}}, backend.ProcessIO{})
	if err != nil {
		return err
	}
	if status, _ := p.Wait(); status != 0 {
		return fmt.Errorf("%s: status %d", handle, status)
	}
	return b.Destroy(ctx, handle)
}

// leftovers counts what the backend of e could have leaked on the host.
// With logLines, the iptables lines counted are logged.
func leftovers(t *testing.T, e *testEnv, logLines bool) map[string]int {
	t.Helper()
	out := map[string]int{}
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if strings.Contains(line, e.opts.Root) || strings.Contains(line, "/run/netns/"+e.opts.BridgeName) {
			out["mounts"]++
		}
	}
	cg := &cgroupFS{root: DefaultCgroupRoot, parent: e.opts.CgroupParent}
	if _, err := os.Stat(filepath.Join(DefaultCgroupRoot, "cgroup.controllers")); err == nil {
		cg.v2 = true
	}
	for _, d := range cg.parentDirs() {
		entries, _ := os.ReadDir(d)
		for _, en := range entries {
			if en.IsDir() {
				out["cgroup dirs"]++
			}
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show", "master", e.opts.BridgeName).Output()
	out["veths on the bridge"] = strings.Count(string(links), "\n")
	netns, _ := os.ReadDir("/run/netns")
	for _, n := range netns {
		if strings.HasPrefix(n.Name(), e.opts.BridgeName+"-") {
			out["network namespaces"]++
		}
	}
	rules, _ := exec.Command("iptables-save").Output()
	for _, line := range strings.Split(string(rules), "\n") {
		if strings.Contains(line, e.opts.NetworkName+`\"`) || strings.Contains(line, `"`+e.opts.NetworkName+`"`) ||
			strings.Contains(line, "name: \\\""+e.opts.NetworkName+"\\\"") {
			out["iptables lines"]++
			if logLines {
				t.Logf("iptables: %s", line)
			}
		}
	}
	leases, _ := os.ReadDir(filepath.Join(e.opts.Root, "cni", "ipam", e.opts.NetworkName))
	for _, l := range leases {
		if net.ParseIP(l.Name()) != nil {
			out["IP leases"]++
		}
	}
	for _, d := range []string{containersDir, keepersDir} {
		entries, _ := os.ReadDir(filepath.Join(e.opts.Root, d))
		out["depot entries in "+d] = len(entries)
	}
	runcState, _ := os.ReadDir(filepath.Join(e.opts.Root, runcDir))
	out["runc states"] = len(runcState)
	return out
}
