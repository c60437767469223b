package garden_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/garden/server"
	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/garden"
	"github.com/gavelhq/gavel/rep/backend/process"
)

// TestMain lets the test binary act as the keeper of the processes the
// process backend behind the Garden server starts.
func TestMain(m *testing.M) {
	if process.KeeperRequested() {
		os.Exit(process.RunKeeper())
	}
	os.Exit(m.Run())
}

// newStack runs process backend → garden/server on a unix socket and
// returns a garden backend talking to it.
func newStack(t *testing.T) *garden.Backend {
	t.Helper()
	pb, err := process.New(process.Options{
		Root: t.TempDir(), PortRangeStart: 14500, PortRangeEnd: 15499,
		PollInterval: 10 * time.Millisecond, DisableCgroups: true, GraceTime: time.Second,
	})
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "gdb")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "garden.sock")
	srv, err := server.New(pb, server.Options{ListenNetwork: "unix", ListenAddr: socket, Logger: lager.NewLogger("test")})
	require.NoError(t, err)
	proc := ifrit.Invoke(srv)
	t.Cleanup(func() {
		cs, _ := pb.Containers(context.Background(), nil)
		for _, c := range cs {
			_ = pb.Destroy(context.Background(), c.Handle())
		}
		proc.Signal(os.Interrupt)
		<-proc.Wait()
	})
	b, err := garden.New(garden.Options{Network: "unix", Address: socket})
	require.NoError(t, err)
	return b
}

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

func TestNewValidatesOptions(t *testing.T) {
	_, err := garden.New(garden.Options{})
	require.Error(t, err)
	_, err = garden.New(garden.Options{Network: "udp", Address: "x"})
	require.Error(t, err)
}

func TestContainersEndToEnd(t *testing.T) {
	b := newStack(t)
	ctx := context.Background()

	require.NoError(t, b.Ping(ctx))
	capacity, err := b.Capacity(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, capacity.MaxContainers, uint64(2))
	require.NotZero(t, capacity.MemoryInBytes)
	require.NotZero(t, capacity.DiskInBytes)

	c, err := b.Create(ctx, backend.ContainerSpec{
		Handle: "app-0", Image: "/rootfs.tar", Env: []string{"GREETING=hello"},
		Properties: backend.Properties{"executor:owner": "rep"},
		Limits:     backend.Limits{MemoryInBytes: 64 << 20, DiskInBytes: 1 << 30, MaxPids: 100, CPUWeight: 512},
		NetIn:      []backend.NetIn{{ContainerPort: 8080}},
	})
	require.NoError(t, err)
	require.Equal(t, "app-0", c.Handle())

	_, err = b.Create(ctx, backend.ContainerSpec{Handle: "app-0"})
	require.ErrorIs(t, err, backend.ErrHandleExists)

	info, err := c.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, backend.StateActive, info.State)
	require.Equal(t, "127.0.0.1", info.HostIP)
	require.Equal(t, "127.0.0.1", info.ContainerIP)
	require.True(t, info.SharedHostNetwork, "the process backend has no network namespace")
	require.Len(t, info.MappedPorts, 1)
	require.Equal(t, uint32(8080), info.MappedPorts[0].ContainerPort)
	require.NotZero(t, info.MappedPorts[0].HostPort)
	require.Equal(t, "rep", info.Properties["executor:owner"])

	listed, err := b.Containers(ctx, backend.Properties{"executor:owner": "rep"})
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.Equal(t, "app-0", listed[0].Handle())
	listed, err = b.Containers(ctx, backend.Properties{"executor:owner": "someone-else"})
	require.NoError(t, err)
	require.Empty(t, listed)

	// The executor's start-up wipe lists with garden.state=all.
	listed, err = b.Containers(ctx, backend.Properties{"executor:owner": "rep", "garden.state": "all"})
	require.NoError(t, err)
	require.Len(t, listed, 1)

	found, err := b.Lookup(ctx, "app-0")
	require.NoError(t, err)
	props, err := found.Properties(ctx)
	require.NoError(t, err)
	require.Equal(t, "rep", props["executor:owner"])

	require.NoError(t, c.StreamIn(ctx, backend.StreamInSpec{Path: "/app", User: "vcap", TarStream: tarOf(t, "run.sh", "echo $GREETING from run.sh\n")}))
	var stdout, stderr syncBuffer
	p, err := c.Run(ctx, backend.ProcessSpec{Path: "sh", Args: []string{"run.sh"}, Dir: "/app"}, backend.ProcessIO{Stdout: &stdout, Stderr: &stderr})
	require.NoError(t, err)
	status, err := p.Wait()
	require.NoError(t, err)
	require.Equal(t, 0, status)
	require.Equal(t, "hello from run.sh\n", stdout.String())

	rc, err := c.StreamOut(ctx, backend.StreamOutSpec{Path: "/app/run.sh", User: "vcap"})
	require.NoError(t, err)
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	require.NoError(t, err)
	require.Equal(t, "run.sh", h.Name, "the first tar entry is the file itself")
	require.NoError(t, rc.Close())

	require.NoError(t, b.Destroy(ctx, "app-0"))
	_, err = b.Lookup(ctx, "app-0")
	require.ErrorIs(t, err, backend.ErrContainerNotFound)
	require.ErrorIs(t, b.Destroy(ctx, "app-0"), backend.ErrContainerNotFound)
	_, err = c.Info(ctx)
	require.ErrorIs(t, err, backend.ErrContainerNotFound)
}

func TestProcessesEndToEnd(t *testing.T) {
	b := newStack(t)
	ctx := context.Background()
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: "box"})
	require.NoError(t, err)

	cases := []struct {
		name             string
		spec             backend.ProcessSpec
		stdin            io.Reader
		wantOut, wantErr string
		wantStatus       int
	}{
		{"output and exit code", backend.ProcessSpec{Path: "sh", Args: []string{"-c", "echo out; echo err >&2; exit 3"}}, nil, "out\n", "err\n", 3},
		{"stdin", backend.ProcessSpec{Path: "cat"}, strings.NewReader("in\n"), "in\n", "", 0},
		{"env", backend.ProcessSpec{Path: "sh", Args: []string{"-c", "echo $A"}, Env: []string{"A=b"}}, nil, "b\n", "", 0},
		{"nofile limit", backend.ProcessSpec{Path: "sh", Args: []string{"-c", "ulimit -n"}, Limits: backend.ProcessLimits{Nofile: 256}}, nil, "256\n", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			p, err := c.Run(ctx, tc.spec, backend.ProcessIO{Stdin: tc.stdin, Stdout: &stdout, Stderr: &stderr})
			require.NoError(t, err)
			status, err := p.Wait()
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, status)
			require.Equal(t, tc.wantOut, stdout.String())
			require.Equal(t, tc.wantErr, stderr.String())
		})
	}

	t.Run("terminate then kill, as the executor stops a process", func(t *testing.T) {
		p, err := c.Run(ctx, backend.ProcessSpec{ID: "stubborn", Path: "sh", Args: []string{"-c", "trap '' TERM; echo ready; sleep 60 & wait"}},
			backend.ProcessIO{Stdout: io.Discard})
		require.NoError(t, err)
		require.Equal(t, "stubborn", p.ID())
		time.Sleep(100 * time.Millisecond)
		require.NoError(t, p.Signal(backend.SignalTerminate))
		require.NoError(t, p.Signal(backend.SignalKill))
		status, err := p.Wait()
		require.NoError(t, err)
		require.Equal(t, 137, status)
	})

	t.Run("attach to a running process", func(t *testing.T) {
		_, err := c.Run(ctx, backend.ProcessSpec{ID: "waiter", Path: "sh", Args: []string{"-c", "read x; echo got $x; exit 9"}}, backend.ProcessIO{})
		require.NoError(t, err)
		info, err := c.Info(ctx)
		require.NoError(t, err)
		require.Contains(t, info.ProcessIDs, "waiter")
		var out syncBuffer
		p, err := c.Attach(ctx, "waiter", backend.ProcessIO{Stdin: strings.NewReader("it\n"), Stdout: &out})
		require.NoError(t, err)
		status, err := p.Wait()
		require.NoError(t, err)
		require.Equal(t, 9, status)
		require.Equal(t, "got it\n", out.String())
	})

	t.Run("attach to an unknown process", func(t *testing.T) {
		_, err := c.Attach(ctx, "nope", backend.ProcessIO{})
		require.ErrorIs(t, err, backend.ErrProcessNotFound)
	})

	t.Run("missing executable fails Run", func(t *testing.T) {
		_, err := c.Run(ctx, backend.ProcessSpec{Path: "no-such-binary-xyz"}, backend.ProcessIO{})
		require.Error(t, err)
	})

	t.Run("stop ends every process and keeps the container", func(t *testing.T) {
		p, err := c.Run(ctx, backend.ProcessSpec{Path: "sleep", Args: []string{"60"}}, backend.ProcessIO{})
		require.NoError(t, err)
		require.NoError(t, c.Stop(ctx, true))
		status, err := p.Wait()
		require.NoError(t, err)
		require.Equal(t, 137, status)
		info, err := c.Info(ctx)
		require.NoError(t, err)
		require.Equal(t, backend.StateStopped, info.State)
	})
}

func TestOptionalCapabilities(t *testing.T) {
	b := newStack(t)
	ctx := context.Background()
	limits := backend.Limits{MemoryInBytes: 64 << 20, DiskInBytes: 1 << 30, CPUWeight: 512}
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: "box", Limits: limits, Properties: backend.Properties{"log_config": "old"}})
	require.NoError(t, err)

	t.Run("properties and limits, which the process backend has", func(t *testing.T) {
		pe := c.(backend.PropertyEditor)
		require.NoError(t, pe.SetProperty(ctx, "log_config", "new"))
		require.NoError(t, pe.RemoveProperty(ctx, "log_config"))
		require.NoError(t, pe.SetProperty(ctx, "tag", "x"))
		props, err := c.Properties(ctx)
		require.NoError(t, err)
		require.NotContains(t, props, "log_config")
		require.Equal(t, "x", props["tag"])
		got, err := c.(backend.LimitsReporter).Limits(ctx)
		require.NoError(t, err)
		require.Equal(t, limits, got)
	})

	t.Run("metrics, which the process backend reads from /proc", func(t *testing.T) {
		m, err := c.(backend.MetricsReporter).Metrics(ctx)
		require.NoError(t, err)
		require.Positive(t, m.Age)
		bulk, err := b.BulkMetrics(ctx, []string{"box", "missing"})
		require.NoError(t, err)
		require.Contains(t, bulk, "box")
		require.NotContains(t, bulk, "missing", "a failed entry is left out")
	})

	t.Run("net-in, which it has not: the server's clear error", func(t *testing.T) {
		_, err := c.(backend.NetInAdder).NetIn(ctx, 0, 8080)
		require.ErrorContains(t, err, "net in after create is not supported")
	})
}

func TestUnreachableServer(t *testing.T) {
	b, err := garden.New(garden.Options{Network: "unix", Address: filepath.Join(t.TempDir(), "none.sock")})
	require.NoError(t, err)
	err = b.Ping(context.Background())
	require.Error(t, err)
	require.False(t, errors.Is(err, backend.ErrContainerNotFound))
}

func tarOf(t *testing.T, name, content string) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}))
	_, err := tw.Write([]byte(content))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	return &buf
}

// A Wait in progress survives a restart of the Garden server: the process
// keeps running on the backend, Wait re-attaches once the server is back and
// reports the process's real exit status and the output written afterwards.
func TestWaitReattachesAcrossAServerRestart(t *testing.T) {
	root := t.TempDir()
	newProcessBackend := func() *process.Backend {
		pb, err := process.New(process.Options{
			Root: root, PortRangeStart: 14500, PortRangeEnd: 15499,
			PollInterval: 10 * time.Millisecond, DisableCgroups: true, GraceTime: time.Second,
		})
		require.NoError(t, err)
		return pb
	}
	dir, err := os.MkdirTemp("", "gdb")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "garden.sock")
	serve := func(pb *process.Backend) ifrit.Process {
		srv, err := server.New(pb, server.Options{ListenNetwork: "unix", ListenAddr: socket, Logger: lager.NewLogger("test")})
		require.NoError(t, err)
		return ifrit.Invoke(srv)
	}
	pb := newProcessBackend()
	running := serve(pb)

	b, err := garden.New(garden.Options{Network: "unix", Address: socket, ReattachTimeout: 30 * time.Second})
	require.NoError(t, err)
	ctx := context.Background()
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: "restart"})
	require.NoError(t, err)
	marker := filepath.Join(root, "go-on")
	out := &syncBuffer{}
	p, err := c.Run(ctx, backend.ProcessSpec{ID: "waiter", Path: "/bin/sh", Args: []string{"-c",
		"echo before; while [ ! -e " + marker + " ]; do sleep 0.05; done; sleep 0.3; echo after; exit 5"}},
		backend.ProcessIO{Stdout: out})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "before") }, 10*time.Second, 10*time.Millisecond)

	type result struct {
		status int
		err    error
	}
	waited := make(chan result, 1)
	go func() {
		status, err := p.Wait()
		waited <- result{status, err}
	}()

	// The server goes away (its backend lets go of the process, which keeps
	// running under its keeper) and comes back over the same root.
	running.Signal(os.Interrupt)
	<-running.Wait()
	pb.Detach()
	select {
	case r := <-waited:
		t.Fatalf("Wait returned while the server was down: %d, %v", r.status, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	pb2 := newProcessBackend()
	running = serve(pb2)
	t.Cleanup(func() {
		_ = pb2.Destroy(context.Background(), "restart")
		running.Signal(os.Interrupt)
		<-running.Wait()
	})
	time.Sleep(300 * time.Millisecond) // let Wait re-attach before the process goes on
	require.NoError(t, os.WriteFile(marker, nil, 0o644))
	select {
	case r := <-waited:
		require.NoError(t, r.err)
		require.Equal(t, 5, r.status)
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not return after the server came back")
	}
	require.Contains(t, out.String(), "after", "output written after the re-attach is delivered")
}

// A process the restarted server does not know ends Wait with an error at
// once instead of waiting out the re-attach timeout.
func TestWaitGivesUpOnAProcessTheServerForgot(t *testing.T) {
	dir, err := os.MkdirTemp("", "gdb")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "garden.sock")
	serve := func() (*process.Backend, ifrit.Process) {
		pb, err := process.New(process.Options{
			Root: t.TempDir(), PortRangeStart: 14500, PortRangeEnd: 15499,
			PollInterval: 10 * time.Millisecond, DisableCgroups: true, GraceTime: time.Second,
		})
		require.NoError(t, err)
		srv, err := server.New(pb, server.Options{ListenNetwork: "unix", ListenAddr: socket, Logger: lager.NewLogger("test")})
		require.NoError(t, err)
		return pb, ifrit.Invoke(srv)
	}
	pb, running := serve()
	b, err := garden.New(garden.Options{Network: "unix", Address: socket, ReattachTimeout: time.Minute})
	require.NoError(t, err)
	ctx := context.Background()
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: "forgot"})
	require.NoError(t, err)
	p, err := c.Run(ctx, backend.ProcessSpec{ID: "sleeper", Path: "/bin/sh", Args: []string{"-c", "sleep 30"}}, backend.ProcessIO{})
	require.NoError(t, err)
	waited := make(chan error, 1)
	go func() { _, err := p.Wait(); waited <- err }()

	// The server comes back over another (empty) backend.
	running.Signal(os.Interrupt)
	<-running.Wait()
	require.NoError(t, pb.Destroy(ctx, "forgot"))
	_, running = serve()
	t.Cleanup(func() { running.Signal(os.Interrupt); <-running.Wait() })
	select {
	case err := <-waited:
		require.ErrorIs(t, err, backend.ErrContainerNotFound)
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not give up on a container the server does not know")
	}
}
