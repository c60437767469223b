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

	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
)

// gatedStartBBS holds its first start call until release is closed and
// records the cell of each start of each call; it refuses the starts of
// refusedCell, and removes what the cells ask it to.
type gatedStartBBS struct {
	flakyStartBBS
	release     chan struct{}
	refusedCell string
	mu          sync.Mutex
	calls       [][]string
}

func (g *gatedStartBBS) BatchStartActualLRPs(_ context.Context, in *bbsv1.BatchStartActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.BatchStartActualLRPsResponse, error) {
	g.mu.Lock()
	var cells []string
	out := &bbsv1.BatchStartActualLRPsResponse{}
	for _, s := range in.GetStarts() {
		cells = append(cells, s.GetInstanceKey().GetCellId())
		r := &bbsv1.BatchItemResult{}
		if s.GetInstanceKey().GetCellId() == g.refusedCell {
			r = &bbsv1.BatchItemResult{Code: int32(codes.FailedPrecondition), Message: "refused"}
		}
		out.Results = append(out.Results, r)
	}
	g.calls = append(g.calls, cells)
	first := len(g.calls) == 1
	g.mu.Unlock()
	if first {
		<-g.release
	}
	return out, nil
}

func (g *gatedStartBBS) RemoveActualLRP(context.Context, *bbsv1.RemoveActualLRPRequest, ...grpc.CallOption) (*bbsv1.RemoveActualLRPResponse, error) {
	return &bbsv1.RemoveActualLRPResponse{}, nil
}

func (g *gatedStartBBS) snapshot() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]string(nil), g.calls...)
}

// runCellHarmonizer runs a harmonizer of cellID with opts over a
// sim-backend executor until the test ends.
func runCellHarmonizer(t *testing.T, cellID string, opts Options) *executor.Executor {
	t.Helper()
	exec := newCellExecutor(t, cellID, sim.Options{})
	opts.CellID, opts.Executor, opts.BulkSyncInterval, opts.Logger = cellID, exec, time.Hour, lager.NewLogger("harmonizer")
	proc := ifrit.Background(New(opts))
	t.Cleanup(func() { proc.Signal(os.Interrupt); <-proc.Wait() })
	<-proc.Ready()
	return exec
}

// Cells that share Batches report the starts of both in one call, and each
// start gets its own result: a refusal for one cell's instance stops only
// that instance.
func TestSharedBatchesCarryTheStartsOfSeveralCells(t *testing.T) {
	bbs := &gatedStartBBS{release: make(chan struct{}), refusedCell: "cell-2"}
	batches := NewBatches(BatchesOptions{BBS: bbs, MaxInFlight: 1})
	cell1 := runCellHarmonizer(t, "cell-1", Options{BBS: bbs, Batches: batches})
	cell2 := runCellHarmonizer(t, "cell-2", Options{BBS: bbs, Batches: batches})

	reserveLRP(t, cell1, "pg-a", "ig-1")
	require.Eventually(t, func() bool { return len(bbs.snapshot()) == 1 }, 10*time.Second, 10*time.Millisecond)
	reserveLRP(t, cell1, "pg-b", "ig-2")
	reserveLRP(t, cell2, "pg-c", "ig-3")
	// Both wait behind the first call; they are running, their starts pending.
	for _, c := range []struct {
		exec *executor.Executor
		guid string
	}{{cell1, "ig-2"}, {cell2, "ig-3"}} {
		require.Eventually(t, func() bool {
			ctr, err := c.exec.Get(c.guid)
			return err == nil && ctr.State == executor.StateRunning
		}, 10*time.Second, 10*time.Millisecond)
	}
	close(bbs.release)

	require.Eventually(t, func() bool { return len(bbs.snapshot()) >= 2 }, 10*time.Second, 10*time.Millisecond)
	calls := bbs.snapshot()
	require.Equal(t, []string{"cell-1"}, calls[0])
	require.ElementsMatch(t, []string{"cell-1", "cell-2"}, calls[1], "the starts of both cells in one call")

	require.Eventually(t, func() bool { _, err := cell2.Get("ig-3"); return err != nil }, 10*time.Second, 10*time.Millisecond,
		"cell-2's refused instance is stopped and removed")
	ctr, err := cell1.Get("ig-2")
	require.NoError(t, err, "cell-1's accepted instance stays")
	require.Equal(t, executor.StateRunning, ctr.State)
}

// A stopping harmonizer does not wait for a shared call that carries one
// of its starts: the start ends with the harmonizer's context, and the call
// goes on for the other cells.
func TestAHarmonizerStopsWithoutWaitingForASharedCall(t *testing.T) {
	bbs := &gatedStartBBS{release: make(chan struct{})}
	t.Cleanup(func() { close(bbs.release) }) // runs last: the call stays under way until the test ends
	batches := NewBatches(BatchesOptions{BBS: bbs, MaxInFlight: 1})
	exec := newCellExecutor(t, "cell-1", sim.Options{})
	proc := ifrit.Background(New(Options{CellID: "cell-1", Executor: exec, BBS: bbs, BulkSyncInterval: time.Hour,
		Logger: lager.NewLogger("harmonizer"), Batches: batches}))
	<-proc.Ready()
	reserveLRP(t, exec, "pg-1", "ig-1")
	require.Eventually(t, func() bool { return len(bbs.snapshot()) == 1 }, 10*time.Second, time.Millisecond, "the shared start call is under way")

	proc.Signal(os.Interrupt)
	select {
	case err := <-proc.Wait():
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the harmonizer waited for the shared call it had a start in")
	}
}
