package auctionrunner_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/auctionrunner"
	"github.com/gavelhq/gavel/auctioneer/internal/reptest"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
	"github.com/gavelhq/gavel/rep/server"
)

// realCell is a cell's real RepService (rep/server over an executor on the
// simulated backend) on a loopback port, with its calls counted.
type realCell struct {
	id       string
	addr     string
	exec     *executor.Executor
	states   atomic.Int32
	performs atomic.Int32
	refused  atomic.Int32 // items Perform handed back
	taken    atomic.Int32 // items Perform accepted
}

func startRealCell(t *testing.T, id string, total executor.Resources) *realCell {
	t.Helper()
	c := &realCell{id: id}
	e, err := executor.New(context.Background(), executor.Options{Backend: sim.New(sim.Options{}), TotalResources: total, CellID: id})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	c.exec = e
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		switch info.FullMethod {
		case repv1.RepService_State_FullMethodName:
			c.states.Add(1)
		case repv1.RepService_Perform_FullMethodName:
			c.performs.Add(1)
			if pr, ok := resp.(*repv1.PerformResponse); ok && err == nil {
				in := req.(*repv1.PerformRequest)
				failed := len(pr.GetFailedLrps()) + len(pr.GetFailedTasks())
				c.refused.Add(int32(failed))
				c.taken.Add(int32(len(in.GetLrps()) + len(in.GetTasks()) - failed))
			}
		}
		return resp, err
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(count))
	repv1.RegisterRepServiceServer(srv, server.New(server.Options{
		CellID: id, Zone: "z1", Executor: e,
		RootFSProviders: []*modelsv1.RootFSProvider{{Name: "preloaded", Properties: []string{"cflinuxfs4"}}},
	}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c.addr = lis.Addr().String()
	return c
}

func (c *realCell) presence() *modelsv1.CellPresence {
	return &modelsv1.CellPresence{CellId: c.id, RepAddress: c.addr, Zone: "z1"}
}

// realFixture is a runner over real cells.
func realFixture(t *testing.T, maxAge time.Duration, clk *fakeclock.FakeClock, cells ...*realCell) *fixture {
	t.Helper()
	f := &fixture{batch: auctionrunner.NewBatch(), dir: &directory{}, bbs: &bbs{}, metrics: auctionrunner.NewMetrics(nil)}
	for _, c := range cells {
		f.dir.cells = append(f.dir.cells, c.presence())
	}
	pool := auctionrunner.NewRepPool(nil)
	t.Cleanup(pool.Close)
	r, err := auctionrunner.New(auctionrunner.Options{
		Batch: f.batch, Cells: f.dir, Reps: pool, BBS: f.bbs, Engine: auctioneer.DefaultOptions(),
		CellStateTimeout: 5 * time.Second, Metrics: f.metrics, StateMaxAge: maxAge, Clock: clk,
	})
	require.NoError(t, err)
	f.runner = r
	return f
}

// TestKeptStatesSaveStateCalls places work in several auctions on real
// cells: with a max age, each cell answers State once and the auctioneer's
// own accounting keeps every Perform within what the cell can take; with
// max age 0 every auction asks every cell.
func TestKeptStatesSaveStateCalls(t *testing.T) {
	const auctions, perAuction = 6, 5
	cases := []struct {
		name      string
		maxAge    time.Duration
		wantCalls int32
	}{
		{"kept states", time.Minute, 1},
		{"max age 0 asks every time", 0, auctions},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := fakeclock.NewFakeClock(time.Unix(1_700_000_000, 0))
			// Three cells of 10 containers; 30 items in all fill them exactly.
			var cells []*realCell
			for i := range 3 {
				cells = append(cells, startRealCell(t, fmt.Sprintf("cell-%d", i), executor.Resources{MemoryMB: 1000, DiskMB: 1000, Containers: 10}))
			}
			f := realFixture(t, tc.maxAge, clk, cells...)
			placed := 0
			for n := range auctions {
				for i := range perAuction {
					f.batch.AddLRPs(lrpStart(fmt.Sprintf("app-%d", i), n, 100))
				}
				rep := f.auction(t)
				require.Empty(t, rep.Failures)
				placed += len(rep.Placements)
				clk.Increment(time.Second)
			}
			require.Equal(t, auctions*perAuction, placed)
			var taken int32
			for _, c := range cells {
				require.Equal(t, tc.wantCalls, c.states.Load(), "State calls of %s", c.id)
				require.Zero(t, c.refused.Load(), "%s handed work back: the auctioneer over-committed it", c.id)
				taken += c.taken.Load()
				require.LessOrEqual(t, c.exec.RemainingResources().Containers, 10)
				require.GreaterOrEqual(t, c.exec.RemainingResources().Containers, 0)
			}
			require.Equal(t, int32(auctions*perAuction), taken)
			if tc.maxAge > 0 {
				require.Equal(t, float64(3), value(t, f.metrics.CellStatesFetched))
				require.Equal(t, float64(3*(auctions-1)), value(t, f.metrics.CellStatesReused))
			}

			// The cells are full now, as the kept states say: one more item
			// fails after every cell is asked again (the kept view is never
			// the reason for a failure), and no cell is sent anything.
			f.batch.AddLRPs(lrpStart("one-too-many", 0, 100))
			rep := f.auction(t)
			require.Empty(t, rep.Placements)
			require.Len(t, rep.Failures, 1)
			require.Contains(t, rep.Failures[0].Error, "insufficient resources")
			for _, c := range cells {
				require.Zero(t, c.refused.Load())
			}
		})
	}
}

// TestACellChangedOutsideIsAskedAgainAfterMaxAge: a cell that starts
// evacuating is still used from the cache until its state is older than
// the max age, then asked again and left out.
func TestACellChangedOutsideIsAskedAgainAfterMaxAge(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1_700_000_000, 0))
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 1000, 1000, 100))
	b := reptest.Start(t, reptest.Cell("cell-b", "z1", 1000, 1000, 100))
	f := newFixture(t, func(o *auctionrunner.Options) { o.StateMaxAge = 10 * time.Second; o.Clock = clk }, a, b)

	f.batch.AddLRPs(lrpStart("pg", 0, 10))
	rep := f.auction(t)
	require.Equal(t, 2, rep.StatesFetched)
	require.Equal(t, 1, a.StateCalls())

	// The cell's own change: something the auctioneer did not place took
	// disk. Within the max age the kept state is used.
	a.Update(func(s *repv1.StateResponse) { s.AvailableResources.DiskMb = 500 })
	clk.Increment(9 * time.Second)
	f.batch.AddLRPs(lrpStart("pg", 1, 10))
	rep = f.auction(t)
	require.Equal(t, 0, rep.StatesFetched)
	require.Equal(t, 2, rep.StatesReused)
	require.Equal(t, 1, a.StateCalls())

	// Past the max age both cells are asked again and the change is seen.
	a.Update(func(s *repv1.StateResponse) { s.Evacuating = true })
	clk.Increment(2 * time.Second)
	f.batch.AddLRPs(lrpStart("pg", 2, 10), lrpStart("other", 0, 10))
	rep = f.auction(t)
	require.Equal(t, 2, rep.StatesFetched)
	require.Equal(t, 2, a.StateCalls())
	require.Equal(t, 1, rep.EvacuatingCells)
	require.Len(t, rep.Placements, 2)
	for _, p := range rep.Placements {
		require.Equal(t, "cell-b", p.CellID)
	}

	// A changed presence (here a new zone) is asked at once.
	clk.Increment(time.Second)
	f.dir.mu.Lock()
	moved := proto.Clone(f.dir.cells[1]).(*modelsv1.CellPresence)
	moved.Zone = "z2"
	f.dir.cells[1] = moved
	f.dir.mu.Unlock()
	f.batch.AddLRPs(lrpStart("pg", 3, 10))
	rep = f.auction(t)
	require.Equal(t, 1, rep.StatesFetched)
	require.Equal(t, 3, b.StateCalls(), "auctions 1 and 3, and now")
}

// TestFreedCapacityIsFoundWhenKeptStatesLeaveWorkUnplaced: the kept state
// says the cell is full, but its containers ended; the auction that cannot
// place on the kept view asks every cell again and places the work.
func TestFreedCapacityIsFoundWhenKeptStatesLeaveWorkUnplaced(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1_700_000_000, 0))
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 100, 100, 100))
	f := newFixture(t, func(o *auctionrunner.Options) { o.StateMaxAge = time.Minute; o.Clock = clk }, a)

	f.batch.AddLRPs(lrpStart("pg", 0, 60))
	require.Len(t, f.auction(t).Placements, 1)

	// The instance ended on the cell; the kept state still counts it.
	a.Update(func(s *repv1.StateResponse) { s.AvailableResources.MemoryMb = 100; s.Lrps = nil })
	f.batch.AddLRPs(lrpStart("pg", 1, 60))
	rep := f.auction(t)
	require.Equal(t, 1, rep.StatesReused)
	require.Equal(t, 1, rep.StatesFetched, "the full refresh after the failure")
	require.Len(t, rep.Placements, 1)
	require.Empty(t, rep.Failures)
	require.Empty(t, f.bbs.all())
	require.Equal(t, 2, a.StateCalls())
}

// TestHandedBackWorkIsPlacedAgainAfterTheCellIsAsked: a cell answered from
// the cache filled up outside the auctioneer; it hands the work back, is
// asked again, and the work goes to the other cell instead of failing.
func TestHandedBackWorkIsPlacedAgainAfterTheCellIsAsked(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1_700_000_000, 0))
	// a is emptier, so it wins while its kept state says so.
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 1000, 1000, 100))
	b := reptest.Start(t, reptest.Cell("cell-b", "z1", 100, 100, 100))
	f := newFixture(t, func(o *auctionrunner.Options) { o.StateMaxAge = time.Minute; o.Clock = clk }, a, b)
	f.batch.AddLRPs(lrpStart("warm", 0, 10), lrpStart("warm", 1, 10)) // one starting container on each
	require.Len(t, f.auction(t).Placements, 2)

	a.Update(func(s *repv1.StateResponse) { s.AvailableResources.MemoryMb = 0 })
	f.batch.AddLRPs(lrpStart("pg", 0, 10))
	rep := f.auction(t)
	require.Empty(t, rep.Failures)
	require.Empty(t, f.bbs.all())
	require.Len(t, rep.Placements, 1)
	require.Equal(t, "cell-b", rep.Placements[0].CellID)
	require.Equal(t, 2, a.StateCalls(), "the cell that handed work back is asked again")
	require.Equal(t, 1, placedOn(b)["pg"])

	// With fresh states (max age 0) the same hand-back is a failure, as
	// before: the auction does not loop on a cell it has just asked.
	c := reptest.New(reptest.Cell("cell-c", "z1", 100, 100, 100))
	c.PerformHook = func(context.Context, *repv1.PerformRequest) error {
		c.Update(func(s *repv1.StateResponse) { s.AvailableResources.MemoryMb = 0 })
		return nil
	}
	c.Serve(t)
	g := newFixture(t, nil, c)
	g.batch.AddLRPs(lrpStart("pg", 0, 10))
	rep = g.auction(t)
	require.Empty(t, rep.Placements)
	require.Equal(t, []written{{"lrp", "pg/0@d", auctionrunner.MsgCellRefused}}, g.bbs.all())
}

// TestErrorsFallBackToAskingTheCell: a cell whose State failed is not kept
// and is asked again next auction; a kept cell whose Perform cannot be
// reached loses the work to a fresh auction, and is asked again.
func TestErrorsFallBackToAskingTheCell(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1_700_000_000, 0))
	var down atomic.Bool
	unavailable := status.Error(codes.Unavailable, "cell is gone")
	a := reptest.New(reptest.Cell("cell-a", "z1", 1000, 1000, 100))
	a.StateHook = func(context.Context) error {
		if down.Load() {
			return unavailable
		}
		return nil
	}
	a.PerformHook = func(context.Context, *repv1.PerformRequest) error {
		if down.Load() {
			return unavailable
		}
		return nil
	}
	a.Serve(t)
	b := reptest.Start(t, reptest.Cell("cell-b", "z1", 100, 100, 100))
	f := newFixture(t, func(o *auctionrunner.Options) { o.StateMaxAge = time.Minute; o.Clock = clk }, a, b)

	// State fails once: the cell is left out and asked again next time.
	down.Store(true)
	f.batch.AddLRPs(lrpStart("pg", 0, 10))
	rep := f.auction(t)
	require.Equal(t, 1, rep.FailedCells)
	down.Store(false)
	f.batch.AddLRPs(lrpStart("pg", 1, 10))
	rep = f.auction(t)
	require.Equal(t, 1, rep.StatesFetched)
	require.Equal(t, 1, rep.StatesReused)
	require.Equal(t, 2, a.StateCalls())
	require.Equal(t, 2, rep.Cells)

	// The kept cell a dies: Perform is unreachable, the work is placed
	// again on fresh states (a is left out) rather than assumed started.
	down.Store(true)
	f.batch.AddLRPs(lrpStart("other", 0, 10))
	rep = f.auction(t)
	require.Empty(t, rep.Failures)
	require.Len(t, rep.Placements, 1)
	require.Equal(t, "cell-b", rep.Placements[0].CellID)
	require.Equal(t, 1, placedOn(b)["other"])
	require.Equal(t, 3, a.StateCalls())

	// Still down: asked again, not kept.
	f.batch.AddLRPs(lrpStart("other", 1, 10))
	rep = f.auction(t)
	require.Equal(t, 4, a.StateCalls())
	require.Equal(t, 1, rep.FailedCells)
	require.Equal(t, "cell-b", rep.Placements[0].CellID)
}

// TestConcurrentAuctionsNeverOverCommit runs auctions from several
// goroutines on real cells with kept states while other work is started on
// the cells behind the auctioneer's back: no cell takes more than its
// capacity, every item is placed at most once, and every item not placed
// is written back.
func TestConcurrentAuctionsNeverOverCommit(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1_700_000_000, 0))
	const cellsN, capacity, items = 4, 20, 100
	var cells []*realCell
	for i := range cellsN {
		cells = append(cells, startRealCell(t, fmt.Sprintf("cell-%d", i), executor.Resources{MemoryMB: 10_000, DiskMB: 10_000, Containers: capacity}))
	}
	f := realFixture(t, time.Minute, clk, cells...)

	var wg sync.WaitGroup
	var placed, failed atomic.Int32
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range items / 4 {
				f.batch.AddLRPs(lrpStart(fmt.Sprintf("app-%d", g), i, 100))
				rep, err := f.runner.RunAuction(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				placed.Add(int32(len(rep.Placements)))
				failed.Add(int32(len(rep.Failures)))
			}
		}()
	}
	// Outside work takes one container on every cell a few times.
	var outside atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := range 3 {
			for _, c := range cells {
				fails := c.exec.Allocate([]executor.AllocationRequest{{Guid: fmt.Sprintf("outside-%d-%s", k, c.id), Resource: executor.Resource{MemoryMB: 100}}})
				if len(fails) == 0 {
					outside.Add(1)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()

	var taken int32
	for _, c := range cells {
		require.GreaterOrEqual(t, c.exec.RemainingResources().Containers, 0, "%s over-committed", c.id)
		taken += c.taken.Load()
	}
	require.Equal(t, taken, placed.Load(), "every placement is an item a cell took, once")
	require.Equal(t, int32(cellsN*capacity)-outside.Load(), taken, "the cells are filled, no more")
	require.Equal(t, int32(items), placed.Load()+failed.Load())
	require.Len(t, f.bbs.all(), int(failed.Load()))
}
