package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/harmonizer"
)

// The bulk sync repairs both directions: a container whose instance the BBS
// no longer has is deleted; an instance the BBS thinks runs on the cell
// without a container is removed; a task RUNNING on the cell without a
// container is completed as failed.
func TestBulkSyncRepairs(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBS(t, prefix)
	cfg := simConfig(t, prefix, b.Addr(), 1)
	cfg.BulkSyncInterval = config.Duration(200 * time.Millisecond)
	r, _ := startRep(t, cfg)
	cell := r.Cells()[0]
	repc := dialRep(t, cell.Addr())

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
