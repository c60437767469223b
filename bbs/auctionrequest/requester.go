package auctionrequest

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gavelhq/gavel/internal/grpcclient"
	"github.com/gavelhq/gavel/locket"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// LockName is the lock the active auctioneer holds; its value is the auctioneer's gRPC address.
const LockName = "auctioneer"

// QueueSize bounds the requests waiting to be sent.
const QueueSize = 100000

// LockReader reads a lock's raw record (the BBS's watch cache implements it).
type LockReader interface {
	LockValue(name string) ([]byte, bool)
}

// Requester queues start requests and sends them to the auctioneer. Safe for concurrent use.
type Requester struct {
	locks   LockReader
	pool    *grpcclient.Pool
	logger  lager.Logger
	queue   chan request
	timeout time.Duration
	sent    *prometheus.CounterVec
	dropped *prometheus.CounterVec
}

type request struct {
	lrp  *auctioneerv1.LRPStartRequest
	task *auctioneerv1.TaskStartRequest
}

// New returns a requester; Run must be running for requests to be sent.
func New(locks LockReader, pool *grpcclient.Pool, logger lager.Logger, reg prometheus.Registerer) *Requester {
	r := &Requester{
		locks:   locks,
		pool:    pool,
		logger:  logger.Session("auction-requester"),
		queue:   make(chan request, QueueSize),
		timeout: 10 * time.Second,
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_bbs_auction_requests_sent_total", Help: "Start requests sent to the auctioneer, by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_bbs_auction_requests_dropped_total", Help: "Start requests not delivered (no auctioneer, queue full, send failed); convergence retries them.",
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(r.sent, r.dropped)
	}
	return r
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

// RequestLRPs queues LRP start requests; it never blocks.
func (r *Requester) RequestLRPs(reqs ...*auctioneerv1.LRPStartRequest) {
	for _, req := range reqs {
		if len(req.GetIndices()) == 0 {
			continue
		}
		select {
		case r.queue <- request{lrp: req}:
		default:
			r.dropped.WithLabelValues("lrp").Add(float64(len(req.GetIndices())))
		}
	}
}

// RequestTasks queues task start requests; it never blocks.
func (r *Requester) RequestTasks(reqs ...*auctioneerv1.TaskStartRequest) {
	for _, req := range reqs {
		select {
		case r.queue <- request{task: req}:
		default:
			r.dropped.WithLabelValues("task").Inc()
		}
	}
}

// Run sends queued requests in batches until ctx ends.
func (r *Requester) Run(ctx context.Context) error {
	for {
		var first request
		select {
		case first = <-r.queue:
		case <-ctx.Done():
			return ctx.Err()
		}
		var lrps []*auctioneerv1.LRPStartRequest
		var tasks []*auctioneerv1.TaskStartRequest
		add := func(q request) {
			if q.lrp != nil {
				lrps = append(lrps, q.lrp)
			} else {
				tasks = append(tasks, q.task)
			}
		}
		add(first)
	drain:
		for len(lrps)+len(tasks) < 10000 {
			select {
			case q := <-r.queue:
				add(q)
			default:
				break drain
			}
		}
		r.send(ctx, lrps, tasks)
	}
}

// Address returns the active auctioneer's address from its lock.
func (r *Requester) Address() (string, error) {
	raw, ok := r.locks.LockValue(LockName)
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

func (r *Requester) send(ctx context.Context, lrps []*auctioneerv1.LRPStartRequest, tasks []*auctioneerv1.TaskStartRequest) {
	instances := 0
	for _, l := range lrps {
		instances += len(l.GetIndices())
	}
	fail := func(err error) {
		r.dropped.WithLabelValues("lrp").Add(float64(instances))
		r.dropped.WithLabelValues("task").Add(float64(len(tasks)))
		r.logger.Info("auction-request-dropped", lager.Data{"reason": err.Error(), "lrp_instances": instances, "tasks": len(tasks)})
	}
	addr, err := r.Address()
	if err != nil {
		fail(err)
		return
	}
	conn, err := r.pool.Get(addr)
	if err != nil {
		fail(err)
		return
	}
	client := auctioneerv1.NewAuctioneerServiceClient(conn)
	sctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if len(lrps) > 0 {
		if _, err := client.RequestLRPAuctions(sctx, &auctioneerv1.RequestLRPAuctionsRequest{Starts: lrps}); err != nil {
			fail(fmt.Errorf("request LRP auctions at %s: %w", addr, err))
			return
		}
		r.sent.WithLabelValues("lrp").Add(float64(instances))
	}
	if len(tasks) > 0 {
		if _, err := client.RequestTaskAuctions(sctx, &auctioneerv1.RequestTaskAuctionsRequest{Starts: tasks}); err != nil {
			fail(fmt.Errorf("request task auctions at %s: %w", addr, err))
			return
		}
		r.sent.WithLabelValues("task").Add(float64(len(tasks)))
	}
}
