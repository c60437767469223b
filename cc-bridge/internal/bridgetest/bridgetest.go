// Package bridgetest starts a real BBS (on the package's shared embedded
// etcd, under the test's own key prefix) for the cc-bridge's unit tests.
// The test plays the cells through the BBS API; convergence is off.
package bridgetest

import (
	"os"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	bbsapp "github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
)

// BBS is a running BBS.
type BBS struct {
	// Addr is its gRPC address.
	Addr string
	// Client is a plaintext client of it.
	Client *client.Client
	// Prefix is its etcd key prefix.
	Prefix string
	// EtcdEndpoints are the shared etcd's endpoints.
	EtcdEndpoints []string
}

// StartBBS starts a plaintext BBS; it stops when the test ends. The package
// must run etcdtest.RunShared in its TestMain.
func StartBBS(t testing.TB) *BBS {
	t.Helper()
	prefix := etcdtest.Prefix(t)
	endpoints := etcdtest.SharedServer(t).Endpoints()
	cfg := bbsapp.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/
	cfg.ListenAddress, cfg.DebugAddress = "127.0.0.1:0", "127.0.0.1:0"
	cfg.InstanceID = "bbs-1"
	cfg.KeyPrefix = prefix
	cfg.Etcd = etcdclient.Config{Endpoints: endpoints}
	cfg.LockTTL = config.Duration(2 * time.Second)
	cfg.LockRetryInterval = config.Duration(200 * time.Millisecond)
	cfg.Convergence.Interval = config.Duration(time.Hour) // the test plays the cells
	if err := cfg.Validate(); err != nil {
		t.Fatalf("bbs config: %v", err)
	}
	b := bbsapp.New(cfg, lager.NewLogger("bbs"))
	proc := ifrit.Background(b.Runner())
	t.Cleanup(func() {
		proc.Signal(os.Interrupt)
		select {
		case <-proc.Wait():
		case <-time.After(20 * time.Second):
			t.Errorf("bbs did not stop")
		}
	})
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		t.Fatalf("bbs: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("bbs not ready within 30s")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !b.Held() {
		if time.Now().After(deadline) {
			t.Fatal("bbs never took its lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := client.New(client.Config{Addresses: []string{b.Addr()}})
	if err != nil {
		t.Fatalf("bbs client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &BBS{Addr: b.Addr(), Client: c, Prefix: prefix, EtcdEndpoints: endpoints}
}
