package etcdtest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
	"github.com/tedsuo/ifrit"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gavelhq/gavel/internal/etcdserver"
)

// Server is a running embedded etcd for tests.
type Server struct {
	process   ifrit.Process
	endpoints []string
	dir       string
}

// Endpoints returns the server's client URLs.
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// NewClient dials a new client to the server; the caller closes it.
func (s *Server) NewClient() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   s.endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// Stop stops the server and removes its data directory.
func (s *Server) Stop() error {
	s.process.Signal(syscall.SIGTERM)
	err := <-s.process.Wait()
	if s.dir != "" {
		if rmErr := os.RemoveAll(s.dir); err == nil {
			err = rmErr
		}
	}
	return err
}

// StartServer starts an embedded etcd with its data in dir (created if
// missing) on free loopback ports. Stop it with [Server.Stop].
func StartServer(dir string) (*Server, error) {
	return StartServerWith(dir, Options{})
}

// Options change a test etcd's limits; zero fields keep etcdserver's defaults.
type Options struct {
	// MaxTxnOps is --max-txn-ops (etcd's own default is 128).
	MaxTxnOps uint
	// MaxRequestBytes is --max-request-bytes (etcd's own default is 1.5 MiB).
	MaxRequestBytes uint
}

// StartServerWith is [StartServer] with opts.
func StartServerWith(dir string, opts Options) (*Server, error) {
	cfg := etcdserver.Config{
		MaxTxnOps:       opts.MaxTxnOps,
		MaxRequestBytes: opts.MaxRequestBytes,
		DataDir:         dir,
		ClientURL:       "http://127.0.0.1:0",
		PeerURL:         "http://127.0.0.1:0",
		UnsafeNoFsync:   true,
		// etcd logs benign errors at start and stop; keep test output clean.
		LogLevel:          "fatal",
		HeartbeatInterval: 10 * time.Millisecond,
		ElectionTimeout:   100 * time.Millisecond,
		StartTimeout:      30 * time.Second,
		// Small quota: tests never need more and a sparse 8 GiB mmap is
		// pointless.
		QuotaBackendBytes: 256 << 20,
	}
	logger := lager.NewLogger("etcdtest")
	runner := etcdserver.New(cfg, logger)
	process := ifrit.Background(runner)
	select {
	case <-process.Ready():
	case err := <-process.Wait():
		return nil, fmt.Errorf("etcdtest: etcd exited before ready: %w", err)
	}
	return &Server{process: process, endpoints: runner.Endpoints()}, nil
}

// Start starts an etcd for this test alone and returns a client to it. Both
// are stopped when the test ends.
func Start(t testing.TB) *clientv3.Client {
	t.Helper()
	srv, err := StartServer(t.TempDir())
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("etcdtest: stopping etcd: %v", err)
		}
	})
	return Client(t, srv)
}

// StartWith starts an etcd with opts for this test alone and returns the
// server; it is stopped when the test ends.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	srv, err := StartServerWith(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("etcdtest: stopping etcd: %v", err)
		}
	})
	return srv
}

// Client dials a new client to srv that is closed when the test ends.
func Client(t testing.TB, srv *Server) *clientv3.Client {
	t.Helper()
	client, err := srv.NewClient()
	if err != nil {
		t.Fatalf("etcdtest: dialing etcd: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Get(ctx, "/etcdtest-ping"); err != nil {
		t.Fatalf("etcdtest: etcd not answering: %v", err)
	}
	return client
}

// shared is the etcd started by RunShared for the test binary. It is set
// once, before any test runs, and only read afterwards.
var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// RunShared starts one etcd for the package's tests, runs them and stops
// it, returning m.Run's exit code. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }
func RunShared(m *testing.M) int {
	dir, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdtest: %v\n", err)
		return 1
	}
	shared.once.Do(func() { shared.srv, shared.err = StartServer(dir) })
	if shared.err != nil {
		fmt.Fprintf(os.Stderr, "etcdtest: starting shared etcd: %v\n", shared.err)
		_ = os.RemoveAll(dir)
		return 1
	}
	shared.srv.dir = dir
	code := m.Run()
	if err := shared.srv.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "etcdtest: stopping shared etcd: %v\n", err)
	}
	return code
}

// SharedServer returns the etcd started by [RunShared], or, when the
// package has no such TestMain, starts one for this test alone.
func SharedServer(t testing.TB) *Server {
	t.Helper()
	if shared.srv != nil {
		return shared.srv
	}
	srv, err := StartServer(t.TempDir())
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("etcdtest: stopping etcd: %v", err)
		}
	})
	return srv
}

// Shared returns a new client, closed when the test ends, to the etcd
// started by [RunShared] (or to a private one if there is none). Combine it
// with [Prefix] to keep tests apart.
func Shared(t testing.TB) *clientv3.Client {
	t.Helper()
	return Client(t, SharedServer(t))
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// Prefix returns a key prefix unique to this test, such as
// "/test/TestLock_two_contenders-1a2b3c4d/". It starts and ends with '/'.
func Prefix(t testing.TB) string {
	name := unsafeChars.ReplaceAllString(t.Name(), "_")
	return "/test/" + name + "-" + uuid.NewString()[:8] + "/"
}
