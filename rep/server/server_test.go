package server_test

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/backend/process"
	"github.com/gavelhq/gavel/rep/executor"
	"github.com/gavelhq/gavel/rep/server"
)

func lrp(guid string, mem int32, rootfs string) *repv1.LRP {
	return &repv1.LRP{
		Key:                 &modelsv1.ActualLRPKey{ProcessGuid: guid, Domain: "d"},
		Resource:            &auctioneerv1.Resource{MemoryMb: mem, DiskMb: 10},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: rootfs},
	}
}

func guids(ls []*repv1.LRP) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.GetKey().GetProcessGuid())
	}
	return out
}

func TestPerform(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name       string
		memory     int
		req        *repv1.PerformRequest
		failedLRPs []string
		failedTask []string
		code       codes.Code
	}{
		{
			// 1000 MB: 600 (largest first) fits, 500 does not, 300 fits (900 used).
			name: "largest first, the rest returned", memory: 1000,
			req:        &repv1.PerformRequest{CellId: "cell-1", Lrps: []*repv1.LRP{lrp("small", 300, ""), lrp("big", 600, ""), lrp("mid", 500, "")}},
			failedLRPs: []string{"mid"},
		},
		{
			name: "unknown stack or scheme", memory: 1000,
			req: &repv1.PerformRequest{CellId: "cell-1", Lrps: []*repv1.LRP{
				lrp("ok", 10, "preloaded:cflinuxfs4"), lrp("stack", 10, "preloaded:windows"), lrp("docker", 10, "docker:///nginx"), lrp("scheme", 10, "oci:///x"),
			}},
			failedLRPs: []string{"stack", "scheme"},
		},
		{
			name: "tasks after LRPs; a duplicate task is refused", memory: 100,
			req: &repv1.PerformRequest{CellId: "cell-1", Lrps: []*repv1.LRP{lrp("l", 60, "")}, Tasks: []*repv1.Task{
				{TaskGuid: "t1", Resource: &auctioneerv1.Resource{MemoryMb: 30}},
				{TaskGuid: "t1", Resource: &auctioneerv1.Resource{MemoryMb: 1}},
				{TaskGuid: "t2", Resource: &auctioneerv1.Resource{MemoryMb: 30}},
			}},
			failedTask: []string{"t1", "t2"},
		},
		{
			name: "another cell's work", memory: 1000,
			req:  &repv1.PerformRequest{CellId: "cell-2", Lrps: []*repv1.LRP{lrp("x", 1, "")}},
			code: codes.FailedPrecondition,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, repc := serve(t, executor.Resources{MemoryMB: tc.memory, DiskMB: 1000, Containers: 10})
			resp, err := repc.Perform(ctx, tc.req)
			require.Equal(t, tc.code, status.Code(err))
			if err != nil {
				require.Empty(t, e.List())
				return
			}
			require.Equal(t, tc.failedLRPs, guids(resp.GetFailedLrps()))
			var tasks []string
			for _, task := range resp.GetFailedTasks() {
				tasks = append(tasks, task.GetTaskGuid())
			}
			require.Equal(t, tc.failedTask, tasks)
		})
	}
}

// A task placed again on the cell that already holds its container (the BBS
// re-auctioned it while it could not be started) is accepted, not refused:
// a refusal would count as a rejection and could fail the task.
func TestPerformTaskAlreadyHeld(t *testing.T) {
	ctx := context.Background()
	e, repc := serve(t, executor.Resources{MemoryMB: 100, DiskMB: 100, Containers: 10})
	req := &repv1.PerformRequest{CellId: "cell-1", Tasks: []*repv1.Task{{TaskGuid: "t1", Resource: &auctioneerv1.Resource{MemoryMb: 30}}}}
	for i := 0; i < 2; i++ {
		resp, err := repc.Perform(ctx, req)
		require.NoError(t, err)
		require.Empty(t, resp.GetFailedTasks(), "perform %d", i+1)
	}
	require.Len(t, e.List(), 1, "one container for the task")
	require.Equal(t, 70, e.RemainingResources().MemoryMB, "reserved once")
}

func TestStateAndStops(t *testing.T) {
	ctx := context.Background()
	e, repc := serve(t, executor.Resources{MemoryMB: 1000, DiskMB: 1000, Containers: 10})
	resp, err := repc.Perform(ctx, &repv1.PerformRequest{CellId: "cell-1",
		Lrps:  []*repv1.LRP{lrp("web", 100, "preloaded:cflinuxfs4")},
		Tasks: []*repv1.Task{{TaskGuid: "job", Domain: "d", Resource: &auctioneerv1.Resource{MemoryMb: 50, DiskMb: 5}}}})
	require.NoError(t, err)
	require.Empty(t, resp.GetFailedLrps())

	st, err := repc.State(ctx, &repv1.StateRequest{})
	require.NoError(t, err)
	require.Equal(t, "cell-1", st.GetCellId())
	require.Equal(t, &repv1.Resources{MemoryMb: 850, DiskMb: 985, Containers: 8}, st.GetAvailableResources())
	require.Equal(t, int32(1000), st.GetTotalResources().GetMemoryMb())
	require.Equal(t, int32(2), st.GetStartingContainerCount(), "reserved containers are starting")
	require.Len(t, st.GetLrps(), 1)
	l := st.GetLrps()[0]
	require.Equal(t, "web", l.GetKey().GetProcessGuid())
	require.Len(t, l.GetInstanceGuid(), 28)
	require.Equal(t, "preloaded:cflinuxfs4", l.GetPlacementConstraint().GetRootFs())
	require.Len(t, st.GetTasks(), 1)
	require.Len(t, st.GetRootfsProviders(), 2)

	_, err = repc.StopLRPInstance(ctx, &repv1.StopLRPInstanceRequest{Key: l.GetKey(),
		InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: l.GetInstanceGuid(), CellId: "cell-1"}})
	require.NoError(t, err)
	c, err := e.Get(l.GetInstanceGuid())
	require.NoError(t, err)
	require.Equal(t, executor.StateCompleted, c.State)
	require.True(t, c.RunResult.Stopped)

	_, err = repc.StopLRPInstance(ctx, &repv1.StopLRPInstanceRequest{Key: l.GetKey(),
		InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "job", CellId: "cell-1"}})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "a task is not an LRP instance")
	_, err = repc.CancelTask(ctx, &repv1.CancelTaskRequest{TaskGuid: "job"})
	require.NoError(t, err)
	c, err = e.Get("job")
	require.NoError(t, err)
	require.True(t, c.RunResult.Stopped)
	_, err = repc.CancelTask(ctx, &repv1.CancelTaskRequest{TaskGuid: "unknown"})
	require.NoError(t, err, "cancelling what the cell does not run succeeds")
	_, err = repc.Ping(ctx, &repv1.PingRequest{})
	require.NoError(t, err)
}

// A cell whose backend fails its ping answers State with Unavailable.
func TestStateUnavailableWhileBackendUnhealthy(t *testing.T) {
	root := t.TempDir() + "/containers"
	b, err := process.New(process.Options{Root: root, DisableCgroups: true})
	require.NoError(t, err)
	e, err := executor.New(context.Background(), executor.Options{Backend: b, TotalResources: executor.Resources{MemoryMB: 1, DiskMB: 1, Containers: 1}})
	require.NoError(t, err)
	defer e.Close()
	srv := server.New(server.Options{CellID: "cell-1", Executor: e})
	_, err = srv.State(context.Background(), &repv1.StateRequest{})
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(root))
	_, err = srv.State(context.Background(), &repv1.StateRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err))
}
