package executor_test

import (
	"fmt"
	"testing"

	"github.com/gavelhq/gavel/internal/benchmem"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
)

// BenchmarkRunLRPToRunning is one simulated cell's executor work per placed
// instance, as `gavel bench` drives it: reserve a container with the rep's
// LRP tags, run the bench's run info in it on the sim backend and wait for
// its ContainerRunning event. The containers stay, as on a cell of the bench
// (a rep process of the bench holds ~25,000). Its allocations per op are the executor's
// share of a simulated cell's garbage per instance; live-B/container is the
// heap each running container holds (what every GC cycle marks again).
func BenchmarkRunLRPToRunning(b *testing.B) {
	run := &modelsv1.DesiredLRPRunInfo{
		Key:   &modelsv1.DesiredLRPKey{ProcessGuid: "bench-lrp-00001", Domain: "bench", LogGuid: "bench-lrp-00001"},
		Ports: []uint32{8080}, LogSource: "APP", StartTimeoutMs: 60000,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app", User: "vcap"}}},
	}
	lrp := &repv1.LRP{
		Key:                 &modelsv1.ActualLRPKey{ProcessGuid: "bench-lrp-00001", Domain: "bench"},
		Resource:            &auctioneerv1.Resource{MemoryMb: 128, DiskMb: 128},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
		DesiredEpoch:        "epoch-1", RunInfoRevision: 7,
	}
	e, err := executor.New(ctx, executor.Options{
		Backend:        sim.New(sim.Options{Capacity: backend.Capacity{MemoryInBytes: 1 << 50, DiskInBytes: 1 << 50, MaxContainers: 1 << 30}}),
		CellID:         "cell-1",
		TotalResources: executor.Resources{MemoryMB: 1 << 30, DiskMB: 1 << 30, Containers: 1 << 30},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	sub := e.Subscribe()
	defer sub.Close()

	benchmem.LiveBytesPerOp(b, "live-B/container", func(i int) {
		guid := fmt.Sprintf("instance-%08d", i)
		lrp.Key.Index = int32(i % 100)
		tags := rep.LRPTags(lrp, guid)
		if failures := e.Allocate([]executor.AllocationRequest{{
			Guid: guid, LRP: true, Resource: executor.Resource{MemoryMB: 128, DiskMB: 128}, Tags: tags,
		}}); len(failures) != 0 {
			b.Fatal(failures)
		}
		if err := e.Run(ctx, guid, executor.RunRequestForLRP(run, i%100, guid)); err != nil {
			b.Fatal(err)
		}
		for running := false; !running; {
			switch ev := (<-sub.Events()).(type) {
			case executor.ContainerRunning:
				running = ev.Container.Guid == guid
			case executor.ContainerCompleted:
				if ev.Container.Guid == guid {
					b.Fatalf("%s completed before running: %+v", guid, ev.Container.RunResult)
				}
			}
		}
	})
}
