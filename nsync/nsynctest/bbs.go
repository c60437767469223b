package nsynctest

import (
	"os"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	bbsapp "github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
)

// BBS is a real BBS on the shared embedded etcd (the test's TestMain must
// call etcdtest.RunShared), in plaintext, with a client.
type BBS struct {
	// Addr is the BBS's gRPC address.
	Addr string
	// Client is a client of it.
	Client *client.Client
}

// StartBBS starts a BBS for t; mutate may change its config (for example
// the convergence interval). It stops when t ends.
func StartBBS(t testing.TB, mutate func(*bbsapp.Config)) *BBS {
	t.Helper()
	cfg := bbsapp.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.InstanceID = "bbs-1"
	cfg.KeyPrefix = etcdtest.Prefix(t)
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.LockTTL = config.Duration(2 * time.Second)
	cfg.LockRetryInterval = config.Duration(200 * time.Millisecond)
	cfg.Convergence.Interval = config.Duration(time.Hour)
	if mutate != nil {
		mutate(&cfg)
	}
	require.NoError(t, cfg.Validate())
	b := bbsapp.New(cfg, lager.NewLogger("bbs"))
	Run(t, "bbs", b.Runner())
	require.Eventually(t, b.Held, 10*time.Second, 20*time.Millisecond, "bbs never took the lock")
	c, err := client.New(client.Config{Addresses: []string{b.Addr()}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &BBS{Addr: b.Addr(), Client: c}
}

// Run starts r and stops it (SIGINT) when t ends.
func Run(t testing.TB, name string, r ifrit.Runner) ifrit.Process {
	t.Helper()
	proc := ifrit.Background(r)
	t.Cleanup(func() {
		proc.Signal(os.Interrupt)
		select {
		case <-proc.Wait():
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop", name)
		}
	})
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		t.Fatalf("%s exited: %v", name, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not start", name)
	}
	return proc
}
