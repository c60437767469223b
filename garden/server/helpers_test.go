package server_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/garden/client"
	"github.com/gavelhq/gavel/garden/server"
	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
	"github.com/gavelhq/gavel/rep/backend/sim"
)

// TestMain lets the test binary act as the keeper of the processes the
// process backend starts.
func TestMain(m *testing.M) {
	if process.KeeperRequested() {
		os.Exit(process.RunKeeper())
	}
	os.Exit(m.Run())
}

// shortDir is a temporary directory with a path short enough for a unix socket.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gdn")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// testServer is a running server and a client of it.
type testServer struct {
	srv     *server.Server
	client  *client.Client
	socket  string
	process ifrit.Process
}

// startServer runs a server over b on a unix socket until the test ends.
func startServer(t *testing.T, b backend.Backend, opts server.Options) *testServer {
	t.Helper()
	if opts.ListenAddr == "" {
		opts.ListenNetwork = "unix"
		opts.ListenAddr = filepath.Join(shortDir(t), "garden.sock")
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("test")
	}
	srv, err := server.New(b, opts)
	require.NoError(t, err)
	proc := ifrit.Invoke(srv)
	ts := &testServer{srv: srv, socket: opts.ListenAddr, process: proc}
	t.Cleanup(ts.stop)
	ts.client, err = client.New(client.Options{Network: opts.ListenNetwork, Address: srv.Addr()})
	require.NoError(t, err)
	return ts
}

func (ts *testServer) stop() {
	ts.process.Signal(os.Interrupt)
	<-ts.process.Wait()
}

// newProcessBackend is a process backend in a temporary root; its
// containers are destroyed when the test ends.
func newProcessBackend(t *testing.T) *process.Backend {
	t.Helper()
	b, err := process.New(process.Options{
		Root: t.TempDir(), PortRangeStart: 13000, PortRangeEnd: 13999,
		PollInterval: 10 * time.Millisecond, DisableCgroups: true, GraceTime: time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		cs, _ := b.Containers(context.Background(), nil)
		for _, c := range cs {
			_ = b.Destroy(context.Background(), c.Handle())
		}
	})
	return b
}

func newSimBackend() *sim.Backend { return sim.New(sim.Options{}) }

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

// tarOf builds a tar of files (name → content).
func tarOf(t *testing.T, files map[string]string) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(content))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return &buf
}

// untar reads a tar into name → content of its regular files.
func untar(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			out[h.Name] = string(b)
		}
	}
}

// recorder is a TCP proxy in front of a server that records the bytes of
// every connection in both directions.
type recorder struct {
	lis      net.Listener
	upstream func() (net.Conn, error)

	mu    sync.Mutex
	conns []*recordedConn
	wg    sync.WaitGroup
}

// recordedConn holds what one connection carried.
type recordedConn struct {
	mu   sync.Mutex
	up   bytes.Buffer // client to server
	down bytes.Buffer // server to client
}

func (c *recordedConn) sent() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up.String()
}

func (c *recordedConn) received() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down.String()
}

type recordingWriter struct {
	conn *recordedConn
	buf  *bytes.Buffer
	w    io.Writer
}

func (w recordingWriter) Write(p []byte) (int, error) {
	w.conn.mu.Lock()
	w.buf.Write(p)
	w.conn.mu.Unlock()
	return w.w.Write(p)
}

func newRecorder(t *testing.T, upstream func() (net.Conn, error)) *recorder {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &recorder{lis: lis, upstream: upstream}
	go r.accept()
	t.Cleanup(func() { lis.Close(); r.wg.Wait() })
	return r
}

func (r *recorder) accept() {
	for {
		c, err := r.lis.Accept()
		if err != nil {
			return
		}
		up, err := r.upstream()
		if err != nil {
			c.Close()
			continue
		}
		rc := &recordedConn{}
		r.mu.Lock()
		r.conns = append(r.conns, rc)
		r.mu.Unlock()
		r.wg.Add(2)
		go func() {
			defer r.wg.Done()
			_, _ = io.Copy(recordingWriter{rc, &rc.up, up}, c)
			_ = up.(interface{ CloseWrite() error }).CloseWrite()
		}()
		go func() {
			defer r.wg.Done()
			_, _ = io.Copy(recordingWriter{rc, &rc.down, c}, up)
			c.Close()
			up.Close()
		}()
	}
}

// take waits until n connections have been recorded and closed, and
// returns them and forgets them.
func (r *recorder) take(t *testing.T, n int) []*recordedConn {
	t.Helper()
	var conns []*recordedConn
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.conns) < n {
			return false
		}
		conns = r.conns[:n]
		return true
	}, 5*time.Second, 5*time.Millisecond)
	r.wg.Wait()
	r.mu.Lock()
	r.conns = r.conns[n:]
	r.mu.Unlock()
	return conns
}
