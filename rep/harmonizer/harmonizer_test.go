package harmonizer

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/gavelhq/gavel/bbs/models"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
)

// flakyStartBBS is a BBS that accepts claims, serves one desired LRP, and
// answers the first start report Unavailable, as an overloaded BBS does.
// Calls the test does not expect panic through the nil embedded interface.
type flakyStartBBS struct {
	BBS
	mu       sync.Mutex
	attempts int
	started  []*bbsv1.StartActualLRPRequest
}

func (f *flakyStartBBS) BatchClaimActualLRPs(_ context.Context, in *bbsv1.BatchClaimActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.BatchClaimActualLRPsResponse, error) {
	out := &bbsv1.BatchClaimActualLRPsResponse{}
	for range in.GetClaims() {
		out.Results = append(out.Results, &bbsv1.BatchItemResult{})
	}
	return out, nil
}

func (f *flakyStartBBS) GetDesiredLRP(_ context.Context, in *bbsv1.GetDesiredLRPRequest, _ ...grpc.CallOption) (*bbsv1.GetDesiredLRPResponse, error) {
	return &bbsv1.GetDesiredLRPResponse{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: in.GetProcessGuid(), Domain: "d", RootFs: "preloaded:cflinuxfs4", Instances: 1,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "app"}}},
	}}, nil
}

func (f *flakyStartBBS) BatchStartActualLRPs(_ context.Context, in *bbsv1.BatchStartActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.BatchStartActualLRPsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	out := &bbsv1.BatchStartActualLRPsResponse{}
	for _, s := range in.GetStarts() {
		if f.attempts == 1 {
			out.Results = append(out.Results, &bbsv1.BatchItemResult{Code: int32(codes.Unavailable), Message: "overloaded"})
			continue
		}
		f.started = append(f.started, s)
		out.Results = append(out.Results, &bbsv1.BatchItemResult{})
	}
	return out, nil
}

func (f *flakyStartBBS) ListActualLRPs(context.Context, *bbsv1.ListActualLRPsRequest, ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error) {
	return nil, models.ErrUnavailable // the bulk sync skips a pass it cannot list
}

func (f *flakyStartBBS) ListTasks(context.Context, *bbsv1.ListTasksRequest, ...grpc.CallOption) (*bbsv1.ListTasksResponse, error) {
	return nil, models.ErrUnavailable
}

func (f *flakyStartBBS) snapshot() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts, len(f.started)
}

func TestStartReportRetriedAfterATransientFailure(t *testing.T) {
	ctx := context.Background()
	exec, err := executor.New(ctx, executor.Options{
		Backend: sim.New(sim.Options{}), CellID: "cell-1", Logger: lager.NewLogger("executor"),
		TotalResources: executor.Resources{MemoryMB: 1024, DiskMB: 1024, Containers: 10},
	})
	require.NoError(t, err)
	defer exec.Close()
	bbs := &flakyStartBBS{}
	h := New(Options{CellID: "cell-1", Executor: exec, BBS: bbs, BulkSyncInterval: time.Hour, Logger: lager.NewLogger("harmonizer")})
	proc := ifrit.Background(h)
	defer func() { proc.Signal(os.Interrupt); <-proc.Wait() }()
	<-proc.Ready()

	lrp := &repv1.LRP{
		Key:                 &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"},
		Resource:            &auctioneerv1.Resource{MemoryMb: 64, DiskMb: 64},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
	}
	require.Empty(t, exec.Allocate([]executor.AllocationRequest{{Guid: "ig-1", LRP: true, Resource: executor.Resource{MemoryMB: 64, DiskMB: 64}, Tags: rep.LRPTags(lrp, "ig-1")}}))

	require.Eventually(t, func() bool { _, started := bbs.snapshot(); return started == 1 }, 10*time.Second, 20*time.Millisecond,
		"the start refused Unavailable is reported again without waiting for a bulk sync")
	attempts, _ := bbs.snapshot()
	require.GreaterOrEqual(t, attempts, 2)
}
