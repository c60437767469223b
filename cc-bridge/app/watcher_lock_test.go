package app_test

import (
	"context"
	"os"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/cc-bridge/app"
	"github.com/gavelhq/gavel/cc-bridge/internal/bridgetest"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/locket"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

// One watcher is active: a second waits for the tps_watcher lock and takes
// over when the first stops.
func TestOneActiveWatcher(t *testing.T) {
	bbs := bridgetest.StartBBS(t)
	etcd := etcdtest.Client(t, etcdtest.SharedServer(t))
	watcher := func(id string) ifrit.Process {
		cfg := app.DefaultTPSWatcherConfig()
		cfg.DebugAddress, cfg.InsecurePlaintext, cfg.CCBaseURL = "", true, "http://127.0.0.1:1"
		cfg.BBSAddresses, cfg.KeyPrefix, cfg.InstanceID = []string{bbs.Addr}, bbs.Prefix, id
		cfg.Etcd = etcdclient.Config{Endpoints: bbs.EtcdEndpoints}
		cfg.LockTTL, cfg.LockRetryInterval = config.Duration(time.Second), config.Duration(100*time.Millisecond)
		require.NoError(t, cfg.Validate())
		return ifrit.Background(app.NewTPSWatcher(cfg, lager.NewLogger(id)).Runner())
	}
	owner := func() string {
		rec, err := locket.FetchLock(context.Background(), etcd, bbs.Prefix, app.WatcherLockName)
		if err != nil {
			return ""
		}
		return rec.Owner
	}
	first := watcher("w-1")
	select {
	case <-first.Ready():
	case err := <-first.Wait():
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("first watcher not ready")
	}
	require.Equal(t, "w-1", owner())
	second := watcher("w-2")
	defer func() {
		second.Signal(os.Interrupt)
		<-second.Wait()
	}()
	select {
	case <-second.Ready():
		t.Fatal("the second watcher runs while the first holds the lock")
	case <-time.After(500 * time.Millisecond):
	}
	first.Signal(os.Interrupt)
	require.NoError(t, <-first.Wait())
	select {
	case <-second.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("the second watcher did not take over")
	}
	require.Equal(t, "w-2", owner())
}
