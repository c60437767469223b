package app

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/bbstest"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Work desired while no auctioneer holds the lock is held by the BBS and
// reaches the auctioneer as soon as it takes the lock, with convergence far
// too slow to be what delivers it.
func TestWorkWaitingForAnAuctioneerReachesItOnceItTakesTheLock(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	cfg := testConfig(t, prefix, "bbs-1")
	cfg.Convergence.Interval = config.Duration(time.Hour)
	cfg.Convergence.StaleUnclaimed = config.Duration(time.Hour)
	cfg.Convergence.KickTask = config.Duration(time.Hour)
	cfg.Convergence.ExpireCompletedTask = config.Duration(2 * time.Hour)
	require.NoError(t, cfg.Validate())
	b := startBBS(t, cfg)
	waitActive(t, b)
	c := dial(t, b.Addr())
	ctx := context.Background()

	_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg-1", 3)})
	require.NoError(t, err)
	_, err = c.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: "t-1", Domain: "d", Definition: &modelsv1.TaskDefinition{
		RootFs: "docker:///busybox", MemoryMb: 10, Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/true"}}},
	}})
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond) // the requester finds no auctioneer and holds the work

	took := time.Now()
	rec := bbstest.StartAuctioneer(t, prefix) // returns once it holds the lock
	require.Eventually(t, func() bool { l, tk := rec.Snapshot(); return len(l) == 1 && len(tk) == 1 }, 5*time.Second, 5*time.Millisecond,
		"the held work reaches the new lock holder without a convergence pass")
	t.Logf("held work reached the auctioneer %s after it took the lock", time.Since(took))
	lrps, tasks := rec.Snapshot()
	require.Equal(t, "pg-1", lrps[0].GetProcessGuid())
	require.ElementsMatch(t, []int32{0, 1, 2}, lrps[0].GetIndices())
	require.Equal(t, "t-1", tasks[0].GetTaskGuid())
}
