package converger_test

import (
	"context"
	"os"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/bbstest"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/bbs/converger"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/locket"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// TestLostCellActedOnWithinItsTTL runs a whole BBS whose convergence interval
// is an hour: only the presence expiry can trigger the pass that marks the
// cell's instances SUSPECT and asks for replacements.
func TestLostCellActedOnWithinItsTTL(t *testing.T) {
	const ttl = 2 * time.Second
	prefix := etcdtest.Prefix(t)
	auctioneer := bbstest.StartAuctioneer(t, prefix)

	cfg := app.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.ListenAddress, cfg.DebugAddress, cfg.InstanceID, cfg.KeyPrefix = "127.0.0.1:0", "127.0.0.1:0", "bbs-1", prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.LockTTL, cfg.LockRetryInterval = config.Duration(2*time.Second), config.Duration(200*time.Millisecond)
	cfg.Convergence = converger.AcceleratedConfig()
	cfg.Convergence.Interval = config.Duration(time.Hour)
	require.NoError(t, cfg.Validate())
	bbs := app.New(cfg, lager.NewLogger("bbs"))
	proc := ifrit.Background(bbs.Runner())
	t.Cleanup(func() { proc.Signal(os.Interrupt); <-proc.Wait() })
	require.Eventually(t, bbs.Held, 20*time.Second, 20*time.Millisecond)
	c, err := client.New(client.Config{Addresses: []string{bbs.Addr()}})
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()

	// A cell registers through locket on a client of its own, so stopping the
	// keep-alive (closing that client) lets the lease expire as a dead rep's would.
	cellClient, err := etcdtest.SharedServer(t).NewClient()
	require.NoError(t, err)
	defer cellClient.Close()
	presence, err := proto.Marshal(&modelsv1.CellPresence{CellId: "cell-1", RepAddress: "127.0.0.1:1"})
	require.NoError(t, err)
	_, err = locket.NewEtcdBackend(cellClient, nil).Acquire(ctx, locket.AcquireRequest{Key: locket.PresenceKey(prefix, "cell-1"), Value: presence, TTL: ttl})
	require.NoError(t, err)

	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: "pg", Domain: "d", RootFs: "preloaded:x", Instances: 2, MemoryMb: 64,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/app"}}},
	}})
	require.NoError(t, err)
	for i := int32(0); i < 2; i++ {
		_, err = c.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{
			ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: i, Domain: "d"},
			InstanceKey:  &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-" + itoa(i), CellId: "cell-1"},
			NetInfo:      &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1"},
		})
		require.NoError(t, err)
	}

	require.Eventually(t, func() bool { return auctioneer.Asks("pg", 0) == 1 && auctioneer.Asks("pg", 1) == 1 }, 10*time.Second, 10*time.Millisecond, "the desire's own auction")
	require.NoError(t, cellClient.Close()) // the rep dies: no more keep-alives, no revoke
	dead := time.Now()
	state := func() (suspects, replacements int) {
		resp, err := c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{"pg"}})
		if err != nil {
			return 0, 0
		}
		for _, a := range resp.GetActualLrps() {
			switch {
			case a.GetPresence() == models.Suspect && a.GetState() == models.Running:
				suspects++
			case a.GetPresence() == models.Ordinary && a.GetState() == models.Unclaimed:
				replacements++
			}
		}
		return suspects, replacements
	}
	require.Eventually(t, func() bool {
		s, r := state()
		return s == 2 && r == 2 && auctioneer.Asks("pg", 0) == 2 && auctioneer.Asks("pg", 1) == 2
	}, ttl+time.Second, 20*time.Millisecond, "within the TTL plus one second of the rep's death: suspects and replacement auctions")
	t.Logf("acted on %s after the last keep-alive could have been sent (ttl %s)", time.Since(dead).Round(time.Millisecond), ttl)
}
