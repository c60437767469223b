package app_test

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/executor"
)

func performTask(t *testing.T, repc repv1.RepServiceClient, cellID, guid string) {
	t.Helper()
	resp, err := repc.Perform(ctx, &repv1.PerformRequest{CellId: cellID, Tasks: []*repv1.Task{{
		TaskGuid: guid, Domain: "tasks", Resource: &auctioneerv1.Resource{MemoryMb: 32, DiskMb: 32},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
	}}})
	require.NoError(t, err)
	require.Empty(t, resp.GetFailedTasks())
}

func waitTask(t *testing.T, get func() *modelsv1.Task, what string, cond func(*modelsv1.Task) bool) *modelsv1.Task {
	t.Helper()
	var task *modelsv1.Task
	require.Eventually(t, func() bool {
		task = get()
		return task != nil && cond(task)
	}, 30*time.Second, 10*time.Millisecond, "task never %s (last %v)", what, task)
	return task
}

// A task's result file comes back as its result; a running task cancelled
// through the BBS has its process stopped and its container deleted; a task
// whose download fails is rejected (placed again) with the reason.
func TestTasks(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBS(t, prefix)
	cfg := repConfig(t, prefix, b.Addr(), "cell-task")
	r, _ := startRep(t, cfg)
	cell := r.Cells()[0]
	repc := dialRep(t, cell.Addr())
	getTask := func(guid string) func() *modelsv1.Task {
		return func() *modelsv1.Task {
			resp, err := bbs.GetTask(ctx, &bbsv1.GetTaskRequest{TaskGuid: guid})
			require.NoError(t, err)
			return resp.GetTask()
		}
	}
	gone := func(t *testing.T, guid, what string) {
		t.Helper()
		require.Eventually(t, func() bool {
			_, err := cell.Executor().Get(guid)
			return err != nil
		}, 10*time.Second, 10*time.Millisecond, what)
	}
	desire := func(guid string, def *modelsv1.TaskDefinition) {
		def.RootFs, def.MemoryMb, def.DiskMb, def.LogGuid, def.LogSource = "preloaded:cflinuxfs4", 32, 32, guid, "TASK"
		_, err := bbs.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: guid, Domain: "tasks", Definition: def})
		require.NoError(t, err)
	}

	t.Run("result file", func(t *testing.T) {
		desire("task-result", &modelsv1.TaskDefinition{Action: sh(`printf 'forty-two' > out.txt`), ResultFile: "/out.txt"})
		performTask(t, repc, "cell-task", "task-result")
		done := waitTask(t, getTask("task-result"), "completed", func(tk *modelsv1.Task) bool {
			return tk.GetState() == modelsv1.TaskState_TASK_STATE_COMPLETED
		})
		require.False(t, done.GetFailed(), done.GetFailureReason())
		require.Equal(t, "forty-two", done.GetResult())
		require.Equal(t, "cell-task", done.GetCellId())
	})

	t.Run("failure reason", func(t *testing.T) {
		desire("task-fails", &modelsv1.TaskDefinition{Action: runA("/no/such/command")})
		performTask(t, repc, "cell-task", "task-fails")
		done := waitTask(t, getTask("task-fails"), "completed", func(tk *modelsv1.Task) bool {
			return tk.GetState() == modelsv1.TaskState_TASK_STATE_COMPLETED
		})
		require.True(t, done.GetFailed())
		require.Contains(t, done.GetFailureReason(), "/no/such/command")
	})

	// The BBS committed the cell's start but died before replying, and the
	// client's retry is answered "already running on your cell": the cell,
	// whose container is still only reserved, runs the task all the same.
	t.Run("start whose reply was lost", func(t *testing.T) {
		desire("task-lost-reply", &modelsv1.TaskDefinition{Action: sh(`printf again > out.txt`), ResultFile: "/out.txt"})
		resp, err := bbs.StartTask(ctx, &bbsv1.StartTaskRequest{TaskGuid: "task-lost-reply", CellId: "cell-task"})
		require.NoError(t, err)
		require.True(t, resp.GetShouldStart())
		performTask(t, repc, "cell-task", "task-lost-reply")
		done := waitTask(t, getTask("task-lost-reply"), "completed", func(tk *modelsv1.Task) bool {
			return tk.GetState() == modelsv1.TaskState_TASK_STATE_COMPLETED
		})
		require.False(t, done.GetFailed(), done.GetFailureReason())
		require.Equal(t, "again", done.GetResult())
	})

	t.Run("start refused for a task running elsewhere", func(t *testing.T) {
		desire("task-elsewhere", &modelsv1.TaskDefinition{Action: sh(`touch ran`)})
		_, err := bbs.StartTask(ctx, &bbsv1.StartTaskRequest{TaskGuid: "task-elsewhere", CellId: "other-cell"})
		require.NoError(t, err)
		performTask(t, repc, "cell-task", "task-elsewhere")
		gone(t, "task-elsewhere", "the reservation is dropped")
		running := getTask("task-elsewhere")()
		require.Equal(t, modelsv1.TaskState_TASK_STATE_RUNNING, running.GetState())
		require.Equal(t, "other-cell", running.GetCellId())
		_, err = os.Stat(cfg.Process.RootDir + "/task-elsewhere/rootfs/ran")
		require.True(t, os.IsNotExist(err), "the task did not run here: %v", err)
		_, err = bbs.CancelTask(ctx, &bbsv1.CancelTaskRequest{TaskGuid: "task-elsewhere"})
		require.NoError(t, err)
	})

	t.Run("cancel stops the process", func(t *testing.T) {
		desire("task-cancel", &modelsv1.TaskDefinition{Action: sh(`echo $$ > sh.pid; sleep 1000 & echo $! > sleep.pid; wait`)})
		performTask(t, repc, "cell-task", "task-cancel")
		waitTask(t, getTask("task-cancel"), "running", func(tk *modelsv1.Task) bool {
			return tk.GetState() == modelsv1.TaskState_TASK_STATE_RUNNING
		})
		rootfs := cfg.Process.RootDir + "/task-cancel/rootfs/"
		shPid, sleepPid := readPid(t, rootfs+"sh.pid"), readPid(t, rootfs+"sleep.pid")
		require.False(t, pidGone(shPid))

		_, err := bbs.CancelTask(ctx, &bbsv1.CancelTaskRequest{TaskGuid: "task-cancel"})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return pidGone(shPid) && pidGone(sleepPid) }, cfg.GraceTime.D()+5*time.Second, 10*time.Millisecond,
			"the BBS cancel reaches the rep, which stops the task's processes")
		gone(t, "task-cancel", "the container is deleted")
		done := getTask("task-cancel")()
		require.Equal(t, modelsv1.TaskState_TASK_STATE_COMPLETED, done.GetState())
		require.True(t, done.GetFailed())
	})

	t.Run("failed download is rejected", func(t *testing.T) {
		desire("task-download", &modelsv1.TaskDefinition{
			Action: sh("true"),
			CachedDependencies: []*modelsv1.CachedDependency{{
				Name: "buildpack", From: "http://127.0.0.1:1/missing.tgz", To: "/tmp/bp", CacheKey: "bp",
			}},
		})
		performTask(t, repc, "cell-task", "task-download")
		rejected := waitTask(t, getTask("task-download"), "rejected", func(tk *modelsv1.Task) bool {
			return tk.GetRejectionCount() == 1
		})
		require.Equal(t, modelsv1.TaskState_TASK_STATE_PENDING, rejected.GetState(), "a rejected task waits for another placement")
		require.Contains(t, rejected.GetRejectionReason(), "failed to download cached artifacts")
		gone(t, "task-download", "the container is deleted")
	})

	require.Eventually(t, func() bool { return len(cell.Executor().List()) == 0 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, executor.Resources{MemoryMB: 4096, DiskMB: 8192, Containers: 20}, cell.Executor().RemainingResources())
}
