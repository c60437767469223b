package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"

	auctioneerapp "github.com/gavelhq/gavel/auctioneer/app"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// TestStrategyFileInTheDaemon: an auctioneer whose config names a
// strategy file places with it. The file packs (the negated resource
// score, no zone walk), so all four instances land on one cell where
// diego, the default, puts two on each (TestPlacementEndToEnd).
func TestStrategyFileInTheDaemon(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	bbs, c := startBBS(t, prefix)
	startCell(t, prefix, "cell-a", c)
	startCell(t, prefix, "cell-b", c)

	sf := filepath.Join(t.TempDir(), "pack.yaml")
	require.NoError(t, os.WriteFile(sf, []byte("name: pack\nscore: -usage_after\n"), 0o600))
	cfg := auctioneerapp.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.InstanceID = "auctioneer-1"
	cfg.KeyPrefix = prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.BBSAddresses = []string{bbs.Addr()}
	cfg.LockTTL = config.Duration(2 * time.Second)
	cfg.LockRetryInterval = config.Duration(100 * time.Millisecond)
	cfg.CellStateTimeout = config.Duration(2 * time.Second)
	cfg.StrategyFile = sf
	require.NoError(t, cfg.Validate())
	a := auctioneerapp.New(cfg, lager.NewLogger("auctioneer"))
	run(t, "auctioneer", a.Runner())
	require.Eventually(t, a.Held, wait, 10*time.Millisecond, "the auctioneer never took its lock")

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: desiredLRP("packed", 4, 128)})
	require.NoError(t, err)
	var perCell map[string]int
	require.Eventually(t, func() bool {
		perCell = map[string]int{}
		for _, a := range actuals(t, c, "packed") {
			if a.GetState() == modelsv1.ActualLRPState_ACTUAL_LRP_STATE_CLAIMED {
				perCell[a.GetInstanceKey().GetCellId()]++
			}
		}
		return perCell["cell-a"]+perCell["cell-b"] == 4
	}, wait, 20*time.Millisecond, "claimed: %v", perCell)
	require.Len(t, perCell, 1, "the packing strategy put every instance on one cell: %v", perCell)
}
