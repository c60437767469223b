package converger

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

	"github.com/gavelhq/gavel/bbs/auctionrequest"
	"github.com/gavelhq/gavel/bbs/store"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Store is the part of the BBS store convergence reads and writes.
type Store interface {
	// Snapshot reads the whole state at one revision.
	Snapshot() *store.Snapshot
	// ApplyChangesInChunks commits guarded changes in batches, telling
	// committed as each run of chunk changes is answered.
	ApplyChangesInChunks(ctx context.Context, changes []store.Change, chunk int, committed store.ChunkCommitted) (store.ChangeResults, error)
	// Keys is the key layout the changes are written to.
	Keys() store.Keys
	// Cache is the watch cache, whose cell removals trigger a pass.
	Cache() *store.Cache
}

// Auctions takes start requests without blocking (auctionrequest.Requester).
type Auctions interface {
	RequestLRPs(reqs ...*auctioneerv1.LRPStartRequest)
	RequestTasks(reqs ...*auctioneerv1.TaskStartRequest)
}

// Cells stops an instance on its cell (cellclient.Client).
type Cells interface {
	StopLRPInstance(ctx context.Context, cell *modelsv1.CellPresence, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) error
}

// Completions takes completed tasks for callback delivery without blocking (taskcallback.Worker).
type Completions interface {
	Submit(task *modelsv1.Task)
}

var _ Store = (*store.Store)(nil)

// Options are a Converger's dependencies.
type Options struct {
	Store       Store
	Auctions    Auctions
	Cells       Cells
	Completions Completions
	Config      Config
	// Clock is the planner's time and drives the interval (default the real clock).
	Clock  clock.Clock
	Logger lager.Logger
	// Metrics records the passes; nil records nothing.
	Metrics *Metrics
	// StopWorkers bounds the concurrent stop calls to cells (default 20).
	StopWorkers int
	// StopTimeout bounds one stop call (default 10 s).
	StopTimeout time.Duration
	// AuctionChunk is how many of a pass's changes commit before their
	// instances are auctioned (default DefaultAuctionChunk).
	AuctionChunk int
}

// DefaultAuctionChunk is the default Options.AuctionChunk: a few of the
// committer's transactions' worth of changes, so a lost cell's first
// replacements reach the auctioneer within a transaction or two.
const DefaultAuctionChunk = 512

// Converger runs convergence passes. It is an ifrit runner meant to run only
// on the bbs lock holder (after the lock in the daemon's ordered group). Its
// methods are safe for concurrent use; passes never overlap.
type Converger struct {
	opts   Options
	cfg    Config
	logger lager.Logger
	mu     sync.Mutex // held for the length of a pass
}

var _ ifrit.Runner = (*Converger)(nil)

// New returns a converger; it does no I/O.
func New(opts Options) (*Converger, error) {
	if opts.Store == nil || opts.Auctions == nil || opts.Cells == nil || opts.Completions == nil {
		return nil, errors.New("converger: store, auctions, cells and completions are required")
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("converger: %w", err)
	}
	if opts.Clock == nil {
		opts.Clock = clock.NewClock()
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("converger")
	}
	if opts.StopWorkers <= 0 {
		opts.StopWorkers = 20
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.AuctionChunk <= 0 {
		opts.AuctionChunk = DefaultAuctionChunk
	}
	return &Converger{opts: opts, cfg: opts.Config.withDefaults(), logger: opts.Logger.Session("converger")}, nil
}

// Triggers of a pass, as metric labels.
const (
	TriggerStart    = "start"
	TriggerInterval = "interval"
	TriggerCellLost = "cell_lost"
	// TriggerCellReturn is the pass Config.CellReturn after the start.
	TriggerCellReturn = "cell_return"
	// TriggerInstanceRemoved is a pass after the row of an instance its
	// desired LRP still wants was removed (a restarted cell found no
	// container for it, or it was retired).
	TriggerInstanceRemoved = "instance_removed"
)

// removalSettle is how long a pass waits after the first removal of a
// wanted instance, so that a burst of removals gathers into one pass.
const removalSettle = 100 * time.Millisecond

// Run runs a pass at once, then every interval, whenever a cell presence
// disappears and shortly after the row of a wanted instance is removed,
// until signalled. A failed pass is logged; the next one plans
// again from scratch.
func (c *Converger) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	lost, unsubscribe := c.opts.Store.Cache().CellRemovals()
	defer unsubscribe()
	removed, unsubscribeRemoved := c.opts.Store.Cache().WantedInstanceRemovals()
	defer unsubscribeRemoved()
	interval := c.cfg.Interval.D()
	timer := c.opts.Clock.NewTimer(interval)
	defer timer.Stop()
	c.logger.Info("started", lager.Data{"interval": interval.String()})
	close(ready)
	c.runPass(ctx, TriggerStart)
	var cellReturn <-chan time.Time // nil (never) unless configured
	if d := c.cfg.CellReturn.D(); d > 0 {
		t := c.opts.Clock.NewTimer(d)
		defer t.Stop()
		cellReturn = t.C()
	}
	for {
		select {
		case <-cellReturn:
			cellReturn = nil
			c.runPass(ctx, TriggerCellReturn)
		case <-timer.C():
			c.runPass(ctx, TriggerInterval)
			timer.Reset(interval)
		case <-lost:
			c.runPass(ctx, TriggerCellLost)
		case <-removed:
			// A restarting cell removes its instances one request at a
			// time: let a burst gather into one pass.
			select {
			case <-c.opts.Clock.After(removalSettle):
			case <-ctx.Done():
				continue
			}
			c.runPass(ctx, TriggerInstanceRemoved)
		case <-ctx.Done():
			c.logger.Info("stopped")
			return nil
		}
	}
}

func (c *Converger) runPass(ctx context.Context, trigger string) {
	if _, err := c.Converge(ctx, trigger); err != nil && ctx.Err() == nil {
		c.logger.Error("pass-failed", err, lager.Data{"trigger": trigger})
	}
}

// Result is what one pass did.
type Result struct {
	Plan *Plan
	// Applied counts committed changes; Conflicts those a concurrent write beat; Failed those etcd did not answer for.
	Applied, Conflicts, Failed int
	// AuctionedLRPs counts instances sent to the auctioneer; AuctionedTasks tasks.
	AuctionedLRPs, AuctionedTasks int
	// Submitted counts tasks handed to the callback worker; Stopped stop calls that succeeded.
	Submitted, Stopped int
	// Timings of the steps.
	SnapshotTime, PlanTime, ApplyTime time.Duration
}

// Converge runs one pass: snapshot, plan, apply. trigger labels the pass's
// metrics (TriggerStart, TriggerInterval, TriggerCellLost). It waits for a
// pass already running. The error joins the failures of the apply step;
// everything that could be done was done.
func (c *Converger) Converge(ctx context.Context, trigger string) (*Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	snap := c.opts.Store.Snapshot()
	t1 := time.Now()
	plan := MakePlan(snap, c.opts.Clock.Now(), c.cfg)
	t2 := time.Now()
	res, err := c.Apply(ctx, plan)
	res.SnapshotTime, res.PlanTime, res.ApplyTime = t1.Sub(start), t2.Sub(t1), time.Since(t2)
	c.opts.Metrics.observe(trigger, res, time.Since(start))
	data := lager.Data{
		"trigger": trigger, "revision": snap.Revision, "duration": time.Since(start).String(),
		"snapshot": res.SnapshotTime.String(), "plan": res.PlanTime.String(), "apply": res.ApplyTime.String(),
		"applied": res.Applied, "conflicts": res.Conflicts, "failed": res.Failed,
		"auctioned_lrps": res.AuctionedLRPs, "auctioned_tasks": res.AuctionedTasks,
		"callbacks": res.Submitted, "stops": len(plan.Stop),
		"missing": plan.Counts.Missing, "suspects_made": len(plan.Suspect), "promoted": len(plan.Promote),
	}
	if plan.Writes() > 0 || len(plan.Stop) > 0 || trigger != TriggerInterval {
		c.logger.Info("pass", data)
	} else {
		c.logger.Debug("pass", data)
	}
	return res, err
}

// Apply carries out a plan: it commits the plan's changes in one batch (each
// guarded by the revisions the plan read; a change a concurrent write beat is
// dropped and counted as a conflict) and sends start requests for the
// instances whose changes committed, a chunk at a time as the chunks commit
// (Options.AuctionChunk), so the first replacements of a lost cell are
// placed while the rest are still being written; the stale instances are
// auctioned first. Then it submits callbacks and stops retired instances on
// their cells. Converge calls it; callers that plan themselves must not run
// it concurrently with a pass. The result is never nil; the error joins what
// failed.
func (c *Converger) Apply(ctx context.Context, plan *Plan) (*Result, error) {
	res := &Result{Plan: plan}
	if len(plan.AuctionStale) > 0 {
		var stale lrpAuctions
		for _, a := range plan.AuctionStale {
			stale.add(a.Desired, a.Row.Index)
		}
		c.opts.Auctions.RequestLRPs(stale.requests()...)
		res.AuctionedLRPs += stale.n
	}
	c.opts.Metrics.actionN(actionAuctionLRP, len(plan.AuctionStale))

	steps := plan.steps(c.opts.Store.Keys())
	changes := make([]store.Change, len(steps))
	for i := range steps {
		changes[i] = steps[i].change
	}
	var submit []*modelsv1.Task
	committed := func(from, to int, applied []bool) {
		var lrps lrpAuctions
		for i := from; i < to; i++ {
			if !applied[i] {
				continue
			}
			s := steps[i]
			res.Applied++
			c.opts.Metrics.action(s.action)
			if s.auction != nil {
				lrps.add(s.auction, s.index)
			}
			if s.submit != nil {
				submit = append(submit, s.submit)
			}
		}
		if lrps.n > 0 {
			c.opts.Auctions.RequestLRPs(lrps.requests()...)
			res.AuctionedLRPs += lrps.n
		}
	}
	var errs []error
	cr, err := c.opts.Store.ApplyChangesInChunks(ctx, changes, c.opts.AuctionChunk, committed)
	if err != nil {
		errs = append(errs, fmt.Errorf("commit the plan: %w", err))
	}
	res.Conflicts, res.Failed = cr.Conflicts, cr.Failed

	if len(plan.AuctionTasks) > 0 {
		reqs := make([]*auctioneerv1.TaskStartRequest, len(plan.AuctionTasks))
		for i, t := range plan.AuctionTasks {
			reqs[i] = auctionrequest.TaskStart(t.Task)
		}
		c.opts.Auctions.RequestTasks(reqs...)
		c.opts.Metrics.actionN(actionAuctionTask, len(reqs))
	}
	res.AuctionedTasks = len(plan.AuctionTasks)

	for _, t := range plan.KickTasks {
		submit = append(submit, t.Task)
	}
	c.opts.Metrics.actionN(actionKickTask, len(plan.KickTasks))
	for _, t := range submit {
		c.opts.Completions.Submit(t)
	}
	res.Submitted = len(submit)
	c.opts.Metrics.tasksKicked(len(submit) + len(plan.AuctionTasks))
	pruned := 0
	for i, s := range steps {
		if cr.Applied[i] && (s.action == actionDeleteTask || s.action == actionFailTask) {
			pruned++
		}
	}
	c.opts.Metrics.tasksPruned(pruned)

	stopped, err := c.stop(ctx, plan.Stop)
	res.Stopped = stopped
	if err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// stop asks the cells to stop retired instances, a bounded number at once.
func (c *Converger) stop(ctx context.Context, stops []Stop) (int, error) {
	if len(stops) == 0 {
		return 0, nil
	}
	var mu sync.Mutex
	var errs []error
	ok := 0
	sem := make(chan struct{}, c.opts.StopWorkers)
	var wg sync.WaitGroup
	for _, s := range stops {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sctx, cancel := context.WithTimeout(ctx, c.opts.StopTimeout)
			defer cancel()
			err := c.opts.Cells.StopLRPInstance(sctx, s.Cell, s.Row.LRP.GetKey(), s.Row.LRP.GetInstanceKey())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if len(errs) < 5 {
					errs = append(errs, fmt.Errorf("retire %s/%d (%s): %w", s.Row.ProcessGUID, s.Row.Index, s.Reason, err))
				}
				return
			}
			ok++
			c.opts.Metrics.action(actionStop)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return ok, fmt.Errorf("%d of %d stops failed: %w", len(stops)-ok, len(stops), errors.Join(errs...))
	}
	return ok, nil
}
