package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdtest"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// With claim_delay, a simulated cell runs a placed instance at once and its
// start is the row's first write after UNCLAIMED, through a real BBS and
// etcd; a placement naming an outdated run info version is refused at the
// start, its container goes and the row stays UNCLAIMED for the converger.
func TestClaimDelayStartsAnInstanceWithoutAClaim(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBS(t, prefix)
	cfg := simConfig(t, prefix, b.Addr(), 1)
	cfg.ClaimDelay = config.Duration(5 * time.Second)
	require.NoError(t, cfg.Validate())
	r, _ := startRep(t, cfg)
	cell := r.Cells()[0]
	repc := dialRep(t, cell.Addr())

	list, err := bbs.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{})
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := bbs.SubscribeEvents(sctx, &bbsv1.SubscribeEventsRequest{SinceRevision: list.GetRevision(), Kinds: []bbsv1.EventKind{bbsv1.EventKind_EVENT_KIND_ACTUAL_LRP}})
	require.NoError(t, err)

	for _, guid := range []string{"cd-current", "cd-outdated"} {
		_, err = bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: desiredLRP(guid, runA("/bin/app"), healthChecks())})
		require.NoError(t, err)
	}
	place := func(guid string, revisionOffset int64) {
		got, err := bbs.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: guid})
		require.NoError(t, err)
		d := got.GetDesiredLrp()
		resp, err := repc.Perform(ctx, &repv1.PerformRequest{CellId: cell.ID(), Lrps: []*repv1.LRP{{
			Key:                 &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: 0, Domain: d.GetDomain()},
			Resource:            &auctioneerv1.Resource{MemoryMb: d.GetMemoryMb(), DiskMb: d.GetDiskMb()},
			PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: d.GetRootFs()},
			DesiredEpoch:        d.GetModificationTag().GetEpoch(),
			RunInfoRevision:     got.GetRunInfoRevision() + revisionOffset,
		}}})
		require.NoError(t, err)
		require.Empty(t, resp.GetFailedLrps())
	}
	place("cd-current", 0)
	place("cd-outdated", -1)

	// The current placement: UNCLAIMED is created, then changed straight to RUNNING.
	var states []modelsv1.ActualLRPState
	for len(states) == 0 || states[len(states)-1] != modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING {
		e, err := events.Recv()
		require.NoError(t, err)
		changed := e.GetEvent().GetActualLrpInstanceChanged()
		if changed.GetAfter().GetKey().GetProcessGuid() == "cd-current" {
			states = append(states, changed.GetAfter().GetState())
		}
	}
	require.Equal(t, []modelsv1.ActualLRPState{modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING}, states,
		"the instance's first write after UNCLAIMED is its start: no CLAIMED in between")
	running := actual(t, bbs, "cd-current", 0)
	require.Equal(t, cell.ID(), running.GetInstanceKey().GetCellId())

	// The outdated placement ran, its start was refused, and its container is gone.
	require.Eventually(t, func() bool {
		st, err := repc.State(ctx, &repv1.StateRequest{})
		return err == nil && len(st.GetLrps()) == 1 && st.GetLrps()[0].GetKey().GetProcessGuid() == "cd-current"
	}, 20*time.Second, 20*time.Millisecond, "only the current instance's container is left")
	require.Equal(t, modelsv1.ActualLRPState_ACTUAL_LRP_STATE_UNCLAIMED, actual(t, bbs, "cd-outdated", 0).GetState(),
		"a refused start leaves the row UNCLAIMED, for the converger to place again")

	_, metrics, err := get("http://" + r.DebugAddr() + "/metrics")
	require.NoError(t, err)
	require.Contains(t, metrics, `gavel_rep_run_before_claim_total{outcome="started"} 1`)
	require.Contains(t, metrics, `gavel_rep_run_before_claim_total{outcome="refused"} 1`)
}
