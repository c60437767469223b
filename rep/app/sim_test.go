package app_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/app"
)

func simConfig(t testing.TB, prefix, bbsAddr string, cells int) app.Config {
	cfg := app.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.CellID = "sim"
	cfg.Zone = "z1"
	cfg.Backend = app.BackendSim
	cfg.SimCells = cells
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.KeyPrefix = prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.BBSAddresses = []string{bbsAddr}
	cfg.Capacity = app.CapacityConfig{MemoryMB: 8192, DiskMB: 16384, Containers: 100}
	cfg.Sim.StartDelay = config.Duration(50 * time.Millisecond)
	cfg.StartupCheckInterval = config.Duration(20 * time.Millisecond)
	require.NoError(t, cfg.Validate())
	return cfg
}

// 200 simulated cells in one process register their presences and each
// answers State within 1 s (a behavioural deadline: an answer at all is what
// matters, with 1 s being generous); work placed on one of them runs through
// the BBS; the metrics report every cell.
func TestSimCells(t *testing.T) {
	const n = 200
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBS(t, prefix)
	r, _ := startRep(t, simConfig(t, prefix, b.Addr(), n))
	require.Len(t, r.Cells(), n)

	resp, err := bbs.ListCells(ctx, &bbsv1.ListCellsRequest{})
	require.NoError(t, err)
	addrs := map[string]string{}
	for _, c := range resp.GetCells() {
		if strings.HasPrefix(c.GetCellId(), "sim-") {
			addrs[c.GetCellId()] = c.GetRepAddress()
			require.Equal(t, int32(8192), c.GetCapacity().GetMemoryMb())
		}
	}
	require.Len(t, addrs, n, "every simulated cell is registered")

	var mu sync.Mutex
	var failures []string
	work := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				repc := dialRep(t, addrs[id])
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				st, err := repc.State(cctx, &repv1.StateRequest{})
				cancel()
				if err != nil || st.GetCellId() != id {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v", id, err))
					mu.Unlock()
				}
			}
		}()
	}
	for id := range addrs {
		work <- id
	}
	close(work)
	wg.Wait()
	require.Empty(t, failures)

	d := desiredLRP("sim-lrp", runA("/bin/app"), healthChecks())
	_, err = bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
	require.NoError(t, err)
	performLRP(t, dialRep(t, addrs["sim-7"]), "sim-7", d, 0)
	running := waitActual(t, bbs, "sim-lrp", 0, "running", isState(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING))
	require.Equal(t, "sim-7", running.GetInstanceKey().GetCellId())

	_, metrics, err := get("http://" + r.DebugAddr() + "/metrics")
	require.NoError(t, err)
	require.Contains(t, metrics, `gavel_rep_containers{cell_id="sim-7",state="running"} 1`)
	require.Contains(t, metrics, `gavel_rep_resources_total{cell_id="sim-199",resource="memory_mb"} 8192`)
	require.Contains(t, metrics, `gavel_rep_resources_available{cell_id="sim-7",resource="memory_mb"} 8128`)
	require.Contains(t, metrics, "gavel_rep_bulk_sync_duration_seconds_count")
}

// A reservation whose claim the BBS refuses (no such instance) is deleted
// and its resources return; Perform refuses a mismatched cell id, work for
// a root filesystem the cell does not offer, and everything while evacuating.
func TestPerformRefusals(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBS(t, prefix)
	r, _ := startRep(t, simConfig(t, prefix, b.Addr(), 1))
	cell := r.Cells()[0]
	repc := dialRep(t, cell.Addr())

	d := desiredLRP("never-desired", runA("/bin/app"), nil)
	performLRP(t, repc, "sim-0", d, 0)
	require.Eventually(t, func() bool { return len(cell.Executor().List()) == 0 }, 10*time.Second, 10*time.Millisecond,
		"the refused claim deletes the reservation")
	require.Equal(t, 8192, cell.Executor().RemainingResources().MemoryMB)

	_, err := repc.Perform(ctx, &repv1.PerformRequest{CellId: "someone-else"})
	require.ErrorContains(t, err, "workload cell ID does not match this cell")

	docker := &repv1.LRP{Key: &modelsv1.ActualLRPKey{ProcessGuid: "p", Domain: "d"}}
	docker.PlacementConstraint = nil
	odd := &repv1.Task{TaskGuid: "t1", Domain: "d"}
	resp, err := repc.Perform(ctx, &repv1.PerformRequest{CellId: "sim-0", Tasks: []*repv1.Task{odd}})
	require.NoError(t, err)
	require.Empty(t, resp.GetFailedTasks(), "no root filesystem asked: fits")
	resp, err = repc.Perform(ctx, &repv1.PerformRequest{CellId: "sim-0", Lrps: []*repv1.LRP{{
		Key: &modelsv1.ActualLRPKey{ProcessGuid: "p", Domain: "d"}, PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:windows2016"}}}})
	require.NoError(t, err)
	require.Len(t, resp.GetFailedLrps(), 1, "an unknown stack is refused")

	// A running instance keeps the cell from draining at once: with the
	// recording auctioneer no replacement is ever placed, so the cell stays
	// up (evacuating) until its evacuation timeout, long after this test.
	held := desiredLRP("held", runA("/bin/app"), nil)
	_, err = bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: held})
	require.NoError(t, err)
	performLRP(t, repc, "sim-0", held, 0)
	waitActual(t, bbs, "held", 0, "running", isState(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING))

	cell.Evacuation().Evacuate()
	resp, err = repc.Perform(ctx, &repv1.PerformRequest{CellId: "sim-0", Lrps: []*repv1.LRP{docker}, Tasks: []*repv1.Task{{TaskGuid: "t2"}}})
	require.NoError(t, err)
	require.Len(t, resp.GetFailedLrps(), 1)
	require.Len(t, resp.GetFailedTasks(), 1)
	st, err := repc.State(ctx, &repv1.StateRequest{})
	require.NoError(t, err)
	require.True(t, st.GetEvacuating())
	require.Len(t, cell.Executor().List(), 1, "the held instance stays on the evacuating cell until it is replaced")
}
