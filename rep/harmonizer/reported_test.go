package harmonizer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/backend/sim"
)

// listingBBS is flakyStartBBS (after its first start) with a bulk sync's
// listing: rows, set by the test, and no tasks.
type listingBBS struct {
	flakyStartBBS
	rowsMu sync.Mutex
	rows   []*modelsv1.ActualLRP
}

func (l *listingBBS) ListActualLRPs(context.Context, *bbsv1.ListActualLRPsRequest, ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error) {
	l.rowsMu.Lock()
	defer l.rowsMu.Unlock()
	return &bbsv1.ListActualLRPsResponse{ActualLrps: l.rows}, nil
}

func (l *listingBBS) ListTasks(context.Context, *bbsv1.ListTasksRequest, ...grpc.CallOption) (*bbsv1.ListTasksResponse, error) {
	return &bbsv1.ListTasksResponse{}, nil
}

func (l *listingBBS) setRows(rows ...*modelsv1.ActualLRP) {
	l.rowsMu.Lock()
	defer l.rowsMu.Unlock()
	l.rows = rows
}

// A bulk sync re-posts a running instance only when the BBS row differs
// from what the container would report.
func TestBulkSyncSkipsInstancesTheBBSAlreadyHolds(t *testing.T) {
	bbs := &listingBBS{}
	bbs.attempts = 1 // no Unavailable answer: every start is taken
	exec, h := runHarmonizer(t, sim.Options{}, bbs)
	// The sync at start lists no rows: let it pass before the container
	// exists, or it would take the container as unwanted.
	require.Eventually(t, func() bool { return h.Syncs() == 1 }, 10*time.Second, 5*time.Millisecond)
	reserveLRP(t, exec, "pg", "ig-1")
	require.Eventually(t, func() bool { _, started := bbs.snapshot(); return started == 1 }, 10*time.Second, 10*time.Millisecond)
	bbs.mu.Lock()
	posted := bbs.started[0]
	bbs.mu.Unlock()

	// The row the start made.
	held := &modelsv1.ActualLRP{
		Key: posted.GetActualLrpKey(), InstanceKey: posted.GetInstanceKey(), NetInfo: posted.GetNetInfo(),
		State: models.Running, Routable: proto.Bool(posted.GetRoutable()), AvailabilityZone: posted.GetAvailabilityZone(),
	}
	differs := func(change func(*modelsv1.ActualLRP)) *modelsv1.ActualLRP {
		row := proto.Clone(held).(*modelsv1.ActualLRP)
		change(row)
		return row
	}
	cases := []struct {
		name   string
		row    *modelsv1.ActualLRP
		repost bool
	}{
		{"the row holds the report", held, false},
		{"another index", differs(func(r *modelsv1.ActualLRP) { r.Key.Index = 1 }), true},
		{"another domain", differs(func(r *modelsv1.ActualLRP) { r.Key.Domain = "other" }), true},
		{"other net info", differs(func(r *modelsv1.ActualLRP) { r.NetInfo = &modelsv1.ActualLRPNetInfo{Address: "10.0.0.9"} }), true},
		{"not routable", differs(func(r *modelsv1.ActualLRP) { r.Routable = proto.Bool(!r.GetRoutable()) }), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, before := bbs.snapshot()
			bbs.setRows(tc.row)
			require.NoError(t, h.Sync(context.Background()))
			want := before
			if tc.repost {
				want++
				require.Eventually(t, func() bool { _, n := bbs.snapshot(); return n == want }, 10*time.Second, 10*time.Millisecond, "re-posted")
			}
			time.Sleep(50 * time.Millisecond) // a start the sync queued would be posted by now
			_, after := bbs.snapshot()
			require.Equal(t, want, after)
		})
	}
}
