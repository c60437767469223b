package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/garden"
	"github.com/gavelhq/gavel/garden/client"
	"github.com/gavelhq/gavel/garden/server"
	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
	"github.com/gavelhq/gavel/rep/backend/sim"
)

func TestNewValidatesOptions(t *testing.T) {
	for name, opts := range map[string]server.Options{
		"no address":          {},
		"bad network":         {ListenNetwork: "udp", ListenAddr: "x"},
		"negative grace time": {ListenAddr: "127.0.0.1:0", DefaultGraceTime: -1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := server.New(newSimBackend(), opts)
			require.Error(t, err)
		})
	}
	_, err := server.New(nil, server.Options{ListenAddr: "127.0.0.1:0"})
	require.Error(t, err)
}

func TestListensOnTCPAndUnixSockets(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		ts := startServer(t, newSimBackend(), server.Options{ListenNetwork: "tcp", ListenAddr: "127.0.0.1:0"})
		require.NoError(t, ts.client.Ping(context.Background()))
	})
	t.Run("unix replaces a stale socket and is world-writable", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "garden.sock")
		require.NoError(t, os.WriteFile(path, []byte("stale"), 0o600))
		ts := startServer(t, newSimBackend(), server.Options{ListenNetwork: "unix", ListenAddr: path})
		require.NoError(t, ts.client.Ping(context.Background()))
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, os.ModeSocket, fi.Mode().Type())
		require.Equal(t, os.FileMode(0o777), fi.Mode().Perm())
	})
}

func TestContainerLifecycleOverProcessBackend(t *testing.T) {
	ts := startServer(t, newProcessBackend(t), server.Options{})
	c, ctx := ts.client, context.Background()

	capacity, err := c.Capacity(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, capacity.MaxContainers, uint64(2))
	require.NotZero(t, capacity.MemoryInBytes)

	h, err := c.Create(ctx, garden.ContainerSpec{
		Handle: "web", Properties: garden.Properties{"owner": "me"},
		NetIn: []garden.NetIn{{ContainerPort: 8080}}, Env: []string{"GREETING=hi"},
	})
	require.NoError(t, err)
	require.Equal(t, "web", h)
	_, err = c.Create(ctx, garden.ContainerSpec{Properties: garden.Properties{"owner": "you"}})
	require.NoError(t, err, "a Create without a handle gets a generated one")

	handles, err := c.Containers(ctx, garden.Properties{"owner": "me"})
	require.NoError(t, err)
	require.Equal(t, []string{"web"}, handles)
	all, err := c.Containers(ctx, nil)
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.NoError(t, c.Lookup(ctx, "web"))

	info, err := c.Info(ctx, "web")
	require.NoError(t, err)
	require.Equal(t, garden.ContainerStateActive, info.State)
	require.Equal(t, "me", info.Properties["owner"])
	require.Equal(t, garden.StateCreated, info.Properties[garden.PropertyState])
	require.Len(t, info.MappedPorts, 1)
	require.Equal(t, uint32(8080), info.MappedPorts[0].ContainerPort)
	require.NotZero(t, info.MappedPorts[0].HostPort)
	require.Equal(t, "127.0.0.1", info.ExternalIP)
	require.Equal(t, info.ExternalIP, info.ContainerIP)

	var stdout syncBuffer
	p, err := c.Run(ctx, "web", garden.ProcessSpec{Path: "sh", Args: []string{"-c", "echo $GREETING"}}, client.ProcessIO{Stdout: &stdout})
	require.NoError(t, err)
	require.NotEmpty(t, p.ID(), "the server generates a process ID")
	status, err := p.Wait()
	require.NoError(t, err)
	require.Equal(t, 0, status)
	require.Equal(t, "hi\n", stdout.String(), "the container env reaches the process")

	require.NoError(t, c.Stop(ctx, "web", false))
	info, err = c.Info(ctx, "web")
	require.NoError(t, err)
	require.Equal(t, garden.ContainerStateStopped, info.State)

	require.NoError(t, c.Destroy(ctx, "web"))
	require.ErrorIs(t, c.Lookup(ctx, "web"), garden.ContainerNotFoundError{Handle: "web"})
	require.ErrorIs(t, c.Destroy(ctx, "web"), garden.ContainerNotFoundError{Handle: "web"})
}

func TestListStateFilter(t *testing.T) {
	b := newSimBackend()
	ts := startServer(t, b, server.Options{})
	c, ctx := ts.client, context.Background()
	_, err := c.Create(ctx, garden.ContainerSpec{Handle: "via-garden", Properties: garden.Properties{"team": "a"}})
	require.NoError(t, err)
	// Made behind the server's back: no garden.state, as a half-created one.
	_, err = b.Create(ctx, backend.ContainerSpec{Handle: "raw", Properties: backend.Properties{"team": "b"}})
	require.NoError(t, err)

	cases := []struct {
		name   string
		filter garden.Properties
		want   []string
	}{
		{"no state key matches created ones only", nil, []string{"via-garden"}},
		{"state all matches every one", garden.Properties{garden.PropertyState: "all"}, []string{"raw", "via-garden"}},
		{"state all with a property", garden.Properties{garden.PropertyState: "all", "team": "b"}, []string{"raw"}},
		{"empty state matches a missing key", garden.Properties{garden.PropertyState: ""}, []string{"raw"}},
		{"empty value matches a missing key", garden.Properties{"team": "", garden.PropertyState: "all"}, []string{}},
		{"literal state", garden.Properties{garden.PropertyState: "created", "team": "a"}, []string{"via-garden"}},
		{"no match", garden.Properties{"team": "c"}, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Containers(ctx, tc.filter)
			require.NoError(t, err)
			if len(tc.want) == 0 {
				require.Empty(t, got)
				return
			}
			require.ElementsMatch(t, tc.want, got)
		})
	}
}

func TestRunOverProcessBackend(t *testing.T) {
	ts := startServer(t, newProcessBackend(t), server.Options{})
	c, ctx := ts.client, context.Background()
	_, err := c.Create(ctx, garden.ContainerSpec{Handle: "box"})
	require.NoError(t, err)

	cases := []struct {
		name             string
		spec             garden.ProcessSpec
		stdin            io.Reader
		wantOut, wantErr string
		wantStatus       int
	}{
		{"stdout, stderr and exit code", garden.ProcessSpec{Path: "sh", Args: []string{"-c", "echo out; echo err >&2; exit 3"}}, nil, "out\n", "err\n", 3},
		{"stdin until EOF", garden.ProcessSpec{Path: "cat"}, strings.NewReader("line 1\nline 2\n"), "line 1\nline 2\n", "", 0},
		{"env and dir", garden.ProcessSpec{Path: "sh", Args: []string{"-c", "echo $FOO; basename $(pwd)"}, Env: []string{"FOO=bar"}, Dir: "/work/dir"}, nil, "bar\ndir\n", "", 0},
		{"binary-safe output", garden.ProcessSpec{Path: "printf", Args: []string{`\377\000\001`}}, nil, "\xff\x00\x01", "", 0},
		{"death by signal is 128+n", garden.ProcessSpec{Path: "sh", Args: []string{"-c", "kill -9 $$"}}, nil, "", "", 137},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			p, err := c.Run(ctx, "box", tc.spec, client.ProcessIO{Stdin: tc.stdin, Stdout: &stdout, Stderr: &stderr})
			require.NoError(t, err)
			status, err := p.Wait()
			require.NoError(t, err)
			require.Equal(t, tc.wantStatus, status)
			require.Equal(t, tc.wantOut, stdout.String())
			require.Equal(t, tc.wantErr, stderr.String())
		})
	}

	t.Run("signals", func(t *testing.T) {
		for sig, want := range map[garden.Signal]int{garden.SignalTerminate: 143, garden.SignalKill: 137} {
			p, err := c.Run(ctx, "box", garden.ProcessSpec{Path: "sleep", Args: []string{"60"}}, client.ProcessIO{})
			require.NoError(t, err)
			require.NoError(t, p.Signal(sig))
			status, err := p.Wait()
			require.NoError(t, err)
			require.Equal(t, want, status)
		}
	})

	t.Run("wait does not depend on stdin", func(t *testing.T) {
		stdinR, stdinW := io.Pipe() // never closed until the end
		defer stdinW.Close()
		p, err := c.Run(ctx, "box", garden.ProcessSpec{Path: "true"}, client.ProcessIO{Stdin: stdinR})
		require.NoError(t, err)
		status, err := p.Wait()
		require.NoError(t, err)
		require.Equal(t, 0, status)
	})

	t.Run("output nobody reads never blocks the process", func(t *testing.T) {
		p, err := c.Run(ctx, "box", garden.ProcessSpec{Path: "sh", Args: []string{"-c", "head -c 20000000 /dev/zero; exit 4"}}, client.ProcessIO{})
		require.NoError(t, err)
		status, err := p.Wait()
		require.NoError(t, err)
		require.Equal(t, 4, status)
	})

	t.Run("duplicate live process id", func(t *testing.T) {
		p, err := c.Run(ctx, "box", garden.ProcessSpec{ID: "dup", Path: "sleep", Args: []string{"60"}}, client.ProcessIO{})
		require.NoError(t, err)
		_, err = c.Run(ctx, "box", garden.ProcessSpec{ID: "dup", Path: "true"}, client.ProcessIO{})
		require.ErrorContains(t, err, "already in use")
		require.NoError(t, p.Signal(garden.SignalKill))
		_, err = p.Wait()
		require.NoError(t, err)
	})
}

func TestAttachAfterDroppedConnection(t *testing.T) {
	ts := startServer(t, newProcessBackend(t), server.Options{})
	c, ctx := ts.client, context.Background()
	_, err := c.Create(ctx, garden.ContainerSpec{Handle: "box"})
	require.NoError(t, err)

	var before syncBuffer
	p, err := c.Run(ctx, "box", garden.ProcessSpec{ID: "long", Path: "sh", Args: []string{"-c", "echo before; read go; echo after $go; exit 7"}},
		client.ProcessIO{Stdout: &before})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return before.String() == "before\n" }, 5*time.Second, 5*time.Millisecond)
	p.Detach()
	_, err = p.Wait()
	require.Error(t, err, "a detached Wait reports the dropped connection")

	info, err := c.Info(ctx, "box")
	require.NoError(t, err)
	require.Contains(t, info.ProcessIDs, "long", "the process survived the dropped connection")

	var after syncBuffer
	p2, err := c.Attach(ctx, "box", "long", client.ProcessIO{Stdin: strings.NewReader("now\n"), Stdout: &after})
	require.NoError(t, err)
	status, err := p2.Wait()
	require.NoError(t, err)
	require.Equal(t, 7, status)
	require.Equal(t, "after now\n", after.String())

	// An exited process stays attachable for the retention.
	p3, err := c.Attach(ctx, "box", "long", client.ProcessIO{})
	require.NoError(t, err)
	status, err = p3.Wait()
	require.NoError(t, err)
	require.Equal(t, 7, status)
}

func TestAttachFansOutToEveryAttacher(t *testing.T) {
	ts := startServer(t, newProcessBackend(t), server.Options{})
	c, ctx := ts.client, context.Background()
	_, err := c.Create(ctx, garden.ContainerSpec{Handle: "box"})
	require.NoError(t, err)
	var a, b syncBuffer
	pa, err := c.Run(ctx, "box", garden.ProcessSpec{ID: "p", Path: "sh", Args: []string{"-c", "read x; echo $x"}}, client.ProcessIO{Stdout: &a})
	require.NoError(t, err)
	pb, err := c.Attach(ctx, "box", "p", client.ProcessIO{Stdout: &b, Stdin: strings.NewReader("shared\n")})
	require.NoError(t, err)
	for _, p := range []*client.Process{pa, pb} {
		status, err := p.Wait()
		require.NoError(t, err)
		require.Equal(t, 0, status)
	}
	require.Equal(t, "shared\n", a.String())
	require.Equal(t, "shared\n", b.String())
}

func TestStreamInAndOutOverProcessBackend(t *testing.T) {
	ts := startServer(t, newProcessBackend(t), server.Options{})
	c, ctx := ts.client, context.Background()
	_, err := c.Create(ctx, garden.ContainerSpec{Handle: "box"})
	require.NoError(t, err)
	require.NoError(t, c.StreamIn(ctx, "box", "/app", "vcap", tarOf(t, map[string]string{"hello.txt": "hello\n", "sub/x": "x"})))

	var stdout syncBuffer
	p, err := c.Run(ctx, "box", garden.ProcessSpec{Path: "cat", Args: []string{"hello.txt"}, Dir: "/app"}, client.ProcessIO{Stdout: &stdout})
	require.NoError(t, err)
	_, err = p.Wait()
	require.NoError(t, err)
	require.Equal(t, "hello\n", stdout.String(), "the process sees the streamed-in file")

	rc, err := c.StreamOut(ctx, "box", "/app/hello.txt", "vcap")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"hello.txt": "hello\n"}, untar(t, rc))
	require.NoError(t, rc.Close())

	rc, err = c.StreamOut(ctx, "box", "/app", "vcap")
	require.NoError(t, err)
	files := untar(t, rc)
	require.NoError(t, rc.Close())
	require.Equal(t, "x", files["app/sub/x"])
}

// rawGet sends one request over the socket and returns status and body.
func rawDo(t *testing.T, socket, method, path, body string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	req, err := http.NewRequest(method, "http://api"+path, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestUnknownHandleIsNotFoundOnEveryRoute(t *testing.T) {
	ts := startServer(t, newRichBackend(), server.Options{})
	routes := []struct{ method, path, body string }{
		{"GET", "/containers/nope/info", ""},
		{"DELETE", "/containers/nope", ""},
		{"PUT", "/containers/nope/stop", `{"kill":false}`},
		{"PUT", "/containers/nope/files?destination=/x", ""},
		{"GET", "/containers/nope/files?source=/x", ""},
		{"GET", "/containers/nope/limits/bandwidth", ""},
		{"GET", "/containers/nope/limits/cpu", ""},
		{"GET", "/containers/nope/limits/disk", ""},
		{"GET", "/containers/nope/limits/memory", ""},
		{"POST", "/containers/nope/net/in", `{}`},
		{"POST", "/containers/nope/net/out", `{}`},
		{"POST", "/containers/nope/net/out/bulk", `[]`},
		{"POST", "/containers/nope/processes", `{"path":"true"}`},
		{"GET", "/containers/nope/processes/p", ""},
		{"GET", "/containers/nope/processes/p/attaches/1/stdout", ""},
		{"GET", "/containers/nope/processes/p/attaches/1/stderr", ""},
		{"PUT", "/containers/nope/grace_time", "1"},
		{"GET", "/containers/nope/properties", ""},
		{"GET", "/containers/nope/properties/k", ""},
		{"PUT", "/containers/nope/properties/k", `{"value":"v"}`},
		{"DELETE", "/containers/nope/properties/k", ""},
		{"GET", "/containers/nope/metrics", ""},
	}
	for _, r := range routes {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			status, body := rawDo(t, ts.socket, r.method, r.path, r.body)
			require.Equal(t, http.StatusNotFound, status)
			require.Equal(t, `{"Type":"ContainerNotFoundError","Message":"unknown handle: nope","Handle":"nope","ProcessID":"","Binary":""}`+"\n", body)
		})
	}
	t.Run("unknown path gets the router's plain 404", func(t *testing.T) {
		status, body := rawDo(t, ts.socket, "GET", "/nothing", "")
		require.Equal(t, http.StatusNotFound, status)
		require.Equal(t, "404 page not found\n", body)
	})
	t.Run("bulk info without handles parameter", func(t *testing.T) {
		status, body := rawDo(t, ts.socket, "GET", "/containers/bulk_info", "")
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, "{}\n", body)
	})
	t.Run("unknown stream id closes at once", func(t *testing.T) {
		_, err := ts.client.Create(context.Background(), garden.ContainerSpec{Handle: "c"})
		require.NoError(t, err)
		conn, err := net.Dial("unix", ts.socket)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "GET /containers/c/processes/p/attaches/999/stdout HTTP/1.1\r\nHost: api\r\n\r\n")
		require.NoError(t, err)
		raw, err := io.ReadAll(conn) // ends: the server closes at once
		require.NoError(t, err)
		head, rest, ok := strings.Cut(string(raw), "\r\n\r\n")
		require.True(t, ok)
		require.True(t, strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n"), head)
		require.Empty(t, rest)
	})
}

func TestOptionalCapabilities(t *testing.T) {
	rich := newRichBackend()
	ts := startServer(t, rich, server.Options{})
	c, ctx := ts.client, context.Background()
	_, err := c.Create(ctx, garden.ContainerSpec{Handle: "rich", Limits: garden.Limits{
		CPU: garden.CPULimits{Weight: 512}, Memory: garden.MemoryLimits{LimitInBytes: 1 << 20}, Disk: garden.DiskLimits{ByteHard: 1 << 30},
	}})
	require.NoError(t, err)

	require.NoError(t, c.SetProperty(ctx, "rich", "log_config", `{"guid":"g"}`))
	v, err := c.Property(ctx, "rich", "log_config")
	require.NoError(t, err)
	require.Equal(t, `{"guid":"g"}`, v)
	require.NoError(t, c.RemoveProperty(ctx, "rich", "log_config"))
	_, err = c.Property(ctx, "rich", "log_config")
	require.ErrorContains(t, err, "property does not exist: log_config")

	cpu, err := c.CPULimits(ctx, "rich")
	require.NoError(t, err)
	// limit_in_shares too: guardian reports a weight set at Create there.
	require.Equal(t, garden.CPULimits{Weight: 512, LimitInShares: 512}, cpu)
	mem, err := c.MemoryLimits(ctx, "rich")
	require.NoError(t, err)
	require.Equal(t, garden.MemoryLimits{LimitInBytes: 1 << 20}, mem)
	disk, err := c.DiskLimits(ctx, "rich")
	require.NoError(t, err)
	require.Equal(t, garden.DiskLimits{ByteHard: 1 << 30}, disk)

	host, cont, err := c.NetIn(ctx, "rich", 0, 8080)
	require.NoError(t, err)
	require.Equal(t, [2]uint32{50000, 8080}, [2]uint32{host, cont})

	m, err := c.Metrics(ctx, "rich")
	require.NoError(t, err)
	require.Equal(t, uint64(1000), m.MemoryStat.TotalUsageTowardLimit)
	require.Equal(t, uint64(900), m.MemoryStat.Rss)
	require.Equal(t, uint64(100), m.MemoryStat.Cache)
	require.Equal(t, garden.ContainerCPUStat{Usage: 5, User: 3, System: 2}, m.CPUStat)
	require.Equal(t, uint64(4096), m.DiskStat.TotalBytesUsed)
	require.Equal(t, &garden.ContainerNetworkStat{RxBytes: 11, TxBytes: 12}, m.NetworkStat)
	require.Equal(t, time.Duration(7), m.Age)

	t.Run("tty spec and resize frames", func(t *testing.T) {
		p, err := c.Run(ctx, "rich", garden.ProcessSpec{Path: "server", TTY: &garden.TTYSpec{}}, client.ProcessIO{})
		require.NoError(t, err)
		require.Equal(t, backend.TTYSpec{Columns: 80, Rows: 24}, <-rich.runTTYs, "a TTY without a size gets 80x24")
		require.NoError(t, p.SetTTY(garden.TTYSpec{WindowSize: &garden.WindowSize{Columns: 100, Rows: 40}}))
		require.Equal(t, backend.TTYSpec{Columns: 100, Rows: 40}, <-rich.resizes)
		require.NoError(t, p.Signal(garden.SignalKill))
		status, err := p.Wait()
		require.NoError(t, err)
		require.Equal(t, 137, status)
	})

	bulk, err := c.BulkMetrics(ctx, []string{"rich", "nope"})
	require.NoError(t, err)
	require.Nil(t, bulk["rich"].Err)
	require.Equal(t, m, bulk["rich"].Metrics)
	require.Equal(t, "unknown handle: nope", bulk["nope"].Err.Message)
}

func TestGraceTimeReaping(t *testing.T) {
	const grace = 150 * time.Millisecond
	b := newRichBackend()
	ts := startServer(t, b, server.Options{DefaultGraceTime: grace})
	c, ctx := ts.client, context.Background()
	gone := func(h string) func() bool {
		return func() bool { return errors.Is(c.Lookup(ctx, h), garden.ContainerNotFoundError{}) }
	}

	t.Run("idle container is destroyed after the default grace time", func(t *testing.T) {
		_, err := c.Create(ctx, garden.ContainerSpec{Handle: "idle"})
		require.NoError(t, err)
		props, err := c.Properties(ctx, "idle")
		require.NoError(t, err)
		require.Equal(t, "150000000", props[garden.PropertyGraceTime])
		require.Eventually(t, gone("idle"), 5*time.Second, 10*time.Millisecond)
	})

	t.Run("an attached stream keeps the container", func(t *testing.T) {
		_, err := c.Create(ctx, garden.ContainerSpec{Handle: "busy"})
		require.NoError(t, err)
		p, err := c.Run(ctx, "busy", garden.ProcessSpec{Path: "server"}, client.ProcessIO{})
		require.NoError(t, err)
		time.Sleep(3 * grace)
		require.NoError(t, c.Lookup(ctx, "busy"))
		p.Detach()
		require.Eventually(t, gone("busy"), 5*time.Second, 10*time.Millisecond)
	})

	t.Run("set grace time restarts the timer and is persisted", func(t *testing.T) {
		_, err := c.Create(ctx, garden.ContainerSpec{Handle: "kept", GraceTime: grace})
		require.NoError(t, err)
		require.NoError(t, c.SetGraceTime(ctx, "kept", time.Hour))
		time.Sleep(3 * grace)
		require.NoError(t, c.Lookup(ctx, "kept"))
		props, err := c.Properties(ctx, "kept")
		require.NoError(t, err)
		require.Equal(t, "3600000000000", props[garden.PropertyGraceTime])
		require.NoError(t, c.SetGraceTime(ctx, "kept", grace))
		require.Eventually(t, gone("kept"), 5*time.Second, 10*time.Millisecond)
	})
}

func TestGraceTimeSurvivesServerRestart(t *testing.T) {
	b := newSimBackend()
	first := startServer(t, b, server.Options{})
	_, err := first.client.Create(context.Background(), garden.ContainerSpec{Handle: "h", GraceTime: 300 * time.Millisecond})
	require.NoError(t, err)
	first.stop()

	second := startServer(t, b, server.Options{})
	require.NoError(t, second.client.Lookup(context.Background(), "h"))
	require.Eventually(t, func() bool {
		_, err := b.Lookup(context.Background(), "h")
		return errors.Is(err, backend.ErrContainerNotFound)
	}, 5*time.Second, 10*time.Millisecond)
}

func TestConcurrentDestroy(t *testing.T) {
	b := &blockingBackend{Backend: sim.New(sim.Options{}), entered: make(chan struct{}, 1), release: make(chan struct{})}
	ts := startServer(t, b, server.Options{})
	c, ctx := ts.client, context.Background()
	_, err := c.Create(ctx, garden.ContainerSpec{Handle: "h"})
	require.NoError(t, err)

	firstDone := make(chan error, 1)
	go func() { firstDone <- c.Destroy(ctx, "h") }()
	<-b.entered
	err = c.Destroy(ctx, "h")
	require.EqualError(t, err, garden.MessageAlreadyBeingDestroyed)
	close(b.release)
	require.NoError(t, <-firstDone)
}

func TestRequestBounds(t *testing.T) {
	ts := startServer(t, newRichBackend(), server.Options{MaxBodyBytes: 1024})
	c, ctx := ts.client, context.Background()
	cases := []struct {
		name string
		call func() error
		want string
	}{
		{"body too large", func() error {
			_, err := c.Create(ctx, garden.ContainerSpec{Properties: garden.Properties{"k": strings.Repeat("v", 2048)}})
			return err
		}, "request body larger than 1024 bytes"},
		{"handle too long", func() error {
			_, err := c.Create(ctx, garden.ContainerSpec{Handle: strings.Repeat("h", server.MaxHandleLength+1)})
			return err
		}, "handle longer than 255 bytes"},
		{"handle with a slash", func() error {
			_, err := c.Create(ctx, garden.ContainerSpec{Handle: "a/b"})
			return err
		}, `handle "a/b" contains '/'`},
		{"both rootfs and image", func() error {
			_, err := c.Create(ctx, garden.ContainerSpec{RootFSPath: "/a", Image: garden.ImageRef{URI: "/b"}})
			return err
		}, "cannot have both rootfs and image.uri"},
		{"malformed JSON", func() error {
			status, body := rawDo(t, ts.socket, "POST", "/containers", "{")
			require.Equal(t, http.StatusInternalServerError, status)
			var e garden.Error
			require.NoError(t, json.Unmarshal([]byte(body), &e))
			return &e
		}, "decoding request body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorContains(t, tc.call(), tc.want)
		})
	}
}

func TestStopDetachesStreams(t *testing.T) {
	ts := startServer(t, newSimBackend(), server.Options{})
	c, ctx := ts.client, context.Background()
	_, err := c.Create(ctx, garden.ContainerSpec{Handle: "h"})
	require.NoError(t, err)
	p, err := c.Run(ctx, "h", garden.ProcessSpec{Path: "server"}, client.ProcessIO{Stdout: io.Discard})
	require.NoError(t, err)
	stopped := make(chan struct{})
	go func() { ts.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not stop with a stream attached")
	}
	_, err = p.Wait()
	require.Error(t, err)
}

func TestReaperRunsOnTheInjectedClock(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Now())
	b := newSimBackend()
	ts := startServer(t, b, server.Options{Clock: clk, DefaultGraceTime: time.Minute})
	ctx := context.Background()
	_, err := ts.client.Create(ctx, garden.ContainerSpec{Handle: "h"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return clk.WatcherCount() == 1 }, 5*time.Second, time.Millisecond)

	clk.Increment(59 * time.Second)
	require.NoError(t, ts.client.Lookup(ctx, "h"))
	// A request naming the container restarts its grace time.
	// (The old timer is stopped before the answer; the new one may start
	// just after it.)
	_, err = ts.client.Info(ctx, "h")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return clk.WatcherCount() == 1 }, 5*time.Second, time.Millisecond)
	clk.Increment(59 * time.Second)
	require.NoError(t, ts.client.Lookup(ctx, "h"))
	clk.Increment(2 * time.Second)
	require.Eventually(t, func() bool {
		_, err := b.Lookup(ctx, "h")
		return errors.Is(err, backend.ErrContainerNotFound)
	}, 5*time.Second, 5*time.Millisecond)
}

func TestGraceTimeSetLaterSurvivesRestartOverProcessBackend(t *testing.T) {
	root := t.TempDir()
	opts := process.Options{Root: root, PortRangeStart: 14000, PortRangeEnd: 14099, PollInterval: 10 * time.Millisecond, DisableCgroups: true}
	b1, err := process.New(opts)
	require.NoError(t, err)
	first := startServer(t, b1, server.Options{})
	ctx := context.Background()
	_, err = first.client.Create(ctx, garden.ContainerSpec{Handle: "h"}) // never reaped
	require.NoError(t, err)
	require.NoError(t, first.client.SetGraceTime(ctx, "h", 200*time.Millisecond))
	first.stop()
	b1.Detach()

	b2, err := process.New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b2.Destroy(ctx, "h") })
	startServer(t, b2, server.Options{})
	require.Eventually(t, func() bool {
		_, err := b2.Lookup(ctx, "h")
		return errors.Is(err, backend.ErrContainerNotFound)
	}, 5*time.Second, 10*time.Millisecond, "the new server reaps with the grace time set on the old one")
}
