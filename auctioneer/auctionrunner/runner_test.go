package auctionrunner_test

import (
	"context"
	"errors"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/auctionrunner"
	"github.com/gavelhq/gavel/auctioneer/internal/reptest"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

func lrpStart(guid string, index, memoryMB int) auctioneer.LRPStart {
	return auctioneer.LRPStart{ProcessGUID: guid, Index: index, Domain: "d", MemoryMB: memoryMB, DiskMB: 1, RootFS: "preloaded:cflinuxfs4"}
}

func taskStart(guid string, memoryMB int) auctioneer.TaskStart {
	return auctioneer.TaskStart{TaskGUID: guid, Domain: "d", MemoryMB: memoryMB, DiskMB: 1, RootFS: "preloaded:cflinuxfs4"}
}

// directory is an in-memory Directory.
type directory struct {
	mu    sync.Mutex
	cells []*modelsv1.CellPresence
	err   error
}

func (d *directory) Cells(context.Context) ([]*modelsv1.CellPresence, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*modelsv1.CellPresence(nil), d.cells...), d.err
}

func (d *directory) set(err error, reps ...*reptest.Rep) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
	d.cells = nil
	for _, r := range reps {
		d.cells = append(d.cells, r.Presence())
	}
}

// written is one failure the runner wrote to the BBS.
type written struct {
	kind, id, err string
}

// bbs records write-backs.
type bbs struct {
	mu     sync.Mutex
	writes []written
}

func (b *bbs) FailActualLRP(_ context.Context, in *bbsv1.FailActualLRPRequest, _ ...grpc.CallOption) (*bbsv1.FailActualLRPResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := in.GetActualLrpKey()
	b.writes = append(b.writes, written{"lrp", k.GetProcessGuid() + "/" + string(rune('0'+k.GetIndex())) + "@" + k.GetDomain(), in.GetErrorMessage()})
	return &bbsv1.FailActualLRPResponse{}, nil
}

func (b *bbs) RejectTask(_ context.Context, in *bbsv1.RejectTaskRequest, _ ...grpc.CallOption) (*bbsv1.RejectTaskResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes = append(b.writes, written{"task", in.GetTaskGuid(), in.GetRejectionReason()})
	return &bbsv1.RejectTaskResponse{}, nil
}

func (b *bbs) all() []written {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]written(nil), b.writes...)
	sort.Slice(out, func(i, j int) bool { return out[i].kind+out[i].id < out[j].kind+out[j].id })
	return out
}

type fixture struct {
	batch   *auctionrunner.Batch
	dir     *directory
	bbs     *bbs
	metrics *auctionrunner.Metrics
	runner  *auctionrunner.Runner
}

func newFixture(t *testing.T, mod func(*auctionrunner.Options), reps ...*reptest.Rep) *fixture {
	t.Helper()
	f := &fixture{batch: auctionrunner.NewBatch(), dir: &directory{}, bbs: &bbs{}, metrics: auctionrunner.NewMetrics(nil)}
	f.dir.set(nil, reps...)
	pool := auctionrunner.NewRepPool(nil)
	t.Cleanup(pool.Close)
	opts := auctionrunner.Options{
		Batch: f.batch, Cells: f.dir, Reps: pool, BBS: f.bbs, Engine: auctioneer.DefaultOptions(),
		CellStateTimeout: 5 * time.Second, Metrics: f.metrics,
	}
	if mod != nil {
		mod(&opts)
	}
	r, err := auctionrunner.New(opts)
	require.NoError(t, err)
	f.runner = r
	return f
}

func (f *fixture) auction(t *testing.T) auctionrunner.Report {
	t.Helper()
	rep, err := f.runner.RunAuction(context.Background())
	require.NoError(t, err)
	return rep
}

// placedOn counts, per process guid or task guid, the items a cell accepted.
func placedOn(r *reptest.Rep) map[string]int {
	out := map[string]int{}
	for _, p := range r.Performs() {
		for _, l := range p.GetLrps() {
			out[l.GetKey().GetProcessGuid()]++
		}
		for _, tk := range p.GetTasks() {
			out[tk.GetTaskGuid()]++
		}
	}
	return out
}

// value reads a counter, or a histogram's sample count.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	require.NoError(t, m.Write(&out))
	if h := out.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return out.GetCounter().GetValue()
}

func TestNewNeedsItsDependencies(t *testing.T) {
	_, err := auctionrunner.New(auctionrunner.Options{})
	require.ErrorContains(t, err, "Batch is required")
}

func TestAuctionSendsOnePerformPerWinningCell(t *testing.T) {
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 100, 100, 100))
	b := reptest.Start(t, reptest.Cell("cell-b", "z1", 100, 100, 100))
	f := newFixture(t, nil, a, b)
	f.batch.AddLRPs(auctionrunner.LRPStarts(&auctioneerv1.LRPStartRequest{
		ProcessGuid: "pg", Domain: "d", Indices: []int32{0, 1, 2, 3},
		Resource: &auctioneerv1.Resource{MemoryMb: 10, DiskMb: 1}, PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
		DesiredEpoch: "epoch-1", RunInfoRevision: 42,
	})...)
	f.batch.AddTasks(taskStart("t1", 10))

	rep := f.auction(t)
	require.Equal(t, 1, rep.Attempts)
	require.Equal(t, 2, rep.Cells)
	require.Len(t, rep.Placements, 5)
	require.Empty(t, rep.Failures)
	require.Empty(t, f.bbs.all(), "successes are not written by the auctioneer")

	// One Perform per cell, carrying all of its work; anti-affinity splits the app 2 and 2.
	require.Len(t, a.Performs(), 1)
	require.Len(t, b.Performs(), 1)
	require.Equal(t, "cell-a", a.Performs()[0].GetCellId())
	require.Equal(t, 2, placedOn(a)["pg"])
	require.Equal(t, 2, placedOn(b)["pg"])
	require.Equal(t, 1, placedOn(a)["t1"]+placedOn(b)["t1"])

	// The work carries what the cell needs to run it.
	l := a.Performs()[0].GetLrps()[0]
	require.Equal(t, "d", l.GetKey().GetDomain())
	require.Equal(t, int32(10), l.GetResource().GetMemoryMb())
	require.Equal(t, "preloaded:cflinuxfs4", l.GetPlacementConstraint().GetRootFs())
	require.Equal(t, "epoch-1", l.GetDesiredEpoch(), "the run info version the BBS named reaches the cell")
	require.Equal(t, int64(42), l.GetRunInfoRevision())

	require.Equal(t, 4.0, value(t, f.metrics.AuctionsStarted.WithLabelValues("lrp")))
	require.Equal(t, 1.0, value(t, f.metrics.AuctionsStarted.WithLabelValues("task")))
	require.Equal(t, 1.0, value(t, f.metrics.BatchSize))

	// An empty batch is no auction: no cell is asked anything.
	calls := a.StateCalls()
	require.Equal(t, auctionrunner.Report{}, f.auction(t))
	require.Equal(t, calls, a.StateCalls())
}

func TestUnusableCellsAreSkipped(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(*reptest.Rep)
		failed float64
		check  func(*testing.T, auctionrunner.Report)
	}{
		{"state times out", func(r *reptest.Rep) {
			r.StateHook = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		}, 1, func(t *testing.T, rep auctionrunner.Report) { require.Equal(t, 1, rep.FailedCells) }},
		{"state errors", func(r *reptest.Rep) {
			r.StateHook = func(context.Context) error { return status.Error(codes.Unavailable, "garden is unhealthy") }
		}, 1, func(t *testing.T, rep auctionrunner.Report) { require.Equal(t, 1, rep.FailedCells) }},
		{"evacuating", func(r *reptest.Rep) {
			r.Update(func(s *repv1.StateResponse) { s.Evacuating = true })
		}, 0, func(t *testing.T, rep auctionrunner.Report) { require.Equal(t, 1, rep.EvacuatingCells) }},
		{"reports another cell id", func(r *reptest.Rep) {
			r.Update(func(s *repv1.StateResponse) { s.CellId = "impostor" })
		}, 0, func(t *testing.T, rep auctionrunner.Report) { require.Equal(t, 1, rep.MismatchedCells) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The bad cell is emptier, so it would win if it took part.
			bad := reptest.New(reptest.Cell("cell-bad", "z1", 1000, 1000, 100))
			tc.setup(bad)
			bad.Serve(t)
			good := reptest.Start(t, reptest.Cell("cell-good", "z1", 100, 100, 100))
			// Only the timing-out cell should miss the deadline: a loaded
			// machine can take a while to answer the good cell's State.
			timeout := 10 * time.Second
			if tc.name == "state times out" {
				timeout = time.Second
			}
			f := newFixture(t, func(o *auctionrunner.Options) { o.CellStateTimeout = timeout }, bad, good)
			f.dir.cells[0].CellId = "cell-bad" // the presence names the cell as it registered
			f.batch.AddLRPs(lrpStart("pg", 0, 10), lrpStart("pg", 1, 10))

			rep := f.auction(t)
			require.Equal(t, 1, rep.Attempts)
			require.Equal(t, 1, rep.Cells)
			tc.check(t, rep)
			require.Len(t, rep.Placements, 2)
			require.Empty(t, bad.Performs())
			require.Equal(t, 2, placedOn(good)["pg"])
			require.Equal(t, tc.failed, value(t, f.metrics.FailedCellStates))
		})
	}
}

func TestNoCellAnsweringFailsTheBatchAfterRetries(t *testing.T) {
	down := reptest.New(reptest.Cell("cell-a", "z1", 100, 100, 100))
	down.StateHook = func(context.Context) error { return status.Error(codes.Unavailable, "down") }
	down.Serve(t)
	f := newFixture(t, nil, down)
	f.batch.AddLRPs(lrpStart("pg", 0, 10))
	f.batch.AddTasks(taskStart("t1", 10))

	rep := f.auction(t)
	require.Equal(t, auctionrunner.DefaultFetchAttempts, rep.Attempts)
	require.Equal(t, auctionrunner.DefaultFetchAttempts, down.StateCalls())
	require.Equal(t, []written{
		{"lrp", "pg/0@d", auctioneer.MsgCellCommunication},
		{"task", "t1", auctioneer.MsgCellCommunication},
	}, f.bbs.all())
	require.Equal(t, 4.0, value(t, f.metrics.FailedCellStates))
	require.Equal(t, 1.0, value(t, f.metrics.AuctionsFailed.WithLabelValues("lrp")))
	require.Equal(t, 1.0, value(t, f.metrics.AuctionsFailed.WithLabelValues("task")))
}

func TestPlacementFailuresAreWrittenBack(t *testing.T) {
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 100, 100, 100))
	b := reptest.Start(t, reptest.Cell("cell-b", "z2", 100, 100, 100))
	f := newFixture(t, nil, a, b)
	f.batch.AddLRPs(lrpStart("big", 0, 500), lrpStart("small", 0, 10))
	f.batch.AddTasks(taskStart("huge", 500))
	bad := lrpStart("docker", 0, 10)
	bad.RootFS = "nope:///x"
	f.batch.AddLRPs(bad)

	rep := f.auction(t)
	require.Len(t, rep.Placements, 1)
	require.Equal(t, []written{
		{"lrp", "big/0@d", "insufficient resources: memory"},
		{"lrp", "docker/0@d", auctioneer.MsgRootFS},
		{"task", "huge", "insufficient resources: memory"},
	}, f.bbs.all())
	require.Equal(t, 2.0, value(t, f.metrics.AuctionsFailed.WithLabelValues("lrp")))
	require.Equal(t, 1.0, value(t, f.metrics.AuctionsFailed.WithLabelValues("task")))
	require.Equal(t, 1.0, value(t, f.metrics.AuctionsStarted.WithLabelValues("lrp")))
}

func TestWorkACellHandsBackBecomesAPlacementFailure(t *testing.T) {
	a := reptest.New(reptest.Cell("cell-a", "z1", 100, 100, 100))
	// Between State and Perform the cell filled up: Perform hands everything back.
	a.PerformHook = func(context.Context, *repv1.PerformRequest) error {
		a.Update(func(s *repv1.StateResponse) { s.AvailableResources.MemoryMb = 0 })
		return nil
	}
	a.Serve(t)
	f := newFixture(t, nil, a)
	f.batch.AddLRPs(lrpStart("pg", 0, 10), lrpStart("pg", 1, 10))
	f.batch.AddTasks(taskStart("t1", 10))

	rep := f.auction(t)
	require.Empty(t, rep.Placements)
	require.Len(t, rep.Failures, 3)
	require.Equal(t, []written{
		{"lrp", "pg/0@d", auctionrunner.MsgCellRefused},
		{"lrp", "pg/1@d", auctionrunner.MsgCellRefused},
		{"task", "t1", auctionrunner.MsgCellRefused},
	}, f.bbs.all())
	require.Equal(t, 0.0, value(t, f.metrics.AuctionsStarted.WithLabelValues("lrp")))
	require.Equal(t, 2.0, value(t, f.metrics.AuctionsFailed.WithLabelValues("lrp")))
}

func TestPerformErrorLeavesTheWorkToConvergence(t *testing.T) {
	a := reptest.New(reptest.Cell("cell-a", "z1", 100, 100, 100))
	a.PerformHook = func(context.Context, *repv1.PerformRequest) error { return status.Error(codes.Internal, "boom") }
	a.Serve(t)
	f := newFixture(t, nil, a)
	f.batch.AddLRPs(lrpStart("pg", 0, 10))

	rep := f.auction(t)
	require.Len(t, a.Performs(), 1)
	require.Len(t, rep.Placements, 1, "as in Diego, work whose Perform failed is assumed started")
	require.Empty(t, f.bbs.all())
	require.Equal(t, 1.0, value(t, f.metrics.PerformErrors))
}

func TestCellListErrorKeepsTheWork(t *testing.T) {
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 100, 100, 100))
	f := newFixture(t, nil, a)
	f.dir.set(errors.New("etcd is down"))
	f.batch.AddLRPs(lrpStart("pg", 0, 10))

	_, err := f.runner.RunAuction(context.Background())
	require.ErrorContains(t, err, "etcd is down")
	l, _ := f.batch.Len()
	require.Equal(t, 1, l)
	require.Empty(t, f.bbs.all())

	f.dir.set(nil, a)
	rep := f.auction(t)
	require.Len(t, rep.Placements, 1)
	require.Equal(t, 1, placedOn(a)["pg"])
}

func TestStateFetchHonoursTheWorkerCap(t *testing.T) {
	var inflight, peak atomic.Int32
	hook := func(context.Context) error {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond) // let calls overlap if the cap allowed it
		return nil
	}
	var reps []*reptest.Rep
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		r := reptest.New(reptest.Cell("cell-"+id, "z1", 100, 100, 100))
		r.StateHook = hook
		reps = append(reps, r.Serve(t))
	}
	f := newFixture(t, func(o *auctionrunner.Options) { o.CellStateWorkers = 2 }, reps...)
	f.batch.AddLRPs(lrpStart("pg", 0, 10))
	rep := f.auction(t)
	require.Equal(t, 6, rep.Cells)
	require.LessOrEqual(t, peak.Load(), int32(2))
	require.GreaterOrEqual(t, peak.Load(), int32(1))
}

func TestRequestsArrivingDuringAnAuctionJoinTheNextBatch(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	a := reptest.New(reptest.Cell("cell-a", "z1", 100, 100, 100))
	var performs atomic.Int32
	a.PerformHook = func(ctx context.Context, _ *repv1.PerformRequest) error {
		entered <- struct{}{}
		if performs.Add(1) == 1 {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	}
	a.Serve(t)
	f := newFixture(t, nil, a)
	runUntilCleanup(t, f)

	f.batch.AddLRPs(lrpStart("first", 0, 10))
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first auction never reached Perform")
	}
	// The first auction is committing; these join the next batch.
	f.batch.AddLRPs(lrpStart("second", 0, 10))
	f.batch.AddTasks(taskStart("t", 10))
	close(release)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the second auction never reached Perform")
	}
	performed := a.Performs()
	require.Len(t, performed, 2)
	require.Len(t, performed[0].GetLrps(), 1)
	require.Equal(t, "first", performed[0].GetLrps()[0].GetKey().GetProcessGuid())
	require.Empty(t, performed[0].GetTasks())
	require.Len(t, performed[1].GetLrps(), 1)
	require.Equal(t, "second", performed[1].GetLrps()[0].GetKey().GetProcessGuid())
	require.Len(t, performed[1].GetTasks(), 1)
}

func TestRunRetriesAfterTheCellListFails(t *testing.T) {
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 100, 100, 100))
	clk := fakeclock.NewFakeClock(time.Unix(0, 0))
	f := newFixture(t, func(o *auctionrunner.Options) { o.Clock = clk; o.RetryInterval = time.Minute }, a)
	f.dir.set(errors.New("etcd is down"))
	runUntilCleanup(t, f)

	f.batch.AddLRPs(lrpStart("pg", 0, 10))
	clk.WaitForWatcherAndIncrement(time.Minute - time.Second) // the runner waits for the retry
	f.dir.set(nil, a)
	require.Never(t, func() bool { return len(a.Performs()) > 0 }, 100*time.Millisecond, 10*time.Millisecond,
		"no retry before the interval")
	clk.Increment(time.Second)
	require.Eventually(t, func() bool { return placedOn(a)["pg"] == 1 }, 10*time.Second, 10*time.Millisecond)
}

func TestStoppingDuringTheFetchKeepsTheWork(t *testing.T) {
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 100, 100, 100))
	f := newFixture(t, nil, a)
	f.batch.AddLRPs(lrpStart("pg", 0, 10))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := f.runner.RunAuction(ctx)
	require.ErrorIs(t, err, context.Canceled)
	l, _ := f.batch.Len()
	require.Equal(t, 1, l)
	require.Empty(t, a.Performs())
	require.Empty(t, f.bbs.all())
}

// With MinInterval, the first work is auctioned at once; work arriving
// while auctions follow each other waits for the rest of the interval and
// goes in one auction; work after a quiet interval goes at once again.
func TestAuctionsArePacedByTheMinimumInterval(t *testing.T) {
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 1000, 1000, 100))
	f, clk, _ := startPaced(t, a)
	performs := func() int { return len(a.Performs()) }

	f.batch.AddLRPs(lrpStart("first", 0, 10))
	require.Eventually(t, func() bool { return performs() == 1 }, 10*time.Second, 5*time.Millisecond,
		"the first auction waits for nothing")

	f.batch.AddLRPs(lrpStart("second", 0, 10))
	waitForPacing(t, clk)
	clk.Increment(time.Minute - time.Second)
	f.batch.AddLRPs(lrpStart("third", 0, 10))
	f.batch.AddTasks(taskStart("t", 10))
	require.Never(t, func() bool { return performs() > 1 }, 100*time.Millisecond, 5*time.Millisecond,
		"no auction before the interval since the last one started")
	clk.Increment(time.Second)
	require.Eventually(t, func() bool { return performs() == 2 }, 10*time.Second, 5*time.Millisecond)
	paced := a.Performs()[1]
	require.Len(t, paced.GetLrps(), 2, "work that arrived during the wait goes in one auction")
	require.Len(t, paced.GetTasks(), 1)
	require.Equal(t, 1.0, value(t, f.metrics.PacedAuctions))
	require.InDelta(t, 60.0, value(t, f.metrics.PacingSeconds), 0.001)

	clk.Increment(2 * time.Minute) // quiet for longer than the interval
	f.batch.AddLRPs(lrpStart("fourth", 0, 10))
	require.Eventually(t, func() bool { return performs() == 3 }, 10*time.Second, 5*time.Millisecond,
		"work after a quiet interval waits for nothing")
	require.Equal(t, 1.0, value(t, f.metrics.PacedAuctions))
}

// startPaced runs a runner over reps with a fake clock and a one-minute
// MinInterval; it is stopped when the test ends.
func startPaced(t *testing.T, reps ...*reptest.Rep) (*fixture, *fakeclock.FakeClock, ifrit.Process) {
	t.Helper()
	clk := fakeclock.NewFakeClock(time.Unix(0, 0))
	f := newFixture(t, func(o *auctionrunner.Options) { o.Clock = clk; o.MinInterval = time.Minute }, reps...)
	return f, clk, runUntilCleanup(t, f)
}

// runUntilCleanup starts f's runner, waits until it is ready and stops it
// when the test ends.
func runUntilCleanup(t *testing.T, f *fixture) ifrit.Process {
	t.Helper()
	proc := ifrit.Background(f.runner)
	t.Cleanup(func() { proc.Signal(os.Interrupt); <-proc.Wait() })
	<-proc.Ready()
	return proc
}

// waitForPacing waits until the runner waits on the clock for the interval.
func waitForPacing(t *testing.T, clk *fakeclock.FakeClock) {
	t.Helper()
	require.Eventually(t, func() bool { return clk.WatcherCount() > 0 }, 10*time.Second, 5*time.Millisecond,
		"the runner does not wait for the interval")
}

// A signal during the wait for the interval stops the runner at once.
func TestStoppingDuringThePacingWait(t *testing.T) {
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 1000, 1000, 100))
	f, clk, proc := startPaced(t, a)
	f.batch.AddLRPs(lrpStart("first", 0, 10))
	require.Eventually(t, func() bool { return len(a.Performs()) == 1 }, 10*time.Second, 5*time.Millisecond)
	f.batch.AddLRPs(lrpStart("second", 0, 10))
	waitForPacing(t, clk)
	proc.Signal(os.Interrupt)
	select {
	case err := <-proc.Wait():
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the runner did not stop during its wait")
	}
	require.Len(t, a.Performs(), 1)
}

// A wait for the interval ends once the work waiting reaches
// FullBatchPerCell per cell of the last auction.
func TestAFullBatchEndsThePacingWaitEarly(t *testing.T) {
	a := reptest.Start(t, reptest.Cell("cell-a", "z1", 1000, 1000, 100))
	b := reptest.Start(t, reptest.Cell("cell-b", "z1", 1000, 1000, 100))
	f, clk, _ := startPaced(t, a, b)
	f.batch.AddLRPs(lrpStart("first", 0, 10))
	require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 1 }, 10*time.Second, 5*time.Millisecond)

	full := auctionrunner.FullBatchPerCell * 2 // two cells took part
	for i := range full - 1 {
		f.batch.AddLRPs(lrpStart("more", i, 10))
	}
	waitForPacing(t, clk)
	require.Never(t, func() bool { return lrpsPerformed(a, b) > 1 }, 100*time.Millisecond, 5*time.Millisecond,
		"a batch one short of full waits for the interval")
	f.batch.AddLRPs(lrpStart("more", full-1, 10))
	require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 1+full }, 10*time.Second, 5*time.Millisecond,
		"a full batch goes before the interval")
	require.Equal(t, 1.0, value(t, f.metrics.PacedAuctions))
	require.Zero(t, value(t, f.metrics.PacingSeconds), "no time passed on the clock")
}

// startHeld runs a runner over reps with a fake clock, a one-minute
// MinInterval and the given MaxInterval. The first Perform of rep slow
// advances the clock by 40 s (more than half of MinInterval), so the first
// auction counts as busy; with slow nil none does.
func startHeld(t *testing.T, slow *reptest.Rep, maxInterval time.Duration, reps ...*reptest.Rep) (*fixture, *fakeclock.FakeClock) {
	t.Helper()
	return startHeldWith(t, slow, time.Minute, maxInterval, reps...)
}

// startHeldWith is startHeld with the given MinInterval.
func startHeldWith(t *testing.T, slow *reptest.Rep, minInterval, maxInterval time.Duration, reps ...*reptest.Rep) (*fixture, *fakeclock.FakeClock) {
	t.Helper()
	clk := fakeclock.NewFakeClock(time.Unix(0, 0))
	if slow != nil {
		var once atomic.Bool
		slow.PerformHook = func(context.Context, *repv1.PerformRequest) error {
			if once.CompareAndSwap(false, true) {
				clk.Increment(40 * time.Second)
			}
			return nil
		}
	}
	for _, r := range reps {
		r.Serve(t)
	}
	f := newFixture(t, func(o *auctionrunner.Options) {
		o.Clock = clk
		o.MinInterval = minInterval
		o.MaxInterval = maxInterval
	}, reps...)
	runUntilCleanup(t, f)
	return f, clk
}

// lrpsPerformed counts the LRP instances sent to reps in Performs.
func lrpsPerformed(reps ...*reptest.Rep) int {
	n := 0
	for _, r := range reps {
		for _, p := range r.Performs() {
			n += len(p.GetLrps())
		}
	}
	return n
}

// After an auction that took longer than half of MinInterval, work that
// comes to fewer than SparseBatchPerCell items per cell is held past
// MinInterval until MaxInterval, and goes in one auction with what arrived
// meanwhile.
func TestABusyAuctioneerHoldsASparseBatch(t *testing.T) {
	a := reptest.New(reptest.Cell("cell-a", "z1", 1000, 1000, 100))
	b := reptest.New(reptest.Cell("cell-b", "z1", 1000, 1000, 100))
	f, clk := startHeld(t, a, 3*time.Minute, a, b)
	f.batch.AddLRPs(lrpStart("first", 0, 10), lrpStart("first", 1, 10))
	require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 2 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, time.Unix(40, 0), clk.Now(), "the first auction took 40 s")

	f.batch.AddLRPs(lrpStart("second", 0, 10))
	waitForPacing(t, clk)
	clk.Increment(20 * time.Second) // MinInterval since the last start
	require.Never(t, func() bool { return lrpsPerformed(a, b) > 2 }, 100*time.Millisecond, 5*time.Millisecond,
		"a sparse batch after a busy auction is held past MinInterval")
	f.batch.AddLRPs(lrpStart("third", 0, 10))
	waitForPacing(t, clk)
	clk.Increment(2 * time.Minute) // MaxInterval since the last start
	require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 4 }, 10*time.Second, 5*time.Millisecond,
		"the held batch goes at MaxInterval, in one auction")
	require.Equal(t, 1.0, value(t, f.metrics.HeldAuctions))
	require.InDelta(t, 140.0, value(t, f.metrics.PacingSeconds), 0.001)
}

// A busy auctioneer's wait ends at MinInterval once the work reaches
// SparseBatchPerCell items per cell; an auctioneer that is not busy never
// holds; neither does one whose MaxInterval is not above MinInterval.
func TestHoldingEndsOrNeverStarts(t *testing.T) {
	for _, tc := range []struct {
		name        string
		busy        bool
		items       int
		maxInterval time.Duration
		held        bool
	}{
		{name: "busy, sparse", busy: true, items: 1, maxInterval: 3 * time.Minute, held: true},
		{name: "busy, enough per cell", busy: true, items: auctionrunner.SparseBatchPerCell * 2, maxInterval: 3 * time.Minute},
		{name: "not busy, sparse", items: 1, maxInterval: 3 * time.Minute},
		{name: "busy, sparse, MaxInterval not above MinInterval", busy: true, items: 1, maxInterval: time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := reptest.New(reptest.Cell("cell-a", "z1", 1000, 1000, 100))
			b := reptest.New(reptest.Cell("cell-b", "z1", 1000, 1000, 100))
			var slow *reptest.Rep
			if tc.busy {
				slow = a
			}
			f, clk := startHeld(t, slow, tc.maxInterval, a, b)
			f.batch.AddLRPs(lrpStart("first", 0, 10), lrpStart("first", 1, 10))
			require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 2 }, 10*time.Second, 5*time.Millisecond)
			for i := range tc.items {
				f.batch.AddLRPs(lrpStart("more", i, 10))
			}
			waitForPacing(t, clk)
			clk.Increment(time.Unix(60, 0).Sub(clk.Now())) // MinInterval since the last start
			if tc.held {
				require.Never(t, func() bool { return lrpsPerformed(a, b) > 2 }, 100*time.Millisecond, 5*time.Millisecond)
				clk.Increment(2 * time.Minute)
			}
			require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 2+tc.items }, 10*time.Second, 5*time.Millisecond,
				"the batch goes")
			held := 0.0
			if tc.held {
				held = 1
			}
			require.Equal(t, held, value(t, f.metrics.HeldAuctions))
		})
	}
}

// With no MinInterval (Diego's runner) nothing is held, however slow the
// last auction and sparse the batch.
func TestNoMinimumIntervalNeverHolds(t *testing.T) {
	a := reptest.New(reptest.Cell("cell-a", "z1", 1000, 1000, 100))
	b := reptest.New(reptest.Cell("cell-b", "z1", 1000, 1000, 100))
	f, _ := startHeldWith(t, a, 0, 3*time.Minute, a, b)
	f.batch.AddLRPs(lrpStart("first", 0, 10), lrpStart("first", 1, 10))
	require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 2 }, 10*time.Second, 5*time.Millisecond)
	f.batch.AddLRPs(lrpStart("second", 0, 10))
	require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 3 }, 10*time.Second, 5*time.Millisecond,
		"the sparse batch goes at once")
	require.Zero(t, value(t, f.metrics.HeldAuctions))
	require.Zero(t, value(t, f.metrics.PacedAuctions))
}

// A busy auctioneer never holds a sparse batch past MinInterval once a
// repair is in it (the instances of a lost cell, say), whether the repair
// came before MinInterval passed or during the hold.
func TestARepairIsNeverHeld(t *testing.T) {
	repair := func(guid string, index int) auctioneer.LRPStart {
		s := lrpStart(guid, index, 10)
		s.Repair = true
		return s
	}
	for _, tc := range []struct {
		name       string
		duringHold bool
	}{
		{name: "repair waiting at MinInterval"},
		{name: "repair arrives during the hold", duringHold: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := reptest.New(reptest.Cell("cell-a", "z1", 1000, 1000, 100))
			b := reptest.New(reptest.Cell("cell-b", "z1", 1000, 1000, 100))
			f, clk := startHeld(t, a, 3*time.Minute, a, b)
			f.batch.AddLRPs(lrpStart("first", 0, 10), lrpStart("first", 1, 10))
			require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 2 }, 10*time.Second, 5*time.Millisecond)

			if tc.duringHold {
				f.batch.AddLRPs(lrpStart("desired", 0, 10))
				waitForPacing(t, clk)
				clk.Increment(20 * time.Second) // MinInterval since the last start
				require.Never(t, func() bool { return lrpsPerformed(a, b) > 2 }, 100*time.Millisecond, 5*time.Millisecond,
					"a sparse batch without a repair is held")
				f.batch.AddLRPs(repair("lost", 0))
				require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 4 }, 10*time.Second, 5*time.Millisecond,
					"the repair ends the hold at once, and the held work goes with it")
			} else {
				f.batch.AddLRPs(repair("lost", 0))
				waitForPacing(t, clk)
				require.Never(t, func() bool { return lrpsPerformed(a, b) > 2 }, 100*time.Millisecond, 5*time.Millisecond,
					"a repair still waits for MinInterval")
				clk.Increment(20 * time.Second) // MinInterval since the last start
				require.Eventually(t, func() bool { return lrpsPerformed(a, b) == 3 }, 10*time.Second, 5*time.Millisecond,
					"the repair goes at MinInterval")
			}
			held := 0.0
			if tc.duringHold {
				held = 1 // held past MinInterval until the repair came
			}
			require.Equal(t, held, value(t, f.metrics.HeldAuctions))
			require.InDelta(t, 20.0, value(t, f.metrics.PacingSeconds), 0.001, "no wait went on to MaxInterval")
		})
	}
}
