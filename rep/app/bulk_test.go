package app_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/app"
	"github.com/gavelhq/gavel/rep/harmonizer"
)

// startSyncingCell starts a BBS and a rep of one simulated cell whose bulk
// sync runs every interval, and returns the BBS's client, the rep and a
// client of the cell.
func startSyncingCell(t *testing.T, interval time.Duration) (*client.Client, *app.Rep, repv1.RepServiceClient) {
	t.Helper()
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBS(t, prefix)
	cfg := simConfig(t, prefix, b.Addr(), 1)
	cfg.BulkSyncInterval = config.Duration(interval)
	r, _ := startRep(t, cfg)
	return bbs, r, dialRep(t, r.Cells()[0].Addr())
}

// The bulk sync repairs both directions: a container whose instance the BBS
// no longer has is deleted; an instance the BBS thinks runs on the cell
// without a container is removed; a task RUNNING on the cell without a
// container is completed as failed.
func TestBulkSyncRepairs(t *testing.T) {
	bbs, r, repc := startSyncingCell(t, 200*time.Millisecond)
	cell := r.Cells()[0]

	// A running instance whose row disappears from the BBS.
	unwanted := desiredLRP("unwanted", runA("/bin/app"), nil)
	unwanted.Instances = 2
	_, err := bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: unwanted})
	require.NoError(t, err)
	performLRP(t, repc, "sim-0", unwanted, 0)
	running := waitActual(t, bbs, "unwanted", 0, "running", isState(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING))
	_, err = bbs.RemoveActualLRP(ctx, &bbsv1.RemoveActualLRPRequest{ProcessGuid: "unwanted", Index: 0})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := cell.Executor().Get(running.GetInstanceKey().GetInstanceGuid())
		return err != nil
	}, 10*time.Second, 10*time.Millisecond, "the unwanted container is deleted")

	// An instance claimed for this cell that the cell never ran.
	ghost := &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ghost-instance", CellId: "sim-0"}
	_, err = bbs.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "unwanted", Index: 1, InstanceKey: ghost})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		a := actual(t, bbs, "unwanted", 1)
		return a == nil || a.GetInstanceKey().GetInstanceGuid() != "ghost-instance"
	}, 10*time.Second, 10*time.Millisecond, "the instance without a container is removed")

	// A task started on this cell that has no container.
	_, err = bbs.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: "lost-task", Domain: "tasks", Definition: &modelsv1.TaskDefinition{
		RootFs: "preloaded:cflinuxfs4", Action: runA("/bin/true"), MemoryMb: 1, DiskMb: 1,
	}})
	require.NoError(t, err)
	started, err := bbs.StartTask(ctx, &bbsv1.StartTaskRequest{TaskGuid: "lost-task", CellId: "sim-0"})
	require.NoError(t, err)
	require.True(t, started.GetShouldStart())
	require.Eventually(t, func() bool {
		resp, err := bbs.GetTask(ctx, &bbsv1.GetTaskRequest{TaskGuid: "lost-task"})
		require.NoError(t, err)
		tk := resp.GetTask()
		return tk.GetState() == modelsv1.TaskState_TASK_STATE_COMPLETED && tk.GetFailed() && tk.GetFailureReason() == harmonizer.ReasonCellLostTask
	}, 10*time.Second, 10*time.Millisecond, "the lost task is failed")
}

// sample sums the samples of a counter (or a histogram's count) named name
// whose labels include want.
func sample(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// A bulk sync reports a running instance only when the BBS row lacks what
// the cell would report: a RUNNING row that already holds it is left alone
// pass after pass (the BBS would take the report as a heartbeat); a row
// that went back to CLAIMED while the container runs is started again.
func TestBulkSyncReportsOnlyWhatTheBBSLacks(t *testing.T) {
	bbs, r, repc := startSyncingCell(t, 100*time.Millisecond)

	steady := desiredLRP("steady", runA("/bin/app"), nil)
	_, err := bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: steady})
	require.NoError(t, err)
	performLRP(t, repc, "sim-0", steady, 0)
	running := waitActual(t, bbs, "steady", 0, "running", isState(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING))
	// The cell's RepService counted and timed the Perform.
	perform := map[string]string{"method": "/gavel.rep.v1.RepService/Perform"}
	require.Positive(t, sample(t, r.Registry(), "gavel_grpc_server_handling_seconds", perform), "Perform timed")
	require.Positive(t, sample(t, r.Registry(), "gavel_grpc_server_handled_total", perform), "Perform counted")

	starts := func() float64 {
		return sample(t, r.Registry(), "gavel_rep_bbs_batch_items_total", map[string]string{"call": "BatchStartActualLRPs"})
	}
	syncs := func() float64 { return sample(t, r.Registry(), "gavel_rep_bulk_sync_duration_seconds", nil) }
	before, syncsBefore := starts(), syncs()
	require.Eventually(t, func() bool { return syncs() >= syncsBefore+5 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, before, starts(), "five bulk syncs re-reported a RUNNING instance the BBS already holds")

	// The row goes back to CLAIMED (the same instance claims it again):
	// the next bulk sync reports the start.
	_, err = bbs.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "steady", Index: 0, InstanceKey: running.GetInstanceKey()})
	require.NoError(t, err)
	again := waitActual(t, bbs, "steady", 0, "running again", isState(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING))
	require.Equal(t, running.GetInstanceKey().GetInstanceGuid(), again.GetInstanceKey().GetInstanceGuid())
	require.Greater(t, starts(), before)
}
