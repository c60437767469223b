package etcdserver_test

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gavelhq/gavel/internal/etcdserver"
)

func testConfig(dir string) etcdserver.Config {
	return etcdserver.Config{
		DataDir:           dir,
		ClientURL:         "http://127.0.0.1:0",
		PeerURL:           "http://127.0.0.1:0",
		UnsafeNoFsync:     true,
		LogFile:           filepath.Join(dir, "..", "etcd.log"),
		HeartbeatInterval: 10 * time.Millisecond,
		ElectionTimeout:   100 * time.Millisecond,
		QuotaBackendBytes: 64 << 20,
	}
}

func start(t *testing.T, cfg etcdserver.Config) (*etcdserver.Embedded, ifrit.Process) {
	t.Helper()
	runner := etcdserver.New(cfg, lager.NewLogger("etcd"))
	proc := ifrit.Background(runner)
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		t.Fatalf("etcd exited before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	return runner, proc
}

func dial(t *testing.T, eps []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRunServesStopsAndKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	runner, proc := start(t, testConfig(dir))

	eps := runner.Endpoints()
	require.Len(t, eps, 1)
	assert.True(t, strings.HasPrefix(eps[0], "http://127.0.0.1:"))
	assert.NotEqual(t, "http://127.0.0.1:0", eps[0], "port 0 must be resolved to the bound port")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dial(t, eps)
	_, err := c.Put(ctx, "/k", "v1")
	require.NoError(t, err)

	t.Run("large transactions are allowed", func(t *testing.T) {
		ops := make([]clientv3.Op, 1000) // etcd's default limit is 128
		for i := range ops {
			ops[i] = clientv3.OpPut("/many/"+strings.Repeat("x", 4)+string(rune('a'+i%26))+"-"+time.Duration(i).String(), "v")
		}
		_, err := c.Txn(ctx).Then(ops...).Commit()
		require.NoError(t, err)
	})

	proc.Signal(syscall.SIGTERM)
	select {
	case err := <-proc.Wait():
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("etcd did not stop on signal")
	}

	// Restart on the same data dir: the key survives.
	runner2, proc2 := start(t, testConfig(dir))
	defer func() {
		proc2.Signal(syscall.SIGTERM)
		<-proc2.Wait()
	}()
	c2 := dial(t, runner2.Endpoints())
	resp, err := c2.Get(ctx, "/k")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	assert.Equal(t, "v1", string(resp.Kvs[0].Value))
}

// The running etcd keeps DefaultSnapshotCatchUpEntries raft entries for
// followers, not etcd's 5,000 (each BBS group commit is one entry of up to
// 64 KiB), and takes the configured value when one is set.
func TestRaftCatchUpEntries(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  uint64
		want uint64
	}{
		{"default", 0, etcdserver.DefaultSnapshotCatchUpEntries},
		{"configured", 2500, 2500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(filepath.Join(t.TempDir(), "data"))
			cfg.SnapshotCatchUpEntries = tc.set
			runner, proc := start(t, cfg)
			defer func() {
				proc.Signal(syscall.SIGTERM)
				<-proc.Wait()
			}()
			require.Equal(t, tc.want, etcdserver.CatchUpEntries(runner))
		})
	}
}

func TestBadConfigFailsRun(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*etcdserver.Config)
		want string
	}{
		{"no data dir", func(c *etcdserver.Config) { c.DataDir = "" }, "data_dir"},
		{"no port", func(c *etcdserver.Config) { c.ClientURL = "http://127.0.0.1" }, "client_url"},
		{"bad scheme", func(c *etcdserver.Config) { c.PeerURL = "unix://x:1" }, "peer_url"},
		{"bad log level", func(c *etcdserver.Config) { c.LogLevel = "loud" }, "log_level"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			tc.mod(&cfg)
			err := cfg.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)

			proc := ifrit.Background(etcdserver.New(cfg, lager.NewLogger("etcd")))
			select {
			case err := <-proc.Wait():
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.want)
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not fail")
			}
		})
	}
}

func TestPortInUseFails(t *testing.T) {
	runner, proc := start(t, testConfig(filepath.Join(t.TempDir(), "a")))
	defer func() {
		proc.Signal(syscall.SIGTERM)
		<-proc.Wait()
	}()
	cfg := testConfig(filepath.Join(t.TempDir(), "b"))
	cfg.ClientURL = runner.Endpoints()[0]
	p2 := ifrit.Background(etcdserver.New(cfg, lager.NewLogger("etcd")))
	select {
	case err := <-p2.Wait():
		require.Error(t, err)
		assert.Contains(t, err.Error(), "starting etcd")
	case <-time.After(20 * time.Second):
		t.Fatal("second etcd on the same port did not fail")
	}
}

// The in-process client reaches the same etcd as a network client, and
// etcd's own request limits still apply to it.
func TestLocalClientCallsTheServerInProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := testConfig(dir)
	cfg.MaxTxnOps = 8
	runner, proc := start(t, cfg)
	defer func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() }()

	local, err := runner.LocalClient()
	require.NoError(t, err)
	defer func() { _ = local.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = local.Put(ctx, "k", "from-local")
	require.NoError(t, err)
	got, err := dial(t, runner.Endpoints()).Get(ctx, "k")
	require.NoError(t, err)
	require.Len(t, got.Kvs, 1)
	require.Equal(t, "from-local", string(got.Kvs[0].Value))

	ops := make([]clientv3.Op, 9)
	for i := range ops {
		ops[i] = clientv3.OpPut("k"+strings.Repeat("x", i), "v")
	}
	_, err = local.Txn(ctx).Then(ops...).Commit()
	require.Error(t, err, "--max-txn-ops binds the in-process client too")

	wch := local.Watch(ctx, "w")
	_, err = local.Put(ctx, "w", "1")
	require.NoError(t, err)
	select {
	case resp := <-wch:
		require.Len(t, resp.Events, 1)
	case <-ctx.Done():
		t.Fatal("no watch event through the in-process client")
	}
}

// The in-process KV writes to the same etcd, and etcd's checks of a
// transaction (--max-txn-ops, duplicate keys) still apply to it.
func TestLocalKVCallsTheServerInProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := testConfig(dir)
	cfg.MaxTxnOps = 8
	runner, proc := start(t, cfg)
	defer func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() }()

	kv, err := runner.LocalKV()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	put := func(key string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: []byte("from-kv")}}}
	}
	resp, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{put("a"), put("b")}})
	require.NoError(t, err)
	require.True(t, resp.Succeeded)
	got, err := dial(t, runner.Endpoints()).Get(ctx, "b")
	require.NoError(t, err)
	require.Len(t, got.Kvs, 1)
	require.Equal(t, "from-kv", string(got.Kvs[0].Value))
	require.Equal(t, resp.Header.Revision, got.Kvs[0].ModRevision)

	ops := make([]*pb.RequestOp, 9)
	for i := range ops {
		ops[i] = put("k" + strings.Repeat("x", i))
	}
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: ops})
	require.ErrorIs(t, err, rpctypes.ErrGRPCTooManyOps, "--max-txn-ops binds the in-process KV too")
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{put("d"), put("d")}})
	require.ErrorIs(t, err, rpctypes.ErrGRPCDuplicateKey)
}

func TestLocalClientBeforeReadyFails(t *testing.T) {
	runner := etcdserver.New(testConfig(t.TempDir()), lager.NewLogger("etcd"))
	_, err := runner.LocalClient()
	require.Error(t, err)
	_, err = runner.LocalKV()
	require.Error(t, err)
}
