package auctionrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"

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

// Runner runs auctions, one at a time; see the package doc.
type Runner struct {
	opts    Options
	logger  lager.Logger
	metrics *Metrics

	mu    sync.Mutex // one auction at a time; guards seq and known
	seq   int64
	known map[string]struct{} // rep addresses seen in the last fetch
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
	}, nil
}

// Run waits for work and runs an auction per wake-up until signalled; a
// signal cancels the auction in flight. When the cell list cannot be read
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
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.opts.Batch.Wake():
		}
		if _, err := r.RunAuction(ctx); err != nil {
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
	// Cells is how many cells took part; FailedCells, EvacuatingCells and
	// MismatchedCells were left out (counts of the last attempt).
	Cells, FailedCells, EvacuatingCells, MismatchedCells int
	// Placements is the work the cells took, in placement order.
	Placements []auctioneer.Placement
	// Failures is the work written back to the BBS as failed.
	Failures []Failure
}

// RunAuction runs one auction: it fetches the cell states, drains the
// batch, places the work, sends it to the cells and writes the failures
// back. Calls are serialised. An empty batch gives an empty report and
// fetches nothing. It returns an error, leaving the work in the batch,
// only when the cell list cannot be read or ctx ends before the drain.
func (r *Runner) RunAuction(ctx context.Context) (Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rep Report
	if l, t := r.opts.Batch.Len(); l+t == 0 {
		return rep, nil
	}
	start := r.opts.Clock.Now()

	var fetched fetchResult
	for rep.Attempts < r.opts.FetchAttempts {
		rep.Attempts++
		presences, err := r.opts.Cells.Cells(ctx)
		if err != nil {
			return rep, fmt.Errorf("list cells: %w", err)
		}
		r.forgetVanished(presences)
		fetchStart := r.opts.Clock.Now()
		fetched = r.fetchStates(ctx, presences)
		r.metrics.FetchStatesDuration.Observe(r.opts.Clock.Since(fetchStart).Seconds())
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
	rep.EvacuatingCells, rep.MismatchedCells = fetched.evacuating, fetched.mismatched

	lrps, tasks := r.opts.Batch.Drain()
	r.metrics.BatchSize.Observe(float64(len(lrps) + len(tasks)))
	auction := auctioneer.Auction{LRPs: lrps, Tasks: tasks, Cells: make([]auctioneer.CellState, len(fetched.cells))}
	byID := make(map[string]*liveCell, len(fetched.cells))
	for i := range fetched.cells {
		auction.Cells[i] = fetched.cells[i].state
		byID[fetched.cells[i].state.CellID] = &fetched.cells[i]
	}
	opts := r.opts.Engine
	opts.Seed += r.seq
	r.seq++
	result, err := auctioneer.Run(auction, opts)
	if err != nil {
		// Options are validated at start and cell ids are unique, so this
		// is a bug; the work is dropped and convergence will retry it.
		r.logger.Error("engine-failed", err, lager.Data{"lrps": len(lrps), "tasks": len(tasks)})
		return rep, nil
	}
	for _, f := range result.Failures {
		rep.Failures = append(rep.Failures, engineFailure(&auction, f))
	}
	placed, refused := r.commit(ctx, &auction, result.Placements, byID)
	rep.Placements = placed
	rep.Failures = append(rep.Failures, refused...)
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
		"lrps": len(lrps), "tasks": len(tasks), "placed": len(rep.Placements), "failed": len(rep.Failures),
		"seed": opts.Seed, "duration": r.opts.Clock.Since(start).String(),
	})
	return rep, nil
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
