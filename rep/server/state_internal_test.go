package server

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
)

// State's entries are built once per container, dropped with it, and built
// again for a new container under an old guid.
func TestStateEntriesFollowTheContainers(t *testing.T) {
	ctx := context.Background()
	e, err := executor.New(ctx, executor.Options{Backend: sim.New(sim.Options{}), TotalResources: executor.Resources{MemoryMB: 1000, DiskMB: 1000, Containers: 10}})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	s := New(Options{CellID: "cell-1", Executor: e})
	perform := func(l []*repv1.LRP, tasks ...*repv1.Task) {
		t.Helper()
		resp, err := s.Perform(ctx, &repv1.PerformRequest{CellId: "cell-1", Lrps: l, Tasks: tasks})
		require.NoError(t, err)
		require.Empty(t, resp.GetFailedLrps())
		require.Empty(t, resp.GetFailedTasks())
	}
	task := func(mem int32) *repv1.Task {
		return &repv1.Task{TaskGuid: "job", Domain: "d", Resource: &auctioneerv1.Resource{MemoryMb: mem, DiskMb: 1}}
	}
	taskMemory := func(st *repv1.StateResponse) []int32 {
		var out []int32
		for _, tk := range st.GetTasks() {
			out = append(out, tk.GetResource().GetMemoryMb())
		}
		return out
	}
	state := func() *repv1.StateResponse {
		t.Helper()
		st, err := s.State(ctx, &repv1.StateRequest{})
		require.NoError(t, err)
		return st
	}

	perform([]*repv1.LRP{{Key: &modelsv1.ActualLRPKey{ProcessGuid: "web", Index: 3, Domain: "d"}, Resource: &auctioneerv1.Resource{MemoryMb: 100, DiskMb: 1}}}, task(50))
	first := state()
	require.Equal(t, []int32{50}, taskMemory(first))
	require.Len(t, first.GetLrps(), 1)
	require.Equal(t, int32(3), first.GetLrps()[0].GetKey().GetIndex())
	again := state()
	require.Same(t, first.GetLrps()[0], again.GetLrps()[0], "an entry is built once")
	require.Len(t, s.state.entries, 2)

	// Summaries stand in for the LRP entries when asked for; tasks stay.
	brief, err := s.State(ctx, &repv1.StateRequest{LrpSummaries: true})
	require.NoError(t, err)
	require.Empty(t, brief.GetLrps())
	require.Len(t, brief.GetTasks(), 1)
	require.Len(t, brief.GetLrpSummaries(), 1)
	want := &repv1.LRPSummary{ProcessGuid: "web", Index: 3, MemoryMb: 100, DiskMb: 1}
	require.True(t, proto.Equal(want, brief.GetLrpSummaries()[0]), "summary %v, want %v", brief.GetLrpSummaries()[0], want)
	require.Len(t, s.state.entries, 2)

	require.NoError(t, e.Delete(ctx, "job"))
	require.Empty(t, state().GetTasks())
	require.Len(t, s.state.entries, 1, "a deleted container's entry is dropped")

	perform(nil, task(70))
	require.Equal(t, []int32{70}, taskMemory(state()))
	// Deleted and made again between two States: the entry is built again.
	require.NoError(t, e.Delete(ctx, "job"))
	perform(nil, task(90))
	require.Equal(t, []int32{90}, taskMemory(state()))
	require.Len(t, s.state.entries, 2)
}
