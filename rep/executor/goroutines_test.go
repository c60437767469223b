package executor_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
)

func runAction() *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app"}}}
}

// TestSimulatedCellsCostGoroutinesPerCellNotPerContainer runs many
// containers on a few simulated cells and counts goroutines: supervising a
// simulated process must not park a goroutine per container (the sim's
// processes report their exit through backend.ExitNotifier), so the count
// grows with cells only. Stopping and deleting them still works, and so do
// exits the sim fires itself (crashes).
func TestSimulatedCellsCostGoroutinesPerCellNotPerContainer(t *testing.T) {
	const cells, perCell = 8, 250
	base := runtime.NumGoroutine()
	execs := make([]*executor.Executor, cells)
	for i := range execs {
		execs[i], _ = newSimExecutor(t, nil, sim.Options{Capacity: backend.Capacity{MaxContainers: perCell}},
			executor.Resources{MemoryMB: 1 << 20, DiskMB: 1 << 20, Containers: perCell})
	}
	perCellBase := runtime.NumGoroutine() - base
	for c, e := range execs {
		reqs := make([]executor.AllocationRequest, perCell)
		for i := range reqs {
			reqs[i] = executor.AllocationRequest{Guid: fmt.Sprintf("c%d-%d", c, i), LRP: true, Resource: executor.Resource{MemoryMB: 1, DiskMB: 1}}
		}
		require.Empty(t, e.Allocate(reqs))
		for _, r := range reqs {
			require.NoError(t, e.Run(ctx, r.Guid, executor.RunRequest{Action: runAction()}))
		}
	}
	for c, e := range execs {
		for i := range perCell {
			guid := fmt.Sprintf("c%d-%d", c, i)
			require.Eventually(t, func() bool { ctr, err := e.Get(guid); return err == nil && ctr.State == executor.StateRunning },
				10*time.Second, 5*time.Millisecond, guid)
		}
	}
	// Goroutines that ended a container's start may still be on their way out.
	var grown int
	require.Eventually(t, func() bool {
		grown = runtime.NumGoroutine() - base
		return grown <= perCellBase+4*cells
	}, 10*time.Second, 20*time.Millisecond, "goroutines grew with containers, not cells")
	t.Logf("%d cells × %d running containers: %d goroutines over the base (%d for the idle executors)", cells, perCell, grown, perCellBase)

	// Stop and delete every container of the first cell: each completes as stopped.
	e := execs[0]
	for i := range perCell {
		require.NoError(t, e.Stop(fmt.Sprintf("c0-%d", i)))
	}
	for i := range perCell {
		guid := fmt.Sprintf("c0-%d", i)
		require.Eventually(t, func() bool { ctr, _ := e.Get(guid); return ctr.State == executor.StateCompleted }, 10*time.Second, 5*time.Millisecond)
		ctr, _ := e.Get(guid)
		require.True(t, ctr.RunResult.Stopped, guid)
		require.NoError(t, e.Delete(ctx, guid))
	}
	require.Empty(t, e.List())
}

// TestSimulatedExitsCompleteContainers: a process the sim ends itself
// (a crash, fired by its timer) completes its container with the exit
// status, and one that exits cleanly completes without failure.
func TestSimulatedExitsCompleteContainers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   sim.Options
		failed bool
		status int
		reason string
	}{
		{name: "crash", opts: sim.Options{CrashRate: 1, CrashWindow: 20 * time.Millisecond}, failed: true, status: 1, reason: "Exited with status 1"},
		{name: "run duration", opts: sim.Options{RunDuration: 20 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newSimExecutor(t, nil, tc.opts, executor.Resources{MemoryMB: 100, DiskMB: 100, Containers: 4})
			require.Empty(t, e.Allocate([]executor.AllocationRequest{{Guid: "a", LRP: true, Resource: executor.Resource{MemoryMB: 1, DiskMB: 1}}}))
			require.NoError(t, e.Run(ctx, "a", executor.RunRequest{Action: runAction()}))
			require.Eventually(t, func() bool { c, _ := e.Get("a"); return c.State == executor.StateCompleted }, 5*time.Second, 5*time.Millisecond)
			c, _ := e.Get("a")
			require.Equal(t, tc.failed, c.RunResult.Failed)
			require.Equal(t, tc.status, c.RunResult.ExitStatus)
			require.Contains(t, c.RunResult.FailureReason, tc.reason)
			require.False(t, c.RunResult.Stopped)
		})
	}
}

// TestCloseStopsSimulatedContainers: Close ends the work of every running
// container, both a lone process (supervised on the run context itself) and
// processes of a codependent action (on a child of it); each completes as
// stopped. A container run after Close completes as stopped without running.
func TestCloseStopsSimulatedContainers(t *testing.T) {
	e, sub := newSimExecutor(t, nil, sim.Options{}, executor.Resources{MemoryMB: 100, DiskMB: 100, Containers: 4})
	codependent := &modelsv1.Action{Action: &modelsv1.Action_Codependent{Codependent: &modelsv1.CodependentAction{
		Actions: []*modelsv1.Action{runAction(), runAction()},
	}}}
	reqs := []executor.AllocationRequest{}
	for _, guid := range []string{"lone", "codependent", "late"} {
		reqs = append(reqs, executor.AllocationRequest{Guid: guid, LRP: true, Resource: executor.Resource{MemoryMB: 1, DiskMB: 1}})
	}
	require.Empty(t, e.Allocate(reqs))
	require.NoError(t, e.Run(ctx, "lone", executor.RunRequest{Action: runAction()}))
	require.NoError(t, e.Run(ctx, "codependent", executor.RunRequest{Action: codependent}))
	for _, guid := range []string{"lone", "codependent"} {
		require.Eventually(t, func() bool { c, _ := e.Get(guid); return c.State == executor.StateRunning },
			5*time.Second, 5*time.Millisecond, guid)
	}

	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: the containers' work did not end")
	}
	completed := map[string]executor.Container{}
	for len(completed) < 3 {
		select {
		case ev := <-sub.Events():
			if c, ok := ev.(executor.ContainerCompleted); ok {
				completed[c.Container.Guid] = c.Container
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("completed after Close: %v", completed)
		}
		if len(completed) == 2 {
			require.NoError(t, e.Run(ctx, "late", executor.RunRequest{Action: runAction()}))
		}
	}
	for guid, c := range completed {
		require.True(t, c.RunResult.Stopped, "%s: %+v", guid, c.RunResult)
		require.False(t, c.RunResult.Failed, guid)
	}
}
