package harmonizer

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/internal/benchmem"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
)

// placementBBS accepts every claim and start at once and serves the bench's
// desired LRP (one run action, one port, no check); started gets a token
// per accepted start.
type placementBBS struct {
	BBS
	started chan struct{}
}

func (b *placementBBS) BatchClaimActualLRPs(_ context.Context, in *bbsv1.BatchClaimActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.BatchClaimActualLRPsResponse, error) {
	out := &bbsv1.BatchClaimActualLRPsResponse{}
	for range in.GetClaims() {
		out.Results = append(out.Results, &bbsv1.BatchItemResult{})
		out.Claims = append(out.Claims, &bbsv1.ClaimActualLRPResponse{DesiredEpoch: testEpoch, RunInfoRevision: testRevision})
	}
	return out, nil
}

func (b *placementBBS) BatchStartActualLRPs(_ context.Context, in *bbsv1.BatchStartActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.BatchStartActualLRPsResponse, error) {
	out := &bbsv1.BatchStartActualLRPsResponse{}
	for range in.GetStarts() {
		out.Results = append(out.Results, &bbsv1.BatchItemResult{})
		b.started <- struct{}{}
	}
	return out, nil
}

func (b *placementBBS) GetDesiredLRP(_ context.Context, in *bbsv1.GetDesiredLRPRequest, _ ...grpc.CallOption) (*bbsv1.GetDesiredLRPResponse, error) {
	return &bbsv1.GetDesiredLRPResponse{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: in.GetProcessGuid(), Domain: "bench", RootFs: "preloaded:cflinuxfs4", Instances: 100,
		ModificationTag: &modelsv1.ModificationTag{Epoch: testEpoch}, Ports: []uint32{8080},
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app", User: "vcap"}}},
	}, RunInfoRevision: testRevision}, nil
}

func (b *placementBBS) ListActualLRPs(context.Context, *bbsv1.ListActualLRPsRequest, ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error) {
	return &bbsv1.ListActualLRPsResponse{}, nil
}

func (b *placementBBS) ListTasks(context.Context, *bbsv1.ListTasksRequest, ...grpc.CallOption) (*bbsv1.ListTasksResponse, error) {
	return &bbsv1.ListTasksResponse{}, nil
}

// BenchmarkPlacedInstance is a simulated cell's work per placed instance
// below its gRPC server, as `gavel bench` drives it: the executor reserves
// a container with the rep's LRP tags, and the harmonizer claims it, fetches
// its run info (cached after the first), runs it on the sim backend and
// reports it started. The BBS answers at once, in process. Each instance
// waits for the one before it, so every batched call carries one item.
// Allocations per op are the harmonizer's and executor's garbage per
// instance (plus the fake BBS's responses); live-B/container is the heap a
// running container keeps.
func BenchmarkPlacedInstance(b *testing.B) {
	bbs := &placementBBS{started: make(chan struct{}, 16)}
	exec, err := executor.New(context.Background(), executor.Options{
		Backend: sim.New(sim.Options{Capacity: backend.Capacity{MemoryInBytes: 1 << 50, DiskInBytes: 1 << 50, MaxContainers: 1 << 30}}),
		CellID:  "cell-1", Logger: lager.NewLogger("executor"),
		TotalResources: executor.Resources{MemoryMB: 1 << 30, DiskMB: 1 << 30, Containers: 1 << 30},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer exec.Close()
	h := New(Options{CellID: "cell-1", Executor: exec, BBS: bbs, BulkSyncInterval: time.Hour, Logger: lager.NewLogger("harmonizer")})
	proc := ifrit.Background(h)
	<-proc.Ready()
	defer func() { proc.Signal(os.Interrupt); <-proc.Wait() }()
	for h.Syncs() < 1 { // the start's bulk sync, before any container
		time.Sleep(time.Millisecond)
	}
	lrp := &repv1.LRP{
		Key:                 &modelsv1.ActualLRPKey{ProcessGuid: "bench-lrp-00001", Domain: "bench"},
		Resource:            &auctioneerv1.Resource{MemoryMb: 128, DiskMb: 128},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
		DesiredEpoch:        testEpoch, RunInfoRevision: testRevision,
	}

	benchmem.LiveBytesPerOp(b, "live-B/container", func(i int) {
		guid := fmt.Sprintf("instance-%08d", i)
		lrp.Key.Index = int32(i % 100)
		if failures := exec.Allocate([]executor.AllocationRequest{{
			Guid: guid, LRP: true, Resource: executor.Resource{MemoryMB: 128, DiskMB: 128}, Tags: rep.LRPTags(lrp, guid),
		}}); len(failures) != 0 {
			b.Fatal(failures)
		}
		select {
		case <-bbs.started:
		case <-time.After(10 * time.Second):
			b.Fatalf("%s was not reported started", guid)
		}
	})
}
