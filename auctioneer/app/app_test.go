package app_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/auctioneer/app"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/internal/grpcclient"
	"github.com/gavelhq/gavel/locket"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

// testConfig is an auctioneer on the shared etcd under prefix, with fast locks.
func testConfig(t *testing.T, prefix, id string) app.Config {
	cfg := app.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.InstanceID = id
	cfg.KeyPrefix = prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.BBSAddresses = []string{"127.0.0.1:1"} // unused: these tests place nothing
	cfg.LockTTL = config.Duration(2 * time.Second)
	cfg.LockRetryInterval = config.Duration(100 * time.Millisecond)
	require.NoError(t, cfg.Validate())
	return cfg
}

// start runs an auctioneer in this process; stop signals it and returns its exit error.
func start(t *testing.T, cfg app.Config) (a *app.Auctioneer, stop func() error) {
	t.Helper()
	a = app.New(cfg, lager.NewLogger("auctioneer"))
	proc := ifrit.Background(a.Runner())
	stopped := false
	var exitErr error
	stop = func() error {
		if stopped {
			return exitErr
		}
		stopped = true
		proc.Signal(os.Interrupt)
		select {
		case exitErr = <-proc.Wait():
		case <-time.After(20 * time.Second):
			t.Fatal("auctioneer did not stop")
		}
		return exitErr
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case <-a.Ready():
	case err := <-proc.Wait():
		t.Fatalf("auctioneer exited: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("auctioneer did not start")
	}
	return a, stop
}

func client(t *testing.T, addr string) auctioneerv1.AuctioneerServiceClient {
	pool := grpcclient.NewPool(nil)
	t.Cleanup(pool.Close)
	conn, err := pool.Get(addr)
	require.NoError(t, err)
	return auctioneerv1.NewAuctioneerServiceClient(conn)
}

func request(c auctioneerv1.AuctioneerServiceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.RequestTaskAuctions(ctx, &auctioneerv1.RequestTaskAuctionsRequest{Starts: []*auctioneerv1.TaskStartRequest{{
		TaskGuid: "t", PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
	}}})
	return err
}

func TestTheLockGatesTheAPI(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	first, stopFirst := start(t, testConfig(t, prefix, "auctioneer-1"))
	require.Eventually(t, first.Held, 10*time.Second, 10*time.Millisecond)
	second, _ := start(t, testConfig(t, prefix, "auctioneer-2"))

	// The lock advertises the active auctioneer's gRPC address.
	rec, err := locket.FetchLock(context.Background(), etcdtest.Shared(t), prefix, app.LockName)
	require.NoError(t, err)
	require.Equal(t, "auctioneer-1", rec.Owner)
	require.Equal(t, first.Addr(), string(rec.Value))

	require.NoError(t, request(client(t, first.Addr())))
	require.False(t, second.Held())
	require.Equal(t, codes.Unavailable, status.Code(request(client(t, second.Addr()))))

	// The standby takes over when the active one stops, and advertises itself.
	require.NoError(t, stopFirst())
	require.Eventually(t, second.Held, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, request(client(t, second.Addr())))
	rec, err = locket.FetchLock(context.Background(), etcdtest.Shared(t), prefix, app.LockName)
	require.NoError(t, err)
	require.Equal(t, second.Addr(), string(rec.Value))
}

func TestStopsCleanlyAndServesMetrics(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	a, stop := start(t, testConfig(t, prefix, "auctioneer-1"))
	require.Eventually(t, a.Held, 10*time.Second, 10*time.Millisecond)
	_, err := locket.FetchLock(context.Background(), etcdtest.Shared(t), prefix, app.LockName)
	require.NoError(t, err)

	resp, err := http.Get("http://" + a.DebugAddr() + "/metrics")
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	body := string(raw)
	for _, name := range []string{
		"gavel_auctioneer_lock_held 1", "gavel_auctioneer_auctions_started_total", "gavel_auctioneer_auctions_failed_total",
		"gavel_auctioneer_failed_cell_state_requests_total",
	} {
		require.Contains(t, body, name)
	}

	require.NoError(t, stop())
	require.False(t, a.Held())
	_, err = locket.FetchLock(context.Background(), etcdtest.Shared(t), prefix, app.LockName)
	require.ErrorIs(t, err, locket.ErrNotFound, "the lock is released on stop")
}

func TestConfigValidation(t *testing.T) {
	valid := func() app.Config {
		c := app.DefaultConfig()
		c.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
		c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
		c.BBSAddresses = []string{"127.0.0.1:8889"}
		return c
	}
	require.NoError(t, valid().Validate())

	cases := []struct {
		name   string
		mutate func(*app.Config)
		field  string
	}{
		{"listen address", func(c *app.Config) { c.ListenAddress = "" }, "listen_address: is required"},
		{"log level", func(c *app.Config) { c.LogLevel = "loud" }, "log_level"},
		{"instance id", func(c *app.Config) { c.InstanceID = "" }, "instance_id: is required"},
		{"etcd", func(c *app.Config) { c.Etcd.Endpoints = nil }, "etcd.endpoints"},
		{"bbs", func(c *app.Config) { c.BBSAddresses = nil }, "bbs_addresses"},
		{"empty bbs address", func(c *app.Config) { c.BBSAddresses = []string{"a:1", " "} }, "bbs_addresses[1]: is empty"},
		{"lock ttl", func(c *app.Config) { c.LockTTL = config.Duration(time.Millisecond) }, "lock_ttl: must be at least 1s"},
		{"lock retry", func(c *app.Config) { c.LockRetryInterval = 0 }, "lock_retry_interval"},
		{"cell state timeout", func(c *app.Config) { c.CellStateTimeout = 0 }, "cell_state_timeout"},
		{"cell state workers", func(c *app.Config) { c.CellStateWorkers = 0 }, "cell_state_workers"},
		{"communication timeout", func(c *app.Config) { c.CommunicationTimeout = -1 }, "communication_timeout"},
		{"negative cell state max age", func(c *app.Config) { c.CellStateMaxAge = -1 }, "cell_state_max_age: must be between 0s and 1m0s"},
		{"cell state max age too long", func(c *app.Config) { c.CellStateMaxAge = config.Duration(2 * time.Minute) }, "cell_state_max_age: must be between 0s and 1m0s (got 2m0s)"},
		{"negative min auction interval", func(c *app.Config) { c.MinAuctionInterval = config.Duration(-time.Second) }, "min_auction_interval: must be between 0s and 10s (got -1s)"},
		{"min auction interval too long", func(c *app.Config) { c.MinAuctionInterval = config.Duration(time.Minute) }, "min_auction_interval: must be between 0s and 10s (got 1m0s)"},
		{"negative max auction interval", func(c *app.Config) { c.MaxAuctionInterval = config.Duration(-time.Second) }, "max_auction_interval: must be between 0s and 30s (got -1s)"},
		{"max auction interval too long", func(c *app.Config) { c.MaxAuctionInterval = config.Duration(time.Minute) }, "max_auction_interval: must be between 0s and 30s (got 1m0s)"},
		{"starting container weight", func(c *app.Config) { c.StartingContainerWeight = -1 }, "starting_container_weight"},
		{"bin pack weight", func(c *app.Config) { c.BinPackFirstFitWeight = 2 }, "bin_pack_first_fit_weight"},
		{"in-flight cap", func(c *app.Config) { c.MaxInflightStarts = -1 }, "max_inflight_starts"},
		{"strategy", func(c *app.Config) { c.Strategy = "magic" }, `strategy: unknown strategy "magic" (known: binpack, diego, spread)`},
		{"etcd tls", func(c *app.Config) { c.Etcd.TLS.CAFile = "/nonexistent.pem" }, "etcd.tls:"},
		{"missing strategy file", func(c *app.Config) { c.StrategyFile = "/nonexistent.yaml" }, "strategy_file: strategy file: open /nonexistent.yaml: no such file or directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.field)
		})
	}
	t.Run("every bad field is named", func(t *testing.T) {
		c := valid()
		c.ListenAddress, c.CellStateWorkers = "", -3
		err := c.Validate()
		require.ErrorContains(t, err, "listen_address")
		require.ErrorContains(t, err, "cell_state_workers")
	})
}

func TestLoadReadsOverTheDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auctioneer.json")
	require.NoError(t, os.WriteFile(path, []byte(`{
		"etcd": {"endpoints": ["http://10.0.0.1:2379"]},
		"bbs_addresses": ["10.0.0.2:8889"],
		"cell_state_timeout": "2s",
		"strategy": "spread",
		"seed": 42,
		"insecure_plaintext": true
	}`), 0o600))
	cfg, err := app.Load(path)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Equal(t, 2*time.Second, cfg.CellStateTimeout.D())
	require.Equal(t, "spread", cfg.Strategy)
	require.Equal(t, int64(42), cfg.EngineOptions().Seed)
	require.Equal(t, app.DefaultListenAddress, cfg.ListenAddress)
	require.Equal(t, 0.25, cfg.StartingContainerWeight)
	require.Equal(t, app.DefaultCellStateWorkers, cfg.CellStateWorkers)

	require.NoError(t, os.WriteFile(path, []byte(`{"cell_state_timout": "2s"}`), 0o600))
	_, err = app.Load(path)
	require.ErrorContains(t, err, "cell_state_timout", "unknown fields are refused")
}
