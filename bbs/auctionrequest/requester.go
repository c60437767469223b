package auctionrequest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/grpcclient"
	"github.com/gavelhq/gavel/locket"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// LockName is the lock the active auctioneer holds; its value is the auctioneer's gRPC address.
const LockName = "auctioneer"

// Defaults of Options.
const (
	// DefaultMaxPending bounds the LRP instances plus tasks waiting for an auctioneer.
	DefaultMaxPending = 100000
	// DefaultMaxBatch bounds the LRP instances plus tasks sent in one call.
	DefaultMaxBatch = 10000
	// DefaultSendTimeout bounds one call to the auctioneer.
	DefaultSendTimeout = 10 * time.Second
	// DefaultRetryMin and DefaultRetryMax bound the backoff after a failed send.
	DefaultRetryMin = 50 * time.Millisecond
	DefaultRetryMax = 2 * time.Second
)

// LockWatcher reads a lock's raw record and signals lock changes (the BBS's
// watch cache implements it, from its etcd watch).
type LockWatcher interface {
	// LockValue returns the lock's record as package locket stores it.
	LockValue(name string) ([]byte, bool)
	// LockChanges signals every change of any lock; call the function to unsubscribe.
	LockChanges() (<-chan struct{}, func())
}

// Options are a Requester's dependencies and bounds.
type Options struct {
	// Locks finds the auctioneer and tells when its lock changes (required).
	Locks LockWatcher
	// Pool dials the auctioneer (required).
	Pool   *grpcclient.Pool
	Logger lager.Logger
	// Registerer receives the requester's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Clock times the retries (default the real clock).
	Clock clock.Clock
	// MaxPending bounds the LRP instances plus tasks held while no
	// auctioneer takes them (default DefaultMaxPending). Requests beyond it
	// are dropped, counted and logged; convergence asks for them again.
	MaxPending int
	// MaxBatch bounds the LRP instances plus tasks in one send (default DefaultMaxBatch).
	MaxBatch int
	// SendTimeout bounds one call to the auctioneer (default 10 s).
	SendTimeout time.Duration
	// RetryMin and RetryMax bound the doubling wait after a failed send
	// (defaults 50 ms and 2 s). A new lock holder is tried at once.
	RetryMin, RetryMax time.Duration
	// RunInfoVersions, when set, names the current version of a desired
	// LRP's run info; every LRP start request is stamped with it when sent,
	// so a cell that runs an instance before claiming it (a rep's
	// claim_delay) knows which run info to run.
	RunInfoVersions func(processGUID string) (models.RunInfoVersion, bool)
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = lager.NewLogger("auctionrequest")
	}
	if o.Clock == nil {
		o.Clock = clock.NewClock()
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = DefaultSendTimeout
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(DefaultRetryMax, o.RetryMin)
	}
	return o
}

// Requester holds start requests until the active auctioneer takes them.
// RequestLRPs and RequestTasks never block: they add to a bounded pending
// set, de-duplicated by LRP process guid and index and by task guid. Run
// sends the set in batches; a failed send is retried with backoff, and while
// no auctioneer holds the lock the set waits until one does: a change of
// the lock (seen through the BBS's etcd watch) flushes it at once. A request
// leaves the set only once an auctioneer accepted it. Safe for concurrent use.
type Requester struct {
	opts   Options
	logger lager.Logger

	wake chan struct{}

	mu      sync.Mutex
	lrps    map[string]*pendingLRP
	tasks   map[string]pendingTask
	n       int    // LRP instances plus tasks held
	seq     uint64 // stamps every addition, so a send removes only what it sent
	full    bool   // dropping since the set was last below its bound
	waiting bool   // no auctioneer since the last successful send

	sent         *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	pending      *prometheus.GaugeVec
	sendFailures prometheus.Counter
}

type pendingLRP struct {
	// req is the latest request's resources and constraints, without indices.
	req     *auctioneerv1.LRPStartRequest
	indices map[int32]uint64 // index → seq of its latest request
}

type pendingTask struct {
	req *auctioneerv1.TaskStartRequest
	seq uint64
}

// New returns a requester; Run must be running for requests to be sent.
func New(opts Options) *Requester {
	opts = opts.withDefaults()
	r := &Requester{
		opts:   opts,
		logger: opts.Logger.Session("auction-requester"),
		wake:   make(chan struct{}, 1),
		lrps:   map[string]*pendingLRP{},
		tasks:  map[string]pendingTask{},
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_bbs_auction_requests_sent_total", Help: "Start requests (LRP instances, tasks) an auctioneer accepted, by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_bbs_auction_requests_dropped_total", Help: "Start requests dropped because the pending set was full or the auctioneer refused them as invalid, by kind; convergence asks again.",
		}, []string{"kind"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gavel_bbs_auction_requests_pending", Help: "Start requests held until an auctioneer accepts them, by kind.",
		}, []string{"kind"}),
		sendFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_bbs_auction_request_send_failures_total", Help: "Failed sends to the auctioneer (retried with backoff).",
		}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(r.sent, r.dropped, r.pending, r.sendFailures)
	}
	return r
}

// LRPRepair is LRPStart for instances that should be running and are not
// (convergence, a crash restarted at once, an evacuation): see the request's
// repair field.
func LRPRepair(sched *modelsv1.DesiredLRPSchedulingInfo, indices ...int32) *auctioneerv1.LRPStartRequest {
	req := LRPStart(sched, indices...)
	req.Repair = true
	return req
}

// LRPStart builds the start request for some indices of a desired LRP.
func LRPStart(sched *modelsv1.DesiredLRPSchedulingInfo, indices ...int32) *auctioneerv1.LRPStartRequest {
	return &auctioneerv1.LRPStartRequest{
		ProcessGuid: sched.GetKey().GetProcessGuid(),
		Domain:      sched.GetKey().GetDomain(),
		Indices:     indices,
		Resource: &auctioneerv1.Resource{
			MemoryMb: sched.GetResource().GetMemoryMb(),
			DiskMb:   sched.GetResource().GetDiskMb(),
			MaxPids:  sched.GetResource().GetMaxPids(),
		},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{
			RootFs:        sched.GetResource().GetRootFs(),
			PlacementTags: sched.GetPlacementTags(),
			VolumeDrivers: sched.GetVolumePlacement().GetDriverNames(),
		},
	}
}

// TaskStart builds the start request of a task.
func TaskStart(t *modelsv1.Task) *auctioneerv1.TaskStartRequest {
	drivers := make([]string, 0, len(t.GetDefinition().GetVolumeMounts()))
	for _, vm := range t.GetDefinition().GetVolumeMounts() {
		drivers = append(drivers, vm.GetDriver())
	}
	return &auctioneerv1.TaskStartRequest{
		TaskGuid: t.GetTaskGuid(),
		Domain:   t.GetDomain(),
		Resource: &auctioneerv1.Resource{
			MemoryMb: t.GetDefinition().GetMemoryMb(),
			DiskMb:   t.GetDefinition().GetDiskMb(),
			MaxPids:  t.GetDefinition().GetMaxPids(),
		},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{
			RootFs:        t.GetDefinition().GetRootFs(),
			PlacementTags: t.GetDefinition().GetPlacementTags(),
			VolumeDrivers: drivers,
		},
	}
}

// RequestLRPs adds LRP start requests to the pending set; it never blocks.
// An index already pending is not added twice (the latest request's
// resources are kept). The pending requests of a process guid are a repair
// while any of them is.
func (r *Requester) RequestLRPs(reqs ...*auctioneerv1.LRPStartRequest) {
	dropped := 0
	r.mu.Lock()
	for _, req := range reqs {
		if len(req.GetIndices()) == 0 {
			continue
		}
		guid := req.GetProcessGuid()
		p := r.lrps[guid]
		if p == nil {
			p = &pendingLRP{indices: map[int32]uint64{}}
		}
		tmpl := proto.Clone(req).(*auctioneerv1.LRPStartRequest)
		tmpl.Indices = nil
		tmpl.Repair = req.GetRepair() || p.req.GetRepair()
		p.req = tmpl
		for _, i := range req.GetIndices() {
			if _, ok := p.indices[i]; !ok {
				if r.n >= r.opts.MaxPending {
					dropped++
					continue
				}
				r.n++
			}
			r.seq++
			p.indices[i] = r.seq
		}
		if len(p.indices) > 0 {
			r.lrps[guid] = p
		}
	}
	r.noteDropsLocked("lrp", dropped)
	r.mu.Unlock()
	r.signal()
}

// RequestTasks adds task start requests to the pending set; it never blocks.
// A task already pending is not added twice.
func (r *Requester) RequestTasks(reqs ...*auctioneerv1.TaskStartRequest) {
	dropped := 0
	r.mu.Lock()
	for _, req := range reqs {
		guid := req.GetTaskGuid()
		if _, ok := r.tasks[guid]; !ok {
			if r.n >= r.opts.MaxPending {
				dropped++
				continue
			}
			r.n++
		}
		r.seq++
		r.tasks[guid] = pendingTask{req: req, seq: r.seq}
	}
	r.noteDropsLocked("task", dropped)
	r.mu.Unlock()
	r.signal()
}

// noteDropsLocked counts requests dropped for a full set and logs the
// first drop of each episode of fullness; r.mu is held.
func (r *Requester) noteDropsLocked(kind string, dropped int) {
	r.updateGaugesLocked()
	if dropped == 0 {
		return
	}
	r.dropped.WithLabelValues(kind).Add(float64(dropped))
	if !r.full {
		r.full = true
		r.logger.Error("auction-requests-dropped-queue-full", errors.New("pending auction requests reached max_pending"), lager.Data{
			"max_pending": r.opts.MaxPending, "kind": kind, "dropped": dropped,
			"note": "convergence asks for the dropped work again; logged once until the set drains below the bound",
		})
	}
}

func (r *Requester) updateGaugesLocked() {
	instances := 0
	for _, p := range r.lrps {
		instances += len(p.indices)
	}
	r.pending.WithLabelValues("lrp").Set(float64(instances))
	r.pending.WithLabelValues("task").Set(float64(len(r.tasks)))
}

func (r *Requester) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Pending returns how many LRP instances and tasks wait to be sent.
func (r *Requester) Pending() (instances, tasks int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n - len(r.tasks), len(r.tasks)
}

// batch is a snapshot of pending requests and the seqs they had.
type batch struct {
	lrps  []*auctioneerv1.LRPStartRequest
	tasks []*auctioneerv1.TaskStartRequest
	seqs  map[string]map[int32]uint64
	tseqs map[string]uint64
	size  int
}

func (b *batch) instances() int { return b.size - len(b.tasks) }

// take snapshots up to MaxBatch pending requests, leaving them pending.
func (r *Requester) take() *batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := &batch{seqs: map[string]map[int32]uint64{}, tseqs: map[string]uint64{}}
	for guid, p := range r.lrps {
		if b.size >= r.opts.MaxBatch {
			break
		}
		req := proto.Clone(p.req).(*auctioneerv1.LRPStartRequest)
		indices := make([]int32, 0, len(p.indices))
		for i := range p.indices {
			indices = append(indices, i)
		}
		slices.Sort(indices) // lower indices first, as the caller asked
		seqs := map[int32]uint64{}
		for _, i := range indices {
			if b.size >= r.opts.MaxBatch {
				break
			}
			req.Indices = append(req.Indices, i)
			seqs[i] = p.indices[i]
			b.size++
		}
		b.lrps = append(b.lrps, req)
		b.seqs[guid] = seqs
	}
	for guid, t := range r.tasks {
		if b.size >= r.opts.MaxBatch {
			break
		}
		b.tasks = append(b.tasks, t.req)
		b.tseqs[guid] = t.seq
		b.size++
	}
	return b
}

// done removes what b sent, unless it was requested again meanwhile.
func (r *Requester) done(b *batch, lrps, tasks bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if lrps {
		for guid, seqs := range b.seqs {
			p := r.lrps[guid]
			if p == nil {
				continue
			}
			for i, seq := range seqs {
				if p.indices[i] == seq {
					delete(p.indices, i)
					r.n--
				}
			}
			if len(p.indices) == 0 {
				delete(r.lrps, guid)
			}
		}
	}
	if tasks {
		for guid, seq := range b.tseqs {
			if t, ok := r.tasks[guid]; ok && t.seq == seq {
				delete(r.tasks, guid)
				r.n--
			}
		}
	}
	if r.n < r.opts.MaxPending {
		r.full = false
	}
	r.updateGaugesLocked()
}

// Run sends pending requests until ctx ends: at once when work arrives or
// the auctioneer lock changes hands, and after a backoff when a send failed.
func (r *Requester) Run(ctx context.Context) error {
	changes, unsubscribe := r.opts.Locks.LockChanges()
	defer unsubscribe()
	backoff := r.opts.RetryMin
	var retry clock.Timer
	retryC := func() <-chan time.Time {
		if retry == nil {
			return nil
		}
		return retry.C()
	}
	for {
		select {
		case <-ctx.Done():
			if retry != nil {
				retry.Stop()
			}
			return ctx.Err()
		case <-r.wake:
			if retry != nil {
				continue // backing off: the retry sends this too
			}
		case <-changes:
			// A new holder (or none): try it now, whatever the backoff.
			if retry != nil {
				retry.Stop()
				retry = nil
			}
			backoff = r.opts.RetryMin
		case <-retryC():
			retry = nil
		}
		if err := r.flush(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, errNoAuctioneer) {
				continue // wait for a lock change
			}
			r.sendFailures.Inc()
			instances, tasks := r.Pending()
			r.logger.Info("auction-request-send-failed", lager.Data{"reason": err.Error(), "retry_in": backoff.String(), "pending_lrp_instances": instances, "pending_tasks": tasks})
			retry = r.opts.Clock.NewTimer(backoff)
			backoff = min(2*backoff, r.opts.RetryMax)
			continue
		}
		backoff = r.opts.RetryMin
	}
}

var errNoAuctioneer = errors.New("no auctioneer")

// flush sends batches until nothing is pending or a send fails.
func (r *Requester) flush(ctx context.Context) error {
	for {
		if instances, tasks := r.Pending(); instances+tasks == 0 {
			return nil
		}
		addr, err := r.Address()
		if err != nil {
			r.mu.Lock()
			first := !r.waiting
			r.waiting = true
			r.mu.Unlock()
			if first {
				instances, tasks := r.Pending()
				r.logger.Info("auction-requests-held", lager.Data{"reason": err.Error(), "pending_lrp_instances": instances, "pending_tasks": tasks,
					"note": "sent as soon as an auctioneer takes the lock"})
			}
			return fmt.Errorf("%w: %v", errNoAuctioneer, err)
		}
		b := r.take()
		if b.size == 0 {
			return nil
		}
		r.stamp(b)
		if err := r.send(ctx, addr, b); err != nil {
			return err
		}
		r.mu.Lock()
		if r.waiting {
			r.waiting = false
			r.logger.Info("auction-requests-delivered-to-new-auctioneer", lager.Data{"address": addr, "lrp_instances": b.instances(), "tasks": len(b.tasks)})
		}
		r.mu.Unlock()
	}
}

// stamp names, in each LRP start request of b, the current version of its
// desired LRP's run info (see Options.RunInfoVersions).
func (r *Requester) stamp(b *batch) {
	if r.opts.RunInfoVersions == nil {
		return
	}
	for _, req := range b.lrps {
		if v, ok := r.opts.RunInfoVersions(req.GetProcessGuid()); ok {
			req.DesiredEpoch, req.RunInfoRevision = v.Epoch, v.Revision
		}
	}
}

// Address returns the active auctioneer's address from its lock.
func (r *Requester) Address() (string, error) {
	raw, ok := r.opts.Locks.LockValue(LockName)
	if !ok {
		return "", fmt.Errorf("no auctioneer holds the %q lock", LockName)
	}
	var rec locket.Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return "", fmt.Errorf("decode the %q lock: %w", LockName, err)
	}
	if len(rec.Value) == 0 {
		return "", fmt.Errorf("the %q lock of %s has no address", LockName, rec.Owner)
	}
	return string(rec.Value), nil
}

// permanent says whether the auctioneer refused a request in a way no retry cures.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.Unimplemented:
		return true
	}
	return false
}

// send delivers b to the auctioneer at addr and removes what it accepted
// (or refused for good) from the pending set.
func (r *Requester) send(ctx context.Context, addr string, b *batch) error {
	conn, err := r.opts.Pool.Get(addr)
	if err != nil {
		return fmt.Errorf("dial the auctioneer at %s: %w", addr, err)
	}
	client := auctioneerv1.NewAuctioneerServiceClient(conn)
	sctx, cancel := context.WithTimeout(ctx, r.opts.SendTimeout)
	defer cancel()
	if len(b.lrps) > 0 {
		_, err := client.RequestLRPAuctions(sctx, &auctioneerv1.RequestLRPAuctionsRequest{Starts: b.lrps})
		switch {
		case err == nil:
			r.sent.WithLabelValues("lrp").Add(float64(b.instances()))
		case permanent(err):
			r.dropped.WithLabelValues("lrp").Add(float64(b.instances()))
			r.logger.Error("auction-requests-refused", err, lager.Data{"address": addr, "lrp_instances": b.instances()})
		default:
			return fmt.Errorf("request LRP auctions at %s: %w", addr, err)
		}
		r.done(b, true, false)
	}
	if len(b.tasks) > 0 {
		_, err := client.RequestTaskAuctions(sctx, &auctioneerv1.RequestTaskAuctionsRequest{Starts: b.tasks})
		switch {
		case err == nil:
			r.sent.WithLabelValues("task").Add(float64(len(b.tasks)))
		case permanent(err):
			r.dropped.WithLabelValues("task").Add(float64(len(b.tasks)))
			r.logger.Error("auction-requests-refused", err, lager.Data{"address": addr, "tasks": len(b.tasks)})
		default:
			return fmt.Errorf("request task auctions at %s: %w", addr, err)
		}
		r.done(b, false, true)
	}
	return nil
}
