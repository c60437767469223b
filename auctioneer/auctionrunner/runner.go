package auctionrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/auctioneer"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Defaults of the runner (Diego's, reference auction.md §1.3 and §2.3).
const (
	// DefaultCellStateTimeout bounds one cell's State call.
	DefaultCellStateTimeout = 10 * time.Second
	// DefaultCellStateWorkers caps the State calls in flight.
	DefaultCellStateWorkers = 1000
	// DefaultCommunicationTimeout bounds a Perform call and a BBS write-back.
	DefaultCommunicationTimeout = 10 * time.Second
	// DefaultFetchAttempts is how many times the cell states are fetched
	// when no cell answers, before the batch fails (Diego: 4, no back-off).
	DefaultFetchAttempts = 4
	// DefaultRetryInterval is the wait before retrying an auction whose
	// cell list could not be read (Diego: 1 s).
	DefaultRetryInterval = time.Second
	// WriteBackWorkers caps the concurrent FailActualLRP/RejectTask calls.
	WriteBackWorkers = 64
	// MsgCellRefused is the placement error of work the winning cell
	// handed back from Perform. Diego writes an empty string here
	// (reference §1.9); Gavel says what happened.
	MsgCellRefused = "cell refused the work"
)

// BBS is what the runner needs of the BBS: writing placement failures
// back. bbsv1.BBSServiceClient (and bbs/client.Client) implement it.
type BBS interface {
	// FailActualLRP records a placement error on an UNCLAIMED instance.
	FailActualLRP(ctx context.Context, in *bbsv1.FailActualLRPRequest, opts ...grpc.CallOption) (*bbsv1.FailActualLRPResponse, error)
	// RejectTask hands a task back for another placement, or fails it.
	RejectTask(ctx context.Context, in *bbsv1.RejectTaskRequest, opts ...grpc.CallOption) (*bbsv1.RejectTaskResponse, error)
}

// Options configure a [Runner]. Batch, Cells, Reps and BBS are required.
type Options struct {
	// Batch is where the gRPC server puts work.
	Batch *Batch
	// Cells lists the live cells.
	Cells Directory
	// Reps gives clients of the cells.
	Reps Reps
	// BBS receives placement failures.
	BBS BBS
	// Engine configures the placement (strategy, weights, in-flight cap,
	// seed). Auction n of this runner uses Engine.Seed + n, so a run is
	// replayable from the configured seed. Validate it before.
	Engine auctioneer.Options
	// CellStateTimeout bounds each State call (default 10 s).
	CellStateTimeout time.Duration
	// CellStateWorkers caps the State calls in flight (default 1000).
	CellStateWorkers int
	// StateMaxAge is how long a cell's state, once fetched, stands in for
	// a State call: the runner keeps each cell's last answer with the
	// placements it sent since applied, and asks the cell again when the
	// answer is older than this, the cell's presence changed, the cell
	// handed work back, its Perform failed, or an auction on the kept
	// states left work unplaced (then every cell is asked). 0 asks every
	// cell before every auction, as Diego does.
	StateMaxAge time.Duration
	// MinInterval is the least time from one auction's start to the next
	// one's. Work that arrives when the last auction started longer ago is
	// auctioned at once; work that keeps arriving is gathered for the rest
	// of the interval and placed in one auction, so each cell is sent
	// fewer, larger Performs (and makes fewer, larger claims and starts).
	// The wait ends early once the work waiting reaches FullBatchPerCell
	// items per cell of the last auction: such a batch gains nothing from
	// waiting. 0: the next auction starts as soon as work is waiting, as
	// Diego's.
	MinInterval time.Duration
	// MaxInterval is how long after the last auction's start a busy
	// auctioneer may hold a sparse batch: when the last auction took longer
	// than half of MinInterval (work keeps coming and the auctions
	// themselves are slow: a large fleet under load) and the work waiting
	// is below SparseBatchPerCell per cell of the last auction, the wait
	// goes on past MinInterval until the batch reaches that or MaxInterval
	// passes. Such an auction would send many cells a Perform for one or
	// two instances, and each Perform brings a claim call and a start call
	// of the cell's. A batch with a repair in it (LRPStart.Repair: a lost
	// cell's instances, say) is never held: its instances are late already.
	// 0, or not above MinInterval, never holds; nor does a MinInterval of 0
	// (Diego's runner).
	MaxInterval time.Duration
	// CommunicationTimeout bounds each Perform and each write-back (default 10 s).
	CommunicationTimeout time.Duration
	// FetchAttempts is how many times cell states are fetched when no
	// cell answers (default 4).
	FetchAttempts int
	// RetryInterval is the wait after the cell list could not be read (default 1 s).
	RetryInterval time.Duration
	// Clock measures durations and drives RetryInterval (default the real clock).
	Clock clock.Clock
	// Logger (default a logger with no sinks).
	Logger lager.Logger
	// Metrics (default unregistered metrics).
	Metrics *Metrics
}

// FullBatchPerCell is the work per live cell that ends a wait for
// Options.MinInterval early.
const FullBatchPerCell = 4

// SparseBatchPerCell is the work per live cell below which a busy
// auctioneer holds a batch past Options.MinInterval (Options.MaxInterval).
const SparseBatchPerCell = 2

// Runner runs auctions, one at a time; see the package doc.
type Runner struct {
	opts    Options
	logger  lager.Logger
	metrics *Metrics

	lastCells atomic.Int64 // cells that took part in the last auction

	mu    sync.Mutex // one auction at a time; guards seq, known and cache
	seq   int64
	known map[string]struct{}    // rep addresses seen in the last fetch
	cache map[string]*cachedCell // by cell id; see Options.StateMaxAge
}

var _ ifrit.Runner = (*Runner)(nil)

// New returns a runner; it fails when a required option is missing.
func New(opts Options) (*Runner, error) {
	switch {
	case opts.Batch == nil:
		return nil, errors.New("auction runner: Batch is required")
	case opts.Cells == nil:
		return nil, errors.New("auction runner: Cells is required")
	case opts.Reps == nil:
		return nil, errors.New("auction runner: Reps is required")
	case opts.BBS == nil:
		return nil, errors.New("auction runner: BBS is required")
	}
	if opts.CellStateTimeout <= 0 {
		opts.CellStateTimeout = DefaultCellStateTimeout
	}
	if opts.CellStateWorkers <= 0 {
		opts.CellStateWorkers = DefaultCellStateWorkers
	}
	if opts.CommunicationTimeout <= 0 {
		opts.CommunicationTimeout = DefaultCommunicationTimeout
	}
	if opts.FetchAttempts <= 0 {
		opts.FetchAttempts = DefaultFetchAttempts
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = DefaultRetryInterval
	}
	if opts.Clock == nil {
		opts.Clock = clock.NewClock()
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("auctioneer")
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	return &Runner{
		opts:    opts,
		logger:  opts.Logger.Session("auction-runner"),
		metrics: opts.Metrics,
		known:   map[string]struct{}{},
		cache:   map[string]*cachedCell{},
	}, nil
}

// Run waits for work and runs an auction per wake-up until signalled, no
// sooner than MinInterval after the last auction started; a signal cancels
// the auction in flight or the wait. When the cell list cannot be read
// the work stays in the batch and the auction is retried after
// RetryInterval. Run returns nil.
func (r *Runner) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	close(ready)
	var lastStart time.Time    // zero before the first auction
	var lastTook time.Duration // how long the last auction ran
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.opts.Batch.Wake():
		}
		if !r.pace(ctx, lastStart, lastTook) {
			return nil
		}
		lastStart = r.opts.Clock.Now()
		_, err := r.RunAuction(ctx)
		lastTook = r.opts.Clock.Since(lastStart)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.logger.Error("auction-deferred", err, lager.Data{"retry_in": r.opts.RetryInterval.String()})
			select {
			case <-ctx.Done():
				return nil
			case <-r.opts.Clock.After(r.opts.RetryInterval):
			}
			r.opts.Batch.rearm()
		}
	}
}

// pace waits until MinInterval has passed since lastStart or the batch is
// full (at once when either holds, or before the first auction); when the
// last auction took longer than half of MinInterval it holds a sparse batch
// until MaxInterval (see Options.MaxInterval). False when ctx ended first.
// The wake-ups it takes need no re-arming: the auction that follows drains
// the whole batch.
func (r *Runner) pace(ctx context.Context, lastStart time.Time, lastTook time.Duration) bool {
	if lastStart.IsZero() {
		return true
	}
	minEnd := lastStart.Add(r.opts.MinInterval)
	maxEnd := lastStart.Add(r.opts.MaxInterval)
	busy := r.opts.MinInterval > 0 && r.opts.MaxInterval > r.opts.MinInterval && lastTook > r.opts.MinInterval/2
	// until is when the batch may go (the zero time: now); past minEnd the
	// wait is a hold.
	until := func() time.Time {
		if r.batchHolds(FullBatchPerCell) {
			return time.Time{}
		}
		now := r.opts.Clock.Now()
		if now.Before(minEnd) {
			return minEnd
		}
		if !busy || !now.Before(maxEnd) || r.batchHolds(SparseBatchPerCell) || r.opts.Batch.Repairs() > 0 {
			return time.Time{}
		}
		return maxEnd
	}
	end := until()
	if end.IsZero() {
		return true
	}
	r.metrics.PacedAuctions.Inc()
	began := r.opts.Clock.Now()
	defer func() {
		r.metrics.PacingSeconds.Add(r.opts.Clock.Since(began).Seconds())
		if end.After(minEnd) { // held past MinInterval
			r.metrics.HeldAuctions.Inc()
		}
	}()
	timer := r.opts.Clock.NewTimer(end.Sub(began))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C():
		case <-r.opts.Batch.Wake():
		}
		next := until()
		switch {
		case next.IsZero():
			return true
		case !next.Equal(end):
			// MinInterval passed and the batch is held: wait on to maxEnd.
			end = next
			timer.Stop()
			timer.Reset(end.Sub(r.opts.Clock.Now()))
		}
	}
}

// batchHolds says whether the work waiting reaches perCell items per cell
// of the last auction.
func (r *Runner) batchHolds(perCell int64) bool {
	cells := r.lastCells.Load()
	l, t := r.opts.Batch.Len()
	return cells > 0 && int64(l+t) >= perCell*cells
}

// Failure is a work item the auction could not place, as written back to
// the BBS.
type Failure struct {
	// Kind is lrp or task.
	Kind auctioneer.Kind
	// ProcessGUID, Index and Domain identify an LRP instance.
	ProcessGUID string
	Index       int
	Domain      string
	// TaskGUID identifies a task.
	TaskGUID string
	// Error is the placement error written to the BBS.
	Error string
}

// Report describes one auction.
type Report struct {
	// Attempts is how many times the cell states were fetched.
	Attempts int
	// StatesFetched counts the State calls of this auction, StatesReused
	// the cells whose kept state was used instead (Options.StateMaxAge).
	StatesFetched, StatesReused int
	// Cells is how many cells took part; FailedCells, EvacuatingCells and
	// MismatchedCells were left out (counts of the last attempt).
	Cells, FailedCells, EvacuatingCells, MismatchedCells int
	// Placements is the work the cells took, in placement order.
	Placements []auctioneer.Placement
	// Failures is the work written back to the BBS as failed.
	Failures []Failure
}

// RunAuction runs one auction: it gets the cell states (kept or fetched,
// see Options.StateMaxAge), drains the batch, places the work, sends it to
// the cells and writes the failures back. Calls are serialised. An empty
// batch gives an empty report and fetches nothing. It returns an error,
// leaving the work in the batch, only when the cell list cannot be read or
// ctx ends before the drain.
//
// With kept states, an auction that leaves work unplaced is decided again
// on fresh states from every cell, and work handed back by a cell whose
// state was kept is placed once more after that cell is asked again; only
// what still fails is written back.
func (r *Runner) RunAuction(ctx context.Context) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep Report
	if l, t := r.opts.Batch.Len(); l+t == 0 {
		return rep, nil
	}
	start := r.opts.Clock.Now()

	var fetched fetchResult
	var presences []*modelsv1.CellPresence
	for rep.Attempts < r.opts.FetchAttempts {
		rep.Attempts++
		var err error
		presences, err = r.opts.Cells.Cells(ctx)
		if err != nil {
			return rep, fmt.Errorf("list cells: %w", err)
		}
		r.forgetVanished(presences)
		fetched = r.cellStates(ctx, presences, false)
		rep.StatesFetched += fetched.fetched
		rep.StatesReused += fetched.reused
		if len(fetched.cells) > 0 {
			break
		}
		if ctx.Err() != nil {
			break
		}
		r.logger.Info("no-cell-answered", lager.Data{"attempt": rep.Attempts, "presences": fetched.presences, "failed": fetched.failed})
	}
	if err := ctx.Err(); err != nil {
		// Stopping: keep the work rather than send it on a dead context.
		return rep, fmt.Errorf("fetch cell states: %w", err)
	}
	rep.Cells, rep.FailedCells = len(fetched.cells), fetched.failed
	r.lastCells.Store(int64(rep.Cells))
	rep.EvacuatingCells, rep.MismatchedCells = fetched.evacuating, fetched.mismatched

	lrps, tasks := r.opts.Batch.Drain()
	r.metrics.BatchSize.Observe(float64(len(lrps) + len(tasks)))
	seed := r.opts.Engine.Seed + r.seq
	r.seq++
	out := r.round(ctx, presences, fetched, lrps, tasks, seed, true)
	if n := len(out.retryLRPs) + len(out.retryTasks); n > 0 {
		// Cells answered from the cache handed work back: ask them again
		// and place that work once more.
		r.logger.Info("replacing-handed-back-work", lager.Data{"items": n})
		again := r.cellStates(ctx, presences, false)
		second := r.round(ctx, presences, again, out.retryLRPs, out.retryTasks, seed, false)
		out.placed = append(out.placed, second.placed...)
		out.failures = append(out.failures, second.failures...)
		out.fetched += again.fetched + second.fetched
	}
	rep.StatesFetched += out.fetched
	rep.Placements = out.placed
	rep.Failures = out.failures
	r.writeBack(ctx, rep.Failures)

	for _, p := range rep.Placements {
		r.metrics.AuctionsStarted.WithLabelValues(string(p.Kind)).Inc()
	}
	for _, f := range rep.Failures {
		r.metrics.AuctionsFailed.WithLabelValues(string(f.Kind)).Inc()
	}
	r.metrics.AuctionDuration.Observe(r.opts.Clock.Since(start).Seconds())
	r.logger.Info("auction-completed", lager.Data{
		"cells": rep.Cells, "failed_cells": rep.FailedCells, "attempts": rep.Attempts,
		"states_fetched": rep.StatesFetched, "states_reused": rep.StatesReused,
		"lrps": len(lrps), "tasks": len(tasks), "placed": len(rep.Placements), "failed": len(rep.Failures),
		"seed": seed, "duration": r.opts.Clock.Since(start).String(),
	})
	return rep, nil
}

// roundResult is one placement round: what the cells took, what failed,
// and the work to place again (handed back by cells answered from the
// cache).
type roundResult struct {
	placed     []auctioneer.Placement
	failures   []Failure
	retryLRPs  []auctioneer.LRPStart
	retryTasks []auctioneer.TaskStart
	fetched    int // State calls made by a full refresh
}

// round places lrps and tasks on the cells of fetched and sends the work.
// When the engine leaves work unplaced and some states came from the
// cache, every cell is asked again and the engine runs again on the fresh
// states. The cache takes what the cells kept; cells that handed work back
// or whose Perform failed are asked again next time. With retry, work
// handed back by a cell answered from the cache is returned for another
// round instead of failing.
func (r *Runner) round(ctx context.Context, presences []*modelsv1.CellPresence, fetched fetchResult,
	lrps []auctioneer.LRPStart, tasks []auctioneer.TaskStart, seed int64, retry bool) roundResult {
	var out roundResult
	opts := r.opts.Engine
	opts.Seed = seed
	auction, byID := buildAuction(fetched, lrps, tasks)
	result, err := auctioneer.Run(auction, opts)
	if err == nil && len(result.Failures) > 0 && fetched.reused > 0 && ctx.Err() == nil {
		r.logger.Info("refreshing-every-cell-after-failures", lager.Data{"failures": len(result.Failures), "reused": fetched.reused})
		fetched = r.cellStates(ctx, presences, true)
		out.fetched += fetched.fetched
		auction, byID = buildAuction(fetched, lrps, tasks)
		result, err = auctioneer.Run(auction, opts)
	}
	if err != nil {
		// Options are validated at start and cell ids are unique, so this
		// is a bug; the work is dropped and convergence will retry it.
		r.logger.Error("engine-failed", err, lager.Data{"lrps": len(lrps), "tasks": len(tasks)})
		return out
	}
	for _, f := range result.Failures {
		out.failures = append(out.failures, engineFailure(&auction, f))
	}
	c := r.commit(ctx, &auction, result.Placements, byID)
	again := func(p auctioneer.Placement) {
		if p.Kind == auctioneer.KindTask {
			out.retryTasks = append(out.retryTasks, auction.Tasks[p.Request])
		} else {
			out.retryLRPs = append(out.retryLRPs, auction.LRPs[p.Request])
		}
	}
	for id := range c.errored {
		r.markDirty(id)
	}
	for _, p := range c.kept {
		// A cell answered from the cache may be gone: work its Perform
		// could not reach (Unavailable) is placed again on fresh states
		// rather than assumed started. The BBS's claim keeps an instance
		// from running twice should it have arrived after all.
		if err := c.errored[p.CellID]; err != nil && retry && byID[p.CellID].cached && status.Code(err) == codes.Unavailable {
			again(p)
			continue
		}
		out.placed = append(out.placed, p)
		r.applyPlacement(&auction, p)
	}
	for _, p := range c.refused {
		r.markDirty(p.CellID)
		if retry && byID[p.CellID].cached {
			again(p)
		} else {
			out.failures = append(out.failures, refusedFailure(&auction, p))
		}
	}
	return out
}

// buildAuction is the engine's input: the cells of fetched and the work,
// with the cells by id for the commit.
func buildAuction(fetched fetchResult, lrps []auctioneer.LRPStart, tasks []auctioneer.TaskStart) (auctioneer.Auction, map[string]*liveCell) {
	auction := auctioneer.Auction{LRPs: lrps, Tasks: tasks, Cells: make([]auctioneer.CellState, len(fetched.cells))}
	byID := make(map[string]*liveCell, len(fetched.cells))
	for i := range fetched.cells {
		auction.Cells[i] = fetched.cells[i].state
		byID[fetched.cells[i].state.CellID] = &fetched.cells[i]
	}
	return auction, byID
}

// forgetVanished drops the rep connections of cells no longer present.
func (r *Runner) forgetVanished(presences []*modelsv1.CellPresence) {
	now := make(map[string]struct{}, len(presences))
	for _, p := range presences {
		now[p.GetRepAddress()] = struct{}{}
	}
	for addr := range r.known {
		if _, ok := now[addr]; !ok {
			r.opts.Reps.Forget(addr)
		}
	}
	r.known = now
}

func engineFailure(a *auctioneer.Auction, f auctioneer.Failure) Failure {
	if f.Kind == auctioneer.KindTask {
		return Failure{Kind: f.Kind, TaskGUID: f.TaskGUID, Error: f.Message}
	}
	l := &a.LRPs[f.Request]
	return Failure{Kind: f.Kind, ProcessGUID: l.ProcessGUID, Index: l.Index, Domain: l.Domain, Error: f.Message}
}
