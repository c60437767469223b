package process_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newBackend(t *testing.T, root string) *process.Backend {
	t.Helper()
	b, err := process.New(process.Options{
		Root:           root,
		PortRangeStart: 42000,
		PortRangeEnd:   42999,
		GraceTime:      500 * time.Millisecond,
		PollInterval:   20 * time.Millisecond,
	})
	require.NoError(t, err)
	return b
}

func create(t *testing.T, b *process.Backend, handle string, ports ...uint32) backend.Container {
	t.Helper()
	spec := backend.ContainerSpec{Handle: handle, Properties: backend.Properties{"owner": "test"}}
	for _, p := range ports {
		spec.NetIn = append(spec.NetIn, backend.NetIn{ContainerPort: p})
	}
	c, err := b.Create(context.Background(), spec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Destroy(context.Background(), handle) })
	return c
}

// pidGone reports whether pid no longer exists or is a zombie.
func pidGone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return fields[0] == "Z"
}

func waitForFile(t *testing.T, path string) string {
	t.Helper()
	var data []byte
	require.Eventually(t, func() bool {
		var err error
		data, err = os.ReadFile(path)
		return err == nil && strings.HasSuffix(string(data), "\n")
	}, 10*time.Second, 10*time.Millisecond, "file %s never written", path)
	return strings.TrimSpace(string(data))
}

func TestRunCapturesOutputAndExitStatus(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	var out, errOut syncBuffer
	p, err := c.Run(context.Background(), backend.ProcessSpec{
		Path: "sh", Args: []string{"-c", `echo "hello $GREETING"; echo oops >&2; exit 3`},
		Env: []string{"GREETING=world"},
	}, backend.ProcessIO{Stdout: &out, Stderr: &errOut})
	require.NoError(t, err)
	status, err := p.Wait()
	require.NoError(t, err)
	require.Equal(t, 3, status)
	require.Equal(t, "hello world\n", out.String())
	require.Equal(t, "oops\n", errOut.String())
}

func TestRunMissingExecutable(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	_, err := c.Run(context.Background(), backend.ProcessSpec{Path: "nope"}, backend.ProcessIO{})
	require.EqualError(t, err, `exec: "nope": executable file not found in $PATH`)
}

func TestContainerEnvAndDirs(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c, err := b.Create(context.Background(), backend.ContainerSpec{Handle: "env", Env: []string{"A=1", "B=container"}})
	require.NoError(t, err)
	defer b.Destroy(context.Background(), "env")
	var out syncBuffer
	p, err := c.Run(context.Background(), backend.ProcessSpec{
		Path: "sh", Args: []string{"-c", `echo "$A $B $(pwd)"; echo data > result.txt`},
		Env: []string{"B=process"}, Dir: "/work",
	}, backend.ProcessIO{Stdout: &out})
	require.NoError(t, err)
	status, err := p.Wait()
	require.NoError(t, err)
	require.Equal(t, 0, status)
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	require.Equal(t, "1 process "+filepath.Join(info.Path, "rootfs", "work")+"\n", out.String())

	r, err := c.StreamOut(context.Background(), backend.StreamOutSpec{Path: "/work/result.txt"})
	require.NoError(t, err)
	defer r.Close()
	tr := tar.NewReader(r)
	h, err := tr.Next()
	require.NoError(t, err)
	require.Equal(t, "result.txt", h.Name)
	data, err := io.ReadAll(tr)
	require.NoError(t, err)
	require.Equal(t, "data\n", string(data))
}

// StreamOut of a directory names its entries after the directory, or,
// when the source ends in "/", "./..." as guardian's tar -C DIR . does (the
// real Garden client saw "app/..." for "app/" here, and "x.txt" for
// "./x.txt" from the runc backend, which shares this tar writer).
func TestStreamOutDirectoryWithAndWithoutTrailingSlash(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "d/sub/", Typeflag: tar.TypeDir, Mode: 0o755}))
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "d/sub/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2}))
	_, _ = tw.Write([]byte("x\n"))
	require.NoError(t, tw.Close())
	require.NoError(t, c.StreamIn(context.Background(), backend.StreamInSpec{Path: "/tmp", TarStream: &buf}))
	names := func(path string) []string {
		r, err := c.StreamOut(context.Background(), backend.StreamOutSpec{Path: path})
		require.NoError(t, err)
		defer r.Close()
		var out []string
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return out
			}
			require.NoError(t, err)
			out = append(out, h.Name)
		}
	}
	require.Equal(t, []string{"d/", "d/sub/", "d/sub/f"}, names("/tmp/d"))
	require.Equal(t, []string{"./", "./sub/", "./sub/f"}, names("/tmp/d/"))
	require.Equal(t, []string{"sub/", "sub/f"}, names("/tmp/d/sub")[:2])
}

// A TTY process is refused, not run without a terminal.
func TestRunRefusesTTY(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	_, err := c.Run(context.Background(), backend.ProcessSpec{Path: "sh", TTY: &backend.TTYSpec{}}, backend.ProcessIO{})
	require.ErrorContains(t, err, "TTY processes are not supported by the process backend")
}

func TestStreamInExtractsAndRejectsEscapes(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}))
	script := "#!/bin/sh\necho from-rootfs\n"
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "bin/app", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(script))}))
	_, _ = tw.Write([]byte(script))
	require.NoError(t, tw.Close())
	require.NoError(t, c.StreamIn(context.Background(), backend.StreamInSpec{Path: "/app", TarStream: &buf}))

	var out syncBuffer
	p, err := c.Run(context.Background(), backend.ProcessSpec{Path: "/app/bin/app"}, backend.ProcessIO{Stdout: &out})
	require.NoError(t, err)
	_, err = p.Wait()
	require.NoError(t, err)
	require.Equal(t, "from-rootfs\n", out.String())

	buf.Reset()
	tw = tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "../../evil", Typeflag: tar.TypeSymlink, Linkname: "/etc"}))
	require.NoError(t, tw.Close())
	require.Error(t, c.StreamIn(context.Background(), backend.StreamInSpec{Path: "/x", TarStream: &buf}))
}

func TestPortsAreMappedAndReleased(t *testing.T) {
	root := t.TempDir()
	// Two ports below Linux's ephemeral range (32768+), so no other test's
	// listener or outgoing connection can take one of them meanwhile (the
	// integration suite's cells use 20000-29999).
	b, err := process.New(process.Options{Root: root, PortRangeStart: 30100, PortRangeEnd: 30101})
	require.NoError(t, err)
	c, err := b.Create(context.Background(), backend.ContainerSpec{Handle: "a", NetIn: []backend.NetIn{{ContainerPort: 8080}, {ContainerPort: 2222}}})
	require.NoError(t, err)
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	require.True(t, info.SharedHostNetwork)
	require.Len(t, info.MappedPorts, 2)
	require.Equal(t, uint32(8080), info.MappedPorts[0].ContainerPort)
	require.NotEqual(t, info.MappedPorts[0].HostPort, info.MappedPorts[1].HostPort)

	_, err = b.Create(context.Background(), backend.ContainerSpec{Handle: "b", NetIn: []backend.NetIn{{ContainerPort: 8080}}})
	require.ErrorIs(t, err, backend.ErrNoPortsAvailable)
	_, err = os.Stat(filepath.Join(root, "b"))
	require.True(t, errors.Is(err, os.ErrNotExist), "failed create leaves no directory")

	require.NoError(t, b.Destroy(context.Background(), "a"))
	_, err = b.Create(context.Background(), backend.ContainerSpec{Handle: "b", NetIn: []backend.NetIn{{ContainerPort: 8080}}})
	require.NoError(t, err)
	require.NoError(t, b.Destroy(context.Background(), "b"))
	require.ErrorIs(t, b.Destroy(context.Background(), "b"), backend.ErrContainerNotFound)
}

func TestDuplicateHandleAndFilter(t *testing.T) {
	b := newBackend(t, t.TempDir())
	create(t, b, "c1")
	_, err := b.Create(context.Background(), backend.ContainerSpec{Handle: "c1"})
	require.ErrorIs(t, err, backend.ErrHandleExists)
	_, err = b.Create(context.Background(), backend.ContainerSpec{Handle: "../x"})
	require.Error(t, err)

	list, err := b.Containers(context.Background(), backend.Properties{"owner": "test"})
	require.NoError(t, err)
	require.Len(t, list, 1)
	list, err = b.Containers(context.Background(), backend.Properties{"owner": "other"})
	require.NoError(t, err)
	require.Empty(t, list)
	_, err = b.Lookup(context.Background(), "missing")
	require.ErrorIs(t, err, backend.ErrContainerNotFound)
}

// A shell forks a sleep grandchild; stopping the container must kill both.
func TestStopKillsWholeProcessGroup(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	p, err := c.Run(context.Background(), backend.ProcessSpec{
		Path: "sh", Args: []string{"-c", `trap "" TERM; sleep 1000 & echo $! > child.pid; echo $$ > sh.pid; wait`},
	}, backend.ProcessIO{})
	require.NoError(t, err)
	rootfs := filepath.Join(info.Path, "rootfs")
	childPid, err := strconv.Atoi(waitForFile(t, filepath.Join(rootfs, "child.pid")))
	require.NoError(t, err)
	shPid, err := strconv.Atoi(waitForFile(t, filepath.Join(rootfs, "sh.pid")))
	require.NoError(t, err)
	require.False(t, pidGone(childPid))

	// The shell ignores SIGTERM, so only the SIGKILL after the grace time ends it.
	require.NoError(t, c.Stop(context.Background(), false))
	status, err := p.Wait()
	require.NoError(t, err)
	require.Equal(t, 137, status)
	require.Eventually(t, func() bool { return pidGone(childPid) && pidGone(shPid) }, 5*time.Second, 10*time.Millisecond)

	info, err = c.Info(context.Background())
	require.NoError(t, err)
	require.Equal(t, backend.StateStopped, info.State)
	require.Empty(t, info.ProcessIDs)
	_, err = c.Run(context.Background(), backend.ProcessSpec{Path: "true"}, backend.ProcessIO{})
	require.ErrorIs(t, err, backend.ErrContainerStopped)
}

// When a process exits, the grandchildren it left in its group are killed.
func TestExitedLeaderTakesItsGroupDown(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	p, err := c.Run(context.Background(), backend.ProcessSpec{
		Path: "sh", Args: []string{"-c", `sleep 1000 & echo $! > child.pid; exit 0`},
	}, backend.ProcessIO{})
	require.NoError(t, err)
	status, err := p.Wait()
	require.NoError(t, err)
	require.Equal(t, 0, status)
	childPid, err := strconv.Atoi(waitForFile(t, filepath.Join(info.Path, "rootfs", "child.pid")))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return pidGone(childPid) }, 5*time.Second, 10*time.Millisecond)
}

func TestSignalTerminate(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	p, err := c.Run(context.Background(), backend.ProcessSpec{Path: "sleep", Args: []string{"1000"}}, backend.ProcessIO{})
	require.NoError(t, err)
	require.NoError(t, p.Signal(backend.SignalTerminate))
	status, err := p.Wait()
	require.NoError(t, err)
	require.Equal(t, 143, status)
}

func TestStdinIsDelivered(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	var out syncBuffer
	p, err := c.Run(context.Background(), backend.ProcessSpec{Path: "cat"}, backend.ProcessIO{Stdin: strings.NewReader("piped\n"), Stdout: &out})
	require.NoError(t, err)
	_, err = p.Wait()
	require.NoError(t, err)
	require.Equal(t, "piped\n", out.String())
}

// A second backend over the same root, after the first detached, finds the
// container, its ports and its live process, tails its output, and can stop
// it, reporting the status the keeper recorded.
func TestRediscovery(t *testing.T) {
	root := t.TempDir()
	b1 := newBackend(t, root)
	c1 := create(t, b1, "app", 8080)
	info1, err := c1.Info(context.Background())
	require.NoError(t, err)
	_, err = c1.Run(context.Background(), backend.ProcessSpec{
		ID: "web", Path: "sh", Args: []string{"-c", `echo $$ > app.pid; while true; do echo tick; sleep 0.05; done`},
	}, backend.ProcessIO{})
	require.NoError(t, err)
	pid, err := strconv.Atoi(waitForFile(t, filepath.Join(info1.Path, "rootfs", "app.pid")))
	require.NoError(t, err)
	b1.Detach()

	b2 := newBackend(t, root)
	list, err := b2.Containers(context.Background(), backend.Properties{"owner": "test"})
	require.NoError(t, err)
	require.Len(t, list, 1)
	c2 := list[0]
	require.Equal(t, "app", c2.Handle())
	info2, err := c2.Info(context.Background())
	require.NoError(t, err)
	require.Equal(t, info1.MappedPorts, info2.MappedPorts)
	require.Equal(t, []string{"web"}, info2.ProcessIDs)

	var out syncBuffer
	p2, err := c2.Attach(context.Background(), "web", backend.ProcessIO{Stdout: &out})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "tick") }, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, b2.Destroy(context.Background(), "app"))
	status, err := p2.Wait()
	require.NoError(t, err)
	require.Equal(t, 137, status, "the keeper recorded the SIGKILL of Destroy")
	require.True(t, pidGone(pid))
	_, err = os.Stat(filepath.Join(root, "app"))
	require.True(t, errors.Is(err, os.ErrNotExist))
}

func TestCapacityReportsEnforcement(t *testing.T) {
	b := newBackend(t, t.TempDir())
	capacity, err := b.Capacity(context.Background())
	require.NoError(t, err)
	require.NotZero(t, capacity.MemoryInBytes)
	require.NotZero(t, capacity.DiskInBytes)
	require.Equal(t, uint64(process.DefaultMaxContainers), capacity.MaxContainers)
	enforced, reason := b.CgroupStatus()
	require.Equal(t, enforced, capacity.MemoryLimitsEnforced)
	if !enforced {
		require.NotEmpty(t, reason)
		t.Logf("memory limits not enforced on this machine: %s", reason)
	}
	require.NoError(t, b.Ping(context.Background()))
}

// The cgroup probe writes memory.max into a per-container cgroup when the
// hierarchy looks like cgroup v2 (a fake one here).
func TestCgroupProbeWithFakeHierarchy(t *testing.T) {
	cgRoot := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(cgRoot, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644))
	b, err := process.New(process.Options{Root: t.TempDir(), CgroupRoot: cgRoot, CgroupParent: "gavel-test"})
	require.NoError(t, err)
	enforced, reason := b.CgroupStatus()
	require.True(t, enforced, reason)
	_, err = b.Create(context.Background(), backend.ContainerSpec{Handle: "m", Limits: backend.Limits{MemoryInBytes: 64 << 20}})
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(cgRoot, "gavel-test", "m", "memory.max"))
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(64<<20), string(data))

	_, err = process.New(process.Options{Root: t.TempDir(), CgroupRoot: t.TempDir()})
	require.NoError(t, err)
}
