package app_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	"github.com/gavelhq/gavel/rep/harmonizer"
)

// evacCountingBBS is the real BBS client, counting evacuation calls.
type evacCountingBBS struct {
	harmonizer.BBS
	batches, reports, singles atomic.Int64
	largest                   atomic.Int64
}

func (c *evacCountingBBS) BatchEvacuateActualLRPs(ctx context.Context, in *bbsv1.BatchEvacuateActualLRPsRequest, opts ...grpc.CallOption) (*bbsv1.BatchEvacuateActualLRPsResponse, error) {
	c.batches.Add(1)
	n := int64(len(in.GetReports()))
	c.reports.Add(n)
	for {
		old := c.largest.Load()
		if n <= old || c.largest.CompareAndSwap(old, n) {
			break
		}
	}
	return c.BBS.BatchEvacuateActualLRPs(ctx, in, opts...)
}

func (c *evacCountingBBS) EvacuateRunningActualLRP(ctx context.Context, in *bbsv1.EvacuateRunningActualLRPRequest, opts ...grpc.CallOption) (*bbsv1.EvacuateRunningActualLRPResponse, error) {
	c.singles.Add(1)
	return c.BBS.EvacuateRunningActualLRP(ctx, in, opts...)
}

// A draining cell reports its running instances to a real BBS in batches:
// far fewer calls than instances, none above the bound, and every instance
// evacuated (an EVACUATING row, its index unclaimed for a replacement).
func TestEvacuationReportsAreBatched(t *testing.T) {
	_, c := startBBS(t, etcdtest.Prefix(t))
	bbs := &evacCountingBBS{BBS: c}
	cell, evac := simCellEvac(t, "cell-1", bbs, nil)

	const n = 24
	d := desiredLRP("pg-evac", runA("/bin/app"), nil)
	d.Instances = n
	_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
	require.NoError(t, err)
	for i := range int32(n) {
		reserveIndex(t, cell, d, i, fmt.Sprintf("ig-%d", i))
	}
	for i := range int32(n) {
		requireRunning(t, bbs, "pg-evac", i, fmt.Sprintf("ig-%d", i))
	}

	evac.Evacuate()
	require.Eventually(t, func() bool {
		resp, err := c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{"pg-evac"}})
		if err != nil {
			return false
		}
		evacuating := 0
		for _, a := range resp.GetActualLrps() {
			if a.GetPresence() == models.Evacuating && a.GetInstanceKey().GetCellId() == "cell-1" {
				evacuating++
			}
		}
		return evacuating == n
	}, 20*time.Second, 20*time.Millisecond, "every running instance evacuated")
	require.EqualValues(t, n, bbs.reports.Load(), "one report per instance")
	require.Less(t, bbs.batches.Load(), int64(n/2), "reports went in batches")
	require.LessOrEqual(t, bbs.largest.Load(), int64(models.MaxEvacuationBatch))
	require.Zero(t, bbs.singles.Load(), "no single evacuation calls")
	t.Logf("%d reports in %d calls (largest %d)", bbs.reports.Load(), bbs.batches.Load(), bbs.largest.Load())
}

// The BBS refuses a batch above its bound, naming the field.
func TestEvacuationBatchBound(t *testing.T) {
	_, c := startBBS(t, etcdtest.Prefix(t))
	reports := make([]*bbsv1.EvacuationReport, models.MaxEvacuationBatch+1)
	for i := range reports {
		reports[i] = &bbsv1.EvacuationReport{}
	}
	_, err := c.BatchEvacuateActualLRPs(ctx, &bbsv1.BatchEvacuateActualLRPsRequest{Reports: reports})
	require.ErrorIs(t, err, models.ErrInvalid)
	require.ErrorContains(t, err, "reports")
	// An empty report is refused alone, naming its index.
	resp, err := c.BatchEvacuateActualLRPs(ctx, &bbsv1.BatchEvacuateActualLRPsRequest{Reports: reports[:1]})
	require.NoError(t, err)
	require.Len(t, resp.GetResults(), 1)
	require.Contains(t, resp.GetResults()[0].GetMessage(), "reports[0].report")
}
