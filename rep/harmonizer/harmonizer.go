package harmonizer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/workers"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/executor"
)

// Defaults for Options.
const (
	// DefaultBulkSyncInterval is the time between two bulk syncs.
	DefaultBulkSyncInterval = 30 * time.Second
	// DefaultCallTimeout bounds one BBS call.
	DefaultCallTimeout = 10 * time.Second
	// DefaultMaxBatch caps the claims or starts sent in one BBS call.
	DefaultMaxBatch = 256
	// DefaultEvacuationPollInterval is the time between two syncs of an evacuating cell (Diego's 10 s).
	DefaultEvacuationPollInterval = 10 * time.Second
)

// Failure reasons the rep reports.
const (
	// ReasonFailedToRun completes a task whose container could not be run.
	ReasonFailedToRun = "failed to run container"
	// ReasonCellLostTask completes a task RUNNING on this cell without a container.
	ReasonCellLostTask = "cell lost the task"
)

// BBS is what the rep calls on the BBS; *bbs/client.Client implements it.
// Errors unwrap to the sentinels of bbs/models.
type BBS interface {
	BatchClaimActualLRPs(ctx context.Context, in *bbsv1.BatchClaimActualLRPsRequest, opts ...grpc.CallOption) (*bbsv1.BatchClaimActualLRPsResponse, error)
	BatchStartActualLRPs(ctx context.Context, in *bbsv1.BatchStartActualLRPsRequest, opts ...grpc.CallOption) (*bbsv1.BatchStartActualLRPsResponse, error)
	CrashActualLRP(ctx context.Context, in *bbsv1.CrashActualLRPRequest, opts ...grpc.CallOption) (*bbsv1.CrashActualLRPResponse, error)
	RemoveActualLRP(ctx context.Context, in *bbsv1.RemoveActualLRPRequest, opts ...grpc.CallOption) (*bbsv1.RemoveActualLRPResponse, error)
	GetDesiredLRP(ctx context.Context, in *bbsv1.GetDesiredLRPRequest, opts ...grpc.CallOption) (*bbsv1.GetDesiredLRPResponse, error)
	ListActualLRPs(ctx context.Context, in *bbsv1.ListActualLRPsRequest, opts ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error)
	StartTask(ctx context.Context, in *bbsv1.StartTaskRequest, opts ...grpc.CallOption) (*bbsv1.StartTaskResponse, error)
	GetTask(ctx context.Context, in *bbsv1.GetTaskRequest, opts ...grpc.CallOption) (*bbsv1.GetTaskResponse, error)
	CompleteTask(ctx context.Context, in *bbsv1.CompleteTaskRequest, opts ...grpc.CallOption) (*bbsv1.CompleteTaskResponse, error)
	RejectTask(ctx context.Context, in *bbsv1.RejectTaskRequest, opts ...grpc.CallOption) (*bbsv1.RejectTaskResponse, error)
	ListTasks(ctx context.Context, in *bbsv1.ListTasksRequest, opts ...grpc.CallOption) (*bbsv1.ListTasksResponse, error)
	EvacuateClaimedActualLRP(ctx context.Context, in *bbsv1.EvacuateClaimedActualLRPRequest, opts ...grpc.CallOption) (*bbsv1.EvacuateClaimedActualLRPResponse, error)
	EvacuateRunningActualLRP(ctx context.Context, in *bbsv1.EvacuateRunningActualLRPRequest, opts ...grpc.CallOption) (*bbsv1.EvacuateRunningActualLRPResponse, error)
	EvacuateStoppedActualLRP(ctx context.Context, in *bbsv1.EvacuateStoppedActualLRPRequest, opts ...grpc.CallOption) (*bbsv1.EvacuateStoppedActualLRPResponse, error)
	EvacuateCrashedActualLRP(ctx context.Context, in *bbsv1.EvacuateCrashedActualLRPRequest, opts ...grpc.CallOption) (*bbsv1.EvacuateCrashedActualLRPResponse, error)
	ReclaimEvacuatingActualLRP(ctx context.Context, in *bbsv1.ReclaimEvacuatingActualLRPRequest, opts ...grpc.CallOption) (*bbsv1.ReclaimEvacuatingActualLRPResponse, error)
	BatchEvacuateActualLRPs(ctx context.Context, in *bbsv1.BatchEvacuateActualLRPsRequest, opts ...grpc.CallOption) (*bbsv1.BatchEvacuateActualLRPsResponse, error)
}

// Metrics are the harmonizer's Prometheus metrics, shared by every cell of a
// process.
type Metrics struct {
	// BBSErrors counts failed BBS calls by call name and gRPC code.
	BBSErrors *prometheus.CounterVec
	// BulkSyncDuration observes the duration of bulk syncs.
	BulkSyncDuration prometheus.Histogram
	// BatchCalls counts batched BBS calls (claims, starts, evacuations) by
	// call; BatchItems counts the requests they carried, so their ratio is
	// the mean batch size.
	BatchCalls, BatchItems *prometheus.CounterVec
	// RunBeforeClaim counts the first reports of instances run before their
	// claim (claim_delay), by outcome: "started" (the start was the first
	// write), "claimed" (claimed after the delay, or before a crash or an
	// evacuation) and "refused" (the BBS refused the start or claim, or the
	// claim named another run info: the container was stopped).
	RunBeforeClaim *prometheus.CounterVec
}

// claimMark is the state of a container run before its claim (see
// Harmonizer.unclaimed).
type claimMark uint8

const (
	// markUnreported: neither its claim nor its start is accepted yet.
	markUnreported claimMark = iota
	// markRefused: the BBS refused its start or claim and it is stopping;
	// nothing is reported for it again, and its completion removes nothing.
	markRefused
)

// refused says whether the container's start or claim was refused.
func (h *Harmonizer) refused(guid string) bool {
	m, ok := h.unclaimed.Load(guid)
	return ok && m.(claimMark) == markRefused
}

// refuse marks a container run before its claim as refused, counts it and
// stops it.
func (h *Harmonizer) refuse(c executor.Container) {
	h.unclaimed.Store(c.Guid, markRefused)
	h.opts.Metrics.RunBeforeClaim.WithLabelValues(runBeforeClaimRefused).Inc()
	h.stop(c)
}

// Outcomes of RunBeforeClaim.
const (
	runBeforeClaimStarted = "started"
	runBeforeClaimClaimed = "claimed"
	runBeforeClaimRefused = "refused"
)

// NewMetrics creates the metrics and registers them on reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BBSErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_rep_bbs_call_errors_total", Help: "BBS calls of the rep that failed, by call and gRPC code (DeadlineExceeded, Unavailable, FailedPrecondition for a refused transition, ...).",
		}, []string{"call", "code"}),
		BulkSyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gavel_rep_bulk_sync_duration_seconds", Help: "Duration of the rep's bulk syncs with the BBS.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		BatchCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_rep_bbs_batch_calls_total", Help: "Batched BBS calls of the rep (BatchClaimActualLRPs, BatchStartActualLRPs, BatchEvacuateActualLRPs), by call.",
		}, []string{"call"}),
		BatchItems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_rep_bbs_batch_items_total", Help: "Requests carried by the rep's batched BBS calls, by call; divided by gavel_rep_bbs_batch_calls_total, the mean batch.",
		}, []string{"call"}),
		RunBeforeClaim: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_rep_run_before_claim_total",
			Help: "First reports of LRP instances the rep ran before claiming them (claim_delay), by outcome: started (no claim needed), claimed (after the delay, or before a crash or evacuation), refused (stopped).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.BBSErrors, m.BulkSyncDuration, m.BatchCalls, m.BatchItems, m.RunBeforeClaim)
	}
	return m
}

// Options configure a Harmonizer. CellID, Executor and BBS are required.
type Options struct {
	CellID string
	// Zone is reported with each start.
	Zone     string
	Executor *executor.Executor
	BBS      BBS
	// BulkSyncInterval is the time between bulk syncs; default 30 s.
	BulkSyncInterval time.Duration
	// CallTimeout bounds each BBS call; default 10 s.
	CallTimeout time.Duration
	// MaxBatch caps claims or starts per BBS call; default 256.
	MaxBatch int
	// Clock drives the bulk sync ticker; default the real clock.
	Clock clock.Clock
	// Logger; default a logger with no sinks.
	Logger lager.Logger
	// Metrics, shared between cells; default unregistered metrics.
	Metrics *Metrics
	// Evacuation is the cell's evacuation flag; once set, containers are
	// evacuated (see evacuation.go). Nil: never.
	Evacuation *rep.Evacuation
	// EvacuationPollInterval is the time between syncs while evacuating; default 10 s.
	EvacuationPollInterval time.Duration
	// RunInfo caches the desired LRPs fetched to run instances, shared by the
	// cells of a process; default a cache of this harmonizer's own.
	RunInfo *RunInfoCache
	// Workers run the operations and batched calls, shared by the cells of
	// a process; default workers of this harmonizer's own.
	Workers *workers.Pool
	// Batches, when set, carries the claims and starts in calls shared with
	// the other cells of the process (see Batches; it must use this
	// harmonizer's BBS); nil: calls of this harmonizer's own, one under
	// way at a time, with BBS, CallTimeout and MaxBatch.
	Batches *Batches
	// ClaimDelay, when positive, runs a reserved LRP instance at once with
	// the run info its auction named, and claims it only if it is not
	// running within the delay: an instance that starts sooner reports its
	// start as its first write (UNCLAIMED → RUNNING, which the BBS allows
	// as Diego's does, naming the run info it runs), one BBS write and call
	// fewer. Zero (the default) claims before running, as Diego's rep does.
	// See runBeforeClaim.
	ClaimDelay time.Duration
}

// Harmonizer is an ifrit runner keeping the BBS and the executor in
// agreement; see the package doc.
type Harmonizer struct {
	opts   Options
	exec   *executor.Executor
	bbs    BBS
	logger lager.Logger
	queue  *queue
	claims *batcher[*claimItem]
	starts *batcher[*bbsv1.StartActualLRPRequest]
	evacs  *batcher[*evacItem]

	baseCtx atomic.Pointer[context.Context]
	syncing atomic.Bool
	syncs   atomic.Int64
	frozen  atomic.Bool // set by Reclaim: containers are no longer processed
	// unclaimed holds the containers run before their claim (ClaimDelay)
	// until a claim or a start of theirs is accepted, by guid, each with
	// its claimMark.
	unclaimed sync.Map
	// inFlight is read-held by every container operation, so Reclaim can wait for them.
	inFlight sync.RWMutex
}

// New returns a harmonizer. It does no I/O.
func New(opts Options) *Harmonizer {
	if opts.BulkSyncInterval <= 0 {
		opts.BulkSyncInterval = DefaultBulkSyncInterval
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Clock == nil {
		opts.Clock = clock.NewClock()
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("harmonizer")
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.Evacuation == nil {
		opts.Evacuation = &rep.Evacuation{}
	}
	if opts.EvacuationPollInterval <= 0 {
		opts.EvacuationPollInterval = DefaultEvacuationPollInterval
	}
	if opts.RunInfo == nil {
		opts.RunInfo = NewRunInfoCache(0)
	}
	if opts.Workers == nil {
		opts.Workers = workers.New(0)
	}
	h := &Harmonizer{
		opts: opts, exec: opts.Executor, bbs: opts.BBS, queue: newQueue(opts.Workers),
		logger: opts.Logger.Session("harmonizer", lager.Data{"cell_id": opts.CellID}),
	}
	bg := context.Background()
	h.baseCtx.Store(&bg)
	batches := opts.Batches
	if batches == nil { // calls of its own, one of each kind at a time, ended with the harmonizer
		batches = newBatches(BatchesOptions{BBS: opts.BBS, Metrics: opts.Metrics, Workers: opts.Workers,
			CallTimeout: opts.CallTimeout, MaxBatch: opts.MaxBatch, MaxInFlight: 1}, h.base)
	}
	h.claims, h.starts = batches.claims, batches.starts
	h.evacs = &batcher[*evacItem]{call: h.batchEvacuate, max: min(opts.MaxBatch, models.MaxEvacuationBatch), ctx: h.base, workers: opts.Workers}
	return h
}

func (h *Harmonizer) base() context.Context { return *h.baseCtx.Load() }

// Syncs returns how many bulk syncs have completed.
func (h *Harmonizer) Syncs() int64 { return h.syncs.Load() }

// Run subscribes to the executor's events, closes ready, runs a bulk sync at
// once and then every interval, and turns events into operations. On a signal
// it cancels the operations in flight, waits for them and returns nil.
func (h *Harmonizer) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if h.opts.CellID == "" || h.exec == nil || h.bbs == nil {
		return errors.New("harmonizer: CellID, Executor and BBS are required")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.baseCtx.Store(&ctx)
	sub := h.exec.Subscribe()
	defer sub.Close()
	ticker := h.opts.Clock.NewTicker(h.opts.BulkSyncInterval)
	defer func() { ticker.Stop() }()
	evacuate := h.opts.Evacuation.Started()
	close(ready)
	h.startSync(ctx)
	for {
		select {
		case ev := <-sub.Events():
			h.handle(ctx, ev)
		case <-ticker.C():
			h.startSync(ctx)
		case <-evacuate:
			// Draining: evacuate every container now, then poll the BBS
			// for the replacements at the evacuation interval.
			evacuate = nil
			h.logger.Info("evacuating")
			ticker.Stop()
			ticker = h.opts.Clock.NewTicker(h.opts.EvacuationPollInterval)
			h.startSync(ctx)
		case <-signals:
			cancel()
			h.queue.wait()
			for h.syncing.Load() {
				time.Sleep(5 * time.Millisecond)
			}
			return nil
		}
	}
}

func (h *Harmonizer) handle(ctx context.Context, ev executor.Event) {
	switch ev.(type) {
	case executor.ContainerReserved, executor.ContainerRunning, executor.ContainerRoutableChanged, executor.ContainerCompleted:
		h.enqueueProcess(ctx, ev.Snapshot().Guid)
	}
}

// enqueueProcess queues the operation that brings the BBS in line with
// container guid's state (see processAsync).
func (h *Harmonizer) enqueueProcess(ctx context.Context, guid string) {
	h.queue.pushAsync(ctx, guid, func(ctx context.Context, done func()) { h.processAsync(ctx, guid, done) })
}

func (h *Harmonizer) startSync(ctx context.Context) {
	if !h.syncing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer h.syncing.Store(false)
		if err := h.Sync(ctx); err != nil && ctx.Err() == nil {
			h.logger.Error("bulk-sync-failed", err)
		}
	}()
}

// countBatch counts in m one batched BBS call carrying n requests.
func countBatch(m *Metrics, call string, n int) {
	m.BatchCalls.WithLabelValues(call).Inc()
	m.BatchItems.WithLabelValues(call).Add(float64(n))
}

// observe counts a failed BBS call and returns err.
func (h *Harmonizer) observe(call string, err error) error {
	return observe(h.opts.Metrics, call, err)
}

// observe counts a failed BBS call in m and returns err.
func observe(m *Metrics, call string, err error) error {
	if err != nil {
		m.BBSErrors.WithLabelValues(call, models.Code(err).String()).Inc()
	}
	return err
}

func (h *Harmonizer) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.opts.CallTimeout)
}

// processAsync brings the BBS in line with one container's current state
// and then calls done: an LRP's claim or start waits for its batched call
// without holding a goroutine.
func (h *Harmonizer) processAsync(ctx context.Context, guid string, done func()) {
	h.withContainerAsync(ctx, guid, h.processContainerAsync, done)
}

// withContainer runs op on the container's current state, unless the
// harmonizer is frozen or the container is gone (deleted or expired
// meanwhile); Reclaim waits for it.
func (h *Harmonizer) withContainer(ctx context.Context, guid string, op func(context.Context, executor.Container)) {
	ended := make(chan struct{})
	h.withContainerAsync(ctx, guid, func(ctx context.Context, c *executor.Container, done func()) {
		defer done()
		op(ctx, *c)
	}, func() { close(ended) })
	<-ended
}

// withContainerAsync is withContainer for an op that ends when it calls its
// done; done is called after it, or at once when op does not run. op gets
// the state as a pointer: an operation that waits for a batched call keeps
// it for its continuation, and one copy on the heap serves them all.
func (h *Harmonizer) withContainerAsync(ctx context.Context, guid string, op func(context.Context, *executor.Container, func()), done func()) {
	h.inFlight.RLock()
	release := func() {
		h.inFlight.RUnlock()
		done()
	}
	if h.frozen.Load() {
		release()
		return
	}
	c, err := h.exec.Get(guid)
	if err != nil {
		release()
		return
	}
	op(ctx, &c, release)
}

// processContainerAsync brings the BBS in line with container c and then
// calls done, on any goroutine.
func (h *Harmonizer) processContainerAsync(ctx context.Context, c *executor.Container, done func()) {
	evacuating := h.opts.Evacuation.Evacuating()
	if rep.IsLRP(*c) && !evacuating {
		h.processLRP(ctx, c, done)
		return
	}
	defer done()
	switch {
	case rep.IsLRP(*c):
		h.evacuateLRP(ctx, *c)
	case rep.IsTask(*c) && evacuating:
		h.evacuateTask(ctx, *c)
	case rep.IsTask(*c):
		h.processTask(ctx, *c)
	}
}

func (h *Harmonizer) delete(ctx context.Context, c executor.Container) {
	h.unclaimed.Delete(c.Guid)
	if err := h.exec.Delete(ctx, c.Guid); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
		h.logger.Error("delete-container-failed", err, lager.Data{"guid": c.Guid})
	}
}

// processLRP brings the BBS in line with LRP container c and then calls
// done. A reserved container's claim and a running one's start wait for
// their batched calls without a goroutine; the rest runs before it returns.
func (h *Harmonizer) processLRP(ctx context.Context, c *executor.Container, done func()) {
	switch c.State {
	case executor.StateReserved:
		if h.runBeforeClaim(ctx, *c) {
			done()
			return
		}
		h.claimAndRun(ctx, c, done)
	case executor.StateRunning:
		if h.refused(c.Guid) {
			done() // stopping after a refusal
			return
		}
		_, unclaimed := h.unclaimed.Load(c.Guid)
		h.reportStartAsync(ctx, c, func(err error) {
			defer done()
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, models.ErrInvalidTransition) && unclaimed:
				h.lrpLogger(*c).Info("start-without-claim-refused-stopping", lager.Data{"error": err.Error()})
			case errors.Is(err, models.ErrInvalidTransition):
				h.lrpLogger(*c).Info("start-refused-stopping", lager.Data{"error": err.Error()})
				_ = h.exec.Stop(c.Guid)
			case err != nil:
				h.lrpLogger(*c).Error("start-failed", err)
			}
		})
	default:
		defer done()
		h.processSettledLRP(ctx, *c)
	}
}

// lrpLogger is the logger of an LRP container's operation; it is built only
// to log, as most containers pass through without a line.
func (h *Harmonizer) lrpLogger(c executor.Container) lager.Logger {
	key := rep.ActualLRPKey(c)
	return h.logger.WithData(lager.Data{"process_guid": key.GetProcessGuid(), "index": key.GetIndex(), "instance_guid": c.Guid})
}

// claimAndRun claims a reserved LRP container and runs it, then calls done.
// A claim that timed out or met an overloaded BBS may have been committed:
// giving up would strand a CLAIMED row without a container until a bulk
// sync removes it and convergence creates and auctions it again. A claim
// repeats safely (same instance key), so it is retried.
func (h *Harmonizer) claimAndRun(ctx context.Context, c *executor.Container, done func()) {
	key, ik := rep.ActualLRPKey(*c), rep.InstanceKey(*c, h.opts.CellID)
	claim := &claimItem{req: &bbsv1.ClaimActualLRPRequest{ProcessGuid: key.GetProcessGuid(), Index: key.GetIndex(), InstanceKey: ik}}
	submit := func(result func(error)) { h.claims.submit(ctx, claim, result) }
	retryTransientAsync(ctx, submit, func(err error) {
		// The claim's result arrives on its batch's goroutine; fetching
		// the run info and running the container go to a worker.
		h.opts.Workers.Go(func() {
			defer done()
			if err != nil {
				h.lrpLogger(*c).Info("claim-refused", lager.Data{"error": err.Error()})
				h.delete(ctx, *c)
				return
			}
			var desired *modelsv1.DesiredLRP
			err = retryTransient(ctx, func() (err error) {
				desired, err = h.desiredLRP(ctx, key.GetProcessGuid(), claim.resp.GetDesiredEpoch(), claim.resp.GetRunInfoRevision())
				return err
			})
			if err == nil {
				req := runRequestForLRP(desired, int(key.GetIndex()), c.Guid)
				err = h.exec.Run(ctx, c.Guid, req)
				if errors.Is(err, executor.ErrInvalidTransition) {
					return // already run (a repeated operation)
				}
			}
			if err != nil {
				h.lrpLogger(*c).Error("run-failed", err)
				h.removeLRP(ctx, key, ik)
				h.delete(ctx, *c)
			}
		})
	})
}

// processSettledLRP handles an LRP container that is starting (run before
// its claim) or completed.
func (h *Harmonizer) processSettledLRP(ctx context.Context, c executor.Container) {
	key, ik := rep.ActualLRPKey(c), rep.InstanceKey(c, h.opts.CellID)
	switch c.State {
	case executor.StateInitializing, executor.StateCreated:
		h.claimIfUnreported(ctx, c)
	case executor.StateCompleted:
		if m, ok := h.unclaimed.Load(c.Guid); ok {
			if c.RunResult.Stopped || m.(claimMark) == markRefused {
				// Stopped before it was claimed or started, or refused: the
				// row is not this cell's to remove.
				h.delete(ctx, c)
				return
			}
			// Crashed before its first report: claim it, so the crash is
			// recorded (and counted) as Diego's order would record it.
			if err := h.claimNow(ctx, c); err != nil {
				h.lrpLogger(c).Info("claim-before-crash-refused", lager.Data{"error": err.Error()})
				if !transient(err) {
					h.delete(ctx, c)
				}
				return
			}
		}
		if c.RunResult.Stopped {
			h.removeLRP(ctx, key, ik)
		} else {
			cctx, cancel := h.callCtx(ctx)
			_, err := h.bbs.CrashActualLRP(cctx, &bbsv1.CrashActualLRPRequest{ActualLrpKey: key, InstanceKey: ik, ErrorMessage: crashReason(c.RunResult)})
			cancel()
			if h.observe("CrashActualLRP", err) != nil {
				h.lrpLogger(c).Info("crash-not-recorded", lager.Data{"error": err.Error()})
			}
			if transient(err) {
				// Keep the container so the next bulk sync reports the crash
				// (and the crash count, which paces restarts, stays right).
				return
			}
		}
		h.delete(ctx, c)
	}
}

// reportStart is reportStartAsync, waiting for its result.
func (h *Harmonizer) reportStart(ctx context.Context, c executor.Container) error {
	result := make(chan error, 1)
	h.reportStartAsync(ctx, &c, func(err error) { result <- err })
	return <-result
}

// reportStartAsync sends a running LRP container's start report and gives
// its result to done, retrying a start lost to an overloaded BBS (it would
// otherwise wait for the next bulk sync). For a container run before its
// claim, an accepted start ends its mark, and a refused one marks it
// refused and stops it: its completion then removes nothing, the row never
// having been this cell's. done runs on the batch's goroutine, or on a
// worker when the start failed.
func (h *Harmonizer) reportStartAsync(ctx context.Context, c *executor.Container, done func(error)) {
	req := h.startRequest(*c)
	submit := func(result func(error)) { h.starts.submit(ctx, req, result) }
	retryTransientAsync(ctx, submit, func(err error) {
		report := func() {
			if ctx.Err() == nil {
				h.settleUnclaimed(*c, err)
			}
			done(err)
		}
		if err != nil {
			h.opts.Workers.Go(report) // a refusal stops the container
			return
		}
		report()
	})
}

// settleUnclaimed ends the mark of a container run before its claim once
// its start was accepted (err nil), or marks it refused and stops it.
func (h *Harmonizer) settleUnclaimed(c executor.Container, err error) {
	if _, unclaimed := h.unclaimed.Load(c.Guid); !unclaimed {
		return
	}
	switch {
	case err == nil:
		h.unclaimed.Delete(c.Guid)
		h.opts.Metrics.RunBeforeClaim.WithLabelValues(runBeforeClaimStarted).Inc()
	case errors.Is(err, models.ErrInvalidTransition):
		h.refuse(c)
	}
}

// startRequest is the start report of a running LRP container. A
// container run before its claim names the run info it runs.
func (h *Harmonizer) startRequest(c executor.Container) *bbsv1.StartActualLRPRequest {
	routable := c.Routable
	req := &bbsv1.StartActualLRPRequest{
		ActualLrpKey: rep.ActualLRPKey(c), InstanceKey: rep.InstanceKey(c, h.opts.CellID), NetInfo: rep.NetInfo(c),
		Routable: &routable, AvailabilityZone: h.opts.Zone,
	}
	if _, ok := h.unclaimed.Load(c.Guid); ok {
		if epoch, rev, ok := rep.RunInfoVersion(c); ok {
			req.RunInfoVersion = &bbsv1.RunInfoVersion{DesiredEpoch: epoch, RunInfoRevision: rev}
		}
	}
	return req
}

// runBeforeClaim runs a reserved LRP container at once, without claiming
// it, when the cell has a ClaimDelay, the container's auction named the run
// info version to run and the cell is not evacuating; it reports whether it
// took the container. The container is claimed after ClaimDelay unless a
// report of its own got there first (see claimIfUnreported): a container
// that starts sooner reports its start as its first write, naming the run
// info it runs, and the BBS refuses it (the container is then stopped) if
// the instance is another cell's or the desired LRP's run info changed.
//
// Until its claim or start is accepted the container is held in
// h.unclaimed: a bulk sync leaves it alone, a crash is reported after a
// claim, and an evacuation claims or starts it first. A rep restarted in
// that window forgets the mark; its bulk sync takes a container placed
// within the last 30 s back (see runBeforeClaimAndForgotten) rather than
// deleting it as unwanted.
func (h *Harmonizer) runBeforeClaim(ctx context.Context, c executor.Container) bool {
	if h.opts.ClaimDelay <= 0 || h.opts.Evacuation.Evacuating() {
		return false
	}
	epoch, rev, ok := rep.RunInfoVersion(c)
	if !ok {
		return false
	}
	key := rep.ActualLRPKey(c)
	var desired *modelsv1.DesiredLRP
	err := retryTransient(ctx, func() (err error) {
		desired, err = h.desiredLRP(ctx, key.GetProcessGuid(), epoch, rev)
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			h.logger.Info("run-info-unavailable", lager.Data{"process_guid": key.GetProcessGuid(), "index": key.GetIndex(), "error": err.Error()})
			h.delete(ctx, c)
		}
		return true
	}
	h.unclaimed.Store(c.Guid, markUnreported)
	req := runRequestForLRP(desired, int(key.GetIndex()), c.Guid)
	if err := h.exec.Run(ctx, c.Guid, req); err != nil {
		if errors.Is(err, executor.ErrInvalidTransition) {
			return true // already run (a repeated operation)
		}
		h.logger.Error("run-failed", err, lager.Data{"process_guid": key.GetProcessGuid(), "index": key.GetIndex(), "instance_guid": c.Guid})
		h.delete(ctx, c)
		return true
	}
	// After the delay, a container still initializing is claimed (see
	// claimIfUnreported); a timer, not a goroutine, waits. Only the claim:
	// a container already running reports its start from its own event, so
	// the timer must not send that start a second time while it is in flight.
	guid := c.Guid
	time.AfterFunc(h.opts.ClaimDelay, func() {
		if _, ok := h.unclaimed.Load(guid); ok {
			h.queue.pushUnlessWaiting(h.base(), guid, func(ctx context.Context) { h.claimIfStillStarting(ctx, guid) })
		}
	})
	return true
}

// processIfUnclaimed processes a container run before its claim unless its
// claim or start was accepted meanwhile.
func (h *Harmonizer) processIfUnclaimed(ctx context.Context, guid string) {
	if m, ok := h.unclaimed.Load(guid); ok && m.(claimMark) == markUnreported {
		ended := make(chan struct{})
		h.processAsync(ctx, guid, func() { close(ended) })
		<-ended
	}
}

// claimIfStillStarting claims a container run before its claim that is
// still initializing or created (see claimIfUnreported); nothing else.
func (h *Harmonizer) claimIfStillStarting(ctx context.Context, guid string) {
	h.withContainer(ctx, guid, func(ctx context.Context, c executor.Container) {
		if c.State == executor.StateInitializing || c.State == executor.StateCreated {
			h.claimIfUnreported(ctx, c)
		}
	})
}

// claimIfUnreported claims a container run before its claim that has made
// no report yet (it is initializing or created) once ClaimDelay has passed
// since its reservation. A refused claim (the instance is another cell's,
// or gone) stops it; a claim naming another run info version than the one
// it runs stops it too, and the stopped container's report removes the
// instance, for convergence to place again.
func (h *Harmonizer) claimIfUnreported(ctx context.Context, c executor.Container) {
	if m, ok := h.unclaimed.Load(c.Guid); !ok || m.(claimMark) != markUnreported || time.Since(c.AllocatedAt) < h.opts.ClaimDelay {
		return
	}
	if err := h.claimNow(ctx, c); err != nil {
		if !transient(err) && !errors.Is(err, errStoppedStaleRun) && ctx.Err() == nil {
			h.logger.Info("claim-refused", lager.Data{"instance_guid": c.Guid, "error": err.Error()})
			h.unclaimed.Store(c.Guid, markRefused) // counted by claimNow
			h.stop(c)
		}
	}
}

// errStoppedStaleRun says claimNow stopped a container that runs another
// run info version than the claimed instance's.
var errStoppedStaleRun = errors.New("stopped: the container runs an outdated run info")

// claimNow claims a container run before its claim and takes it out of
// h.unclaimed once the claim is accepted. When the claim names another run
// info version than the one the container runs, it stops the container and
// says so in its error.
func (h *Harmonizer) claimNow(ctx context.Context, c executor.Container) error {
	key, ik := rep.ActualLRPKey(c), rep.InstanceKey(c, h.opts.CellID)
	claim := &claimItem{req: &bbsv1.ClaimActualLRPRequest{ProcessGuid: key.GetProcessGuid(), Index: key.GetIndex(), InstanceKey: ik}}
	if err := retryTransient(ctx, func() error { return h.claims.do(ctx, claim) }); err != nil {
		if !transient(err) && ctx.Err() == nil {
			h.opts.Metrics.RunBeforeClaim.WithLabelValues(runBeforeClaimRefused).Inc()
		}
		return err
	}
	h.unclaimed.Delete(c.Guid)
	epoch, rev, _ := rep.RunInfoVersion(c)
	if claim.resp.GetDesiredEpoch() != epoch || (claim.resp.GetRunInfoRevision() != 0 && claim.resp.GetRunInfoRevision() != rev) {
		h.opts.Metrics.RunBeforeClaim.WithLabelValues(runBeforeClaimRefused).Inc()
		h.stop(c)
		return fmt.Errorf("%w: claimed instance %s/%d runs run info %s@%d, and the desired LRP's is %s@%d",
			errStoppedStaleRun, key.GetProcessGuid(), key.GetIndex(), epoch, rev, claim.resp.GetDesiredEpoch(), claim.resp.GetRunInfoRevision())
	}
	h.opts.Metrics.RunBeforeClaim.WithLabelValues(runBeforeClaimClaimed).Inc()
	return nil
}

// stop stops a container; its completion is processed as any other.
func (h *Harmonizer) stop(c executor.Container) {
	if err := h.exec.Stop(c.Guid); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
		h.logger.Error("stop-failed", err, lager.Data{"guid": c.Guid})
	}
}

// Retries of a claim, run-info fetch or start report that failed
// transiently: after 0.5 s, 1 s and 2 s.
const (
	retryDelay    = 500 * time.Millisecond
	maxRetryDelay = 2 * time.Second
)

// retryTransient calls f, and again after each back-off delay while it
// fails transiently; it returns f's last error, or ctx's once it is done.
// It is retryTransientAsync's policy for a caller that waits: kept apart
// because it is on the path of every placed instance (the run-info fetch),
// where a call that succeeds at once must cost nothing but the call.
func retryTransient(ctx context.Context, f func() error) error {
	err := f()
	for delay := retryDelay; transient(err) && delay <= maxRetryDelay; delay *= 2 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		err = f()
	}
	return err
}

// retryTransientAsync is retryTransient for a call that reports to a
// callback: attempt makes the call, and done gets its last error, or ctx's
// once ctx ends during a back-off. Nothing waits on a goroutine in between.
func retryTransientAsync(ctx context.Context, attempt func(result func(error)), done func(error)) {
	delay := retryDelay
	var try func()
	try = func() {
		attempt(func(err error) {
			if !transient(err) || delay > maxRetryDelay {
				done(err)
				return
			}
			wait := delay
			delay *= 2
			// Whichever of the back-off and ctx's end comes first goes on;
			// a back-off that ends later does nothing.
			var first atomic.Bool
			stop := context.AfterFunc(ctx, func() {
				if first.CompareAndSwap(false, true) {
					done(ctx.Err())
				}
			})
			time.AfterFunc(wait, func() {
				if first.CompareAndSwap(false, true) {
					stop()
					try()
				}
			})
		})
	}
	try()
}

// transient says whether a BBS call may succeed if tried again.
func transient(err error) bool {
	return errors.Is(err, models.ErrUnavailable) || errors.Is(err, models.ErrConflict) || errors.Is(err, context.DeadlineExceeded) ||
		status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Unavailable
}

// crashReason is the failure reason, naming the exit status when it does not.
func crashReason(r executor.RunResult) string {
	reason := r.FailureReason
	if reason == "" {
		reason = "Exited with status " + strconv.Itoa(r.ExitStatus)
		if r.ExitStatus == 0 {
			reason = "Exited cleanly (status 0)"
		}
	} else if r.ExitStatus != 0 && !strings.Contains(reason, "status "+strconv.Itoa(r.ExitStatus)) {
		reason = fmt.Sprintf("%s (exit status %d)", reason, r.ExitStatus)
	}
	return reason
}

func (h *Harmonizer) removeLRP(ctx context.Context, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) {
	cctx, cancel := h.callCtx(ctx)
	defer cancel()
	_, err := h.bbs.RemoveActualLRP(cctx, &bbsv1.RemoveActualLRPRequest{ProcessGuid: key.GetProcessGuid(), Index: key.GetIndex(), InstanceKey: ik})
	if h.observe("RemoveActualLRP", err) != nil && !errors.Is(err, models.ErrNotFound) && !errors.Is(err, models.ErrInvalidTransition) {
		h.logger.Error("remove-actual-lrp-failed", err, lager.Data{"process_guid": key.GetProcessGuid(), "index": key.GetIndex()})
	}
}

// desiredLRP returns the desired LRP to run an instance just claimed: from
// the run-info cache when it holds the version the claim named, else from
// the BBS (one call shared by every cell of the process), then cached.
func (h *Harmonizer) desiredLRP(ctx context.Context, processGuid, epoch string, revision int64) (*modelsv1.DesiredLRP, error) {
	return h.opts.RunInfo.Fetch(ctx, processGuid, epoch, revision, func(ctx context.Context) (*modelsv1.DesiredLRP, int64, error) {
		cctx, cancel := h.callCtx(ctx)
		defer cancel()
		resp, err := h.bbs.GetDesiredLRP(cctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: processGuid})
		if h.observe("GetDesiredLRP", err) != nil {
			return nil, 0, fmt.Errorf("get desired LRP %s: %w", processGuid, err)
		}
		return resp.GetDesiredLrp(), resp.GetRunInfoRevision(), nil
	})
}

// claimItem is one claim of a batch and, once it is done, its response.
type claimItem struct {
	req  *bbsv1.ClaimActualLRPRequest
	resp *bbsv1.ClaimActualLRPResponse
}

// runRequestForLRP builds the executor's run request of one instance.
func runRequestForLRP(d *modelsv1.DesiredLRP, index int, instanceGuid string) executor.RunRequest {
	req := executor.RunRequestForLRP(&modelsv1.DesiredLRPRunInfo{
		Key:                  &modelsv1.DesiredLRPKey{ProcessGuid: d.GetProcessGuid(), Domain: d.GetDomain(), LogGuid: d.GetLogGuid()},
		EnvironmentVariables: d.GetEnvironmentVariables(),
		Setup:                d.GetSetup(),
		Action:               d.GetAction(),
		Monitor:              d.GetMonitor(),
		StartTimeoutMs:       d.GetStartTimeoutMs(),
		Privileged:           d.GetPrivileged(),
		CpuWeight:            d.GetCpuWeight(),
		Ports:                d.GetPorts(),
		LogSource:            d.GetLogSource(),
		CachedDependencies:   d.GetCachedDependencies(),
		CheckDefinition:      d.GetCheckDefinition(),
		Sidecars:             d.GetSidecars(),
		LogRateLimit:         d.GetLogRateLimit(),
		VolumeMountedFiles:   d.GetVolumeMountedFiles(),
	}, index, instanceGuid)
	req.Image = d.GetRootFs()
	return req
}

func (h *Harmonizer) processTask(ctx context.Context, c executor.Container) {
	logger := h.logger.WithData(lager.Data{"task_guid": c.Guid})
	switch c.State {
	case executor.StateReserved:
		cctx, cancel := h.callCtx(ctx)
		resp, err := h.bbs.StartTask(cctx, &bbsv1.StartTaskRequest{TaskGuid: c.Guid, CellId: h.opts.CellID})
		cancel()
		if h.observe("StartTask", err) != nil {
			logger.Info("task-not-started", lager.Data{"error": err.Error()})
			h.delete(ctx, c)
			return
		}
		cctx, cancel = h.callCtx(ctx)
		task, err := h.bbs.GetTask(cctx, &bbsv1.GetTaskRequest{TaskGuid: c.Guid})
		cancel()
		h.observe("GetTask", err)
		if !resp.GetShouldStart() && (err != nil || !startedHere(task.GetTask(), h.opts.CellID)) {
			logger.Info("task-not-started", lager.Data{"state": task.GetTask().GetState().String(), "cell_id": task.GetTask().GetCellId(), "error": fmt.Sprint(err)})
			h.delete(ctx, c)
			return
		}
		if err == nil {
			err = h.exec.Run(ctx, c.Guid, executor.RunRequestForTask(task.GetTask().GetDefinition()))
			if errors.Is(err, executor.ErrInvalidTransition) {
				return // already run (a repeated operation)
			}
		}
		if err != nil {
			logger.Error("run-failed", err)
			h.completeTask(ctx, c.Guid, true, ReasonFailedToRun, "")
			h.delete(ctx, c)
		}
	case executor.StateCompleted:
		r := c.RunResult
		var err error
		switch {
		case r.Stopped:
			// Cancelled, or not wanted by the BBS: nothing to report.
		case r.Failed && r.Retryable:
			cctx, cancel := h.callCtx(ctx)
			_, err = h.bbs.RejectTask(cctx, &bbsv1.RejectTaskRequest{TaskGuid: c.Guid, RejectionReason: r.FailureReason})
			cancel()
			if h.observe("RejectTask", err) != nil {
				logger.Info("reject-failed", lager.Data{"error": err.Error()})
			}
		default:
			err = h.completeTask(ctx, c.Guid, r.Failed, r.FailureReason, r.Result)
		}
		if transient(err) {
			// The container holds the only copy of the outcome: keep it,
			// and the next bulk sync reports it again.
			logger.Info("outcome-kept-for-retry", lager.Data{"error": err.Error()})
			return
		}
		h.delete(ctx, c)
	}
}

// startedHere says whether the BBS has the task RUNNING on this cell. A start
// answered shouldStart false is then one whose first attempt committed but
// whose reply was lost (the BBS died, the client retried): the container is
// still only reserved here, so nothing runs the task unless this cell does.
func startedHere(task *modelsv1.Task, cellID string) bool {
	return task.GetState() == models.TaskRunning && task.GetCellId() == cellID
}

// completeTask reports a task's outcome; the error is logged and returned.
func (h *Harmonizer) completeTask(ctx context.Context, guid string, failed bool, reason, result string) error {
	cctx, cancel := h.callCtx(ctx)
	defer cancel()
	_, err := h.bbs.CompleteTask(cctx, &bbsv1.CompleteTaskRequest{TaskGuid: guid, CellId: h.opts.CellID, Failed: failed, FailureReason: reason, Result: result})
	if h.observe("CompleteTask", err) != nil {
		h.logger.Info("complete-task-failed", lager.Data{"task_guid": guid, "error": err.Error()})
	}
	return err
}

// batchErrors maps batch results back to errors that unwrap to the sentinels.
func batchErrors(n int, results []*bbsv1.BatchItemResult, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		switch {
		case err != nil:
			errs[i] = err
		case i >= len(results):
			errs[i] = errors.New("BBS returned too few batch results")
		case codes.Code(results[i].GetCode()) != codes.OK:
			errs[i] = models.FromStatus(status.Error(codes.Code(results[i].GetCode()), results[i].GetMessage()))
		}
	}
	return errs
}
