package harmonizer

import (
	"context"
	"time"

	"github.com/gavelhq/gavel/internal/workers"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// DefaultBatchesInFlight is how many calls of each kind (claims, starts)
// shared Batches keep under way at once.
const DefaultBatchesInFlight = 8

// Batches carries the claims and starts of all the harmonizers of one rep
// process in shared batched BBS calls. A process that hosts many simulated
// cells then sends the instances that started on any of its cells meanwhile
// in one BatchStartActualLRPs call, not one call per cell: at 100k
// instances on 1,000 cells each cell starts a few instances a second, so
// its own calls carried ~4 items each. The BBS judges every item on its own
// (its cell's identity included), so one item's refusal affects no other.
// Only harmonizers that share one BBS client may share Batches; a rep with
// TLS hosts one cell.
type Batches struct {
	claims *batcher[*claimItem]
	starts *batcher[*bbsv1.StartActualLRPRequest]
}

// BatchesOptions configure shared Batches.
type BatchesOptions struct {
	// BBS is the process's BBS client; required.
	BBS BBS
	// Metrics count the calls; default unregistered metrics.
	Metrics *Metrics
	// Workers run the calls; default workers of their own.
	Workers *workers.Pool
	// CallTimeout bounds each call; default DefaultCallTimeout.
	CallTimeout time.Duration
	// MaxBatch caps the items of one call; default DefaultMaxBatch.
	MaxBatch int
	// MaxInFlight caps the calls of each kind under way at once; default
	// DefaultBatchesInFlight.
	MaxInFlight int
}

// NewBatches returns shared Batches. A call is bounded by CallTimeout only,
// not by any harmonizer's life: a harmonizer that stops stops waiting for
// its items, and those not yet sent are dropped.
func NewBatches(opts BatchesOptions) *Batches {
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.Workers == nil {
		opts.Workers = workers.New(0)
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultBatchesInFlight
	}
	return newBatches(opts, context.Background)
}

// newBatches builds the claim and start batchers of opts (defaults set),
// whose calls run under ctx.
func newBatches(opts BatchesOptions, ctx func() context.Context) *Batches {
	calls := bbsCalls{bbs: opts.BBS, metrics: opts.Metrics, timeout: opts.CallTimeout}
	return &Batches{
		claims: &batcher[*claimItem]{call: calls.claim, max: opts.MaxBatch, maxInFlight: opts.MaxInFlight, ctx: ctx, workers: opts.Workers},
		starts: &batcher[*bbsv1.StartActualLRPRequest]{call: calls.start, max: opts.MaxBatch, maxInFlight: opts.MaxInFlight, ctx: ctx, workers: opts.Workers},
	}
}

// bbsCalls makes the batched claim and start calls.
type bbsCalls struct {
	bbs     BBS
	metrics *Metrics
	timeout time.Duration
}

func (c bbsCalls) claim(ctx context.Context, items []*claimItem) []error {
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	reqs := make([]*bbsv1.ClaimActualLRPRequest, len(items))
	for i, it := range items {
		reqs[i] = it.req
	}
	countBatch(c.metrics, "BatchClaimActualLRPs", len(reqs))
	resp, err := c.bbs.BatchClaimActualLRPs(cctx, &bbsv1.BatchClaimActualLRPsRequest{Claims: reqs})
	for i, it := range items {
		if i < len(resp.GetClaims()) {
			it.resp = resp.GetClaims()[i] // read by the claimer once its result arrives
		}
	}
	errs := batchErrors(len(reqs), resp.GetResults(), err)
	for _, e := range errs {
		observe(c.metrics, "ClaimActualLRP", e)
	}
	return errs
}

func (c bbsCalls) start(ctx context.Context, reqs []*bbsv1.StartActualLRPRequest) []error {
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	countBatch(c.metrics, "BatchStartActualLRPs", len(reqs))
	resp, err := c.bbs.BatchStartActualLRPs(cctx, &bbsv1.BatchStartActualLRPsRequest{Starts: reqs})
	errs := batchErrors(len(reqs), resp.GetResults(), err)
	for _, e := range errs {
		observe(c.metrics, "StartActualLRP", e)
	}
	return errs
}
