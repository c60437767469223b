package auctionrequest_test

import (
	"context"
	"encoding/json"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/auctionrequest"
	"github.com/gavelhq/gavel/internal/grpcclient"
	"github.com/gavelhq/gavel/locket"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// locks is a LockWatcher whose auctioneer lock the test sets.
type locks struct {
	mu      sync.Mutex
	value   []byte
	changes chan struct{}
}

func newLocks() *locks { return &locks{changes: make(chan struct{}, 1)} }

func (l *locks) LockValue(name string) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.value, l.value != nil && name == auctionrequest.LockName
}

func (l *locks) LockChanges() (<-chan struct{}, func()) { return l.changes, func() {} }

// take makes addr the lock holder and signals the change, as the BBS's watch does.
func (l *locks) take(t *testing.T, addr string) {
	b, err := json.Marshal(locket.Record{Owner: "auctioneer", Value: []byte(addr)})
	require.NoError(t, err)
	l.mu.Lock()
	l.value = b
	l.mu.Unlock()
	select {
	case l.changes <- struct{}{}:
	default:
	}
}

// auctioneer records what it accepts; it refuses the first failures calls as Unavailable.
type auctioneer struct {
	auctioneerv1.UnimplementedAuctioneerServiceServer
	mu       sync.Mutex
	failures int
	calls    int
	lrps     map[string][]int32
	repairs  map[string]bool // process guids received as a repair
	tasks    []string
}

func (a *auctioneer) RequestLRPAuctions(_ context.Context, req *auctioneerv1.RequestLRPAuctionsRequest) (*auctioneerv1.RequestLRPAuctionsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.failures > 0 {
		a.failures--
		return nil, status.Error(codes.Unavailable, "not yet")
	}
	for _, s := range req.GetStarts() {
		a.lrps[s.GetProcessGuid()] = append(a.lrps[s.GetProcessGuid()], s.GetIndices()...)
		a.repairs[s.GetProcessGuid()] = a.repairs[s.GetProcessGuid()] || s.GetRepair()
	}
	return &auctioneerv1.RequestLRPAuctionsResponse{}, nil
}

func (a *auctioneer) RequestTaskAuctions(_ context.Context, req *auctioneerv1.RequestTaskAuctionsRequest) (*auctioneerv1.RequestTaskAuctionsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range req.GetStarts() {
		a.tasks = append(a.tasks, s.GetTaskGuid())
	}
	return &auctioneerv1.RequestTaskAuctionsResponse{}, nil
}

// got returns the indices received for guid (sorted) and the tasks received.
func (a *auctioneer) got(guid string) ([]int32, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	idx := append([]int32(nil), a.lrps[guid]...)
	sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
	return idx, append([]string(nil), a.tasks...)
}

func serve(t *testing.T, a *auctioneer) string {
	t.Helper()
	a.lrps = map[string][]int32{}
	a.repairs = map[string]bool{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	auctioneerv1.RegisterAuctioneerServiceServer(srv, a)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func run(t *testing.T, opts auctionrequest.Options) *auctionrequest.Requester {
	t.Helper()
	pool := grpcclient.NewPool(nil)
	t.Cleanup(pool.Close)
	opts.Pool = pool
	opts.Logger = lager.NewLogger("test")
	r := auctionrequest.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func lrp(guid string, indices ...int32) *auctioneerv1.LRPStartRequest {
	return &auctioneerv1.LRPStartRequest{ProcessGuid: guid, Domain: "d", Indices: indices, Resource: &auctioneerv1.Resource{MemoryMb: 64}}
}

func task(guid string) *auctioneerv1.TaskStartRequest {
	return &auctioneerv1.TaskStartRequest{TaskGuid: guid, Domain: "d"}
}

// While no auctioneer holds the lock requests are held (de-duplicated);
// the moment one takes it, they are delivered, once each.
func TestHeldUntilAnAuctioneerTakesTheLock(t *testing.T) {
	l := newLocks()
	a := &auctioneer{}
	addr := serve(t, a)
	r := run(t, auctionrequest.Options{Locks: l})

	r.RequestLRPs(lrp("pg", 0, 1))
	r.RequestLRPs(lrp("pg", 1, 2))
	r.RequestTasks(task("t1"), task("t1"))
	time.Sleep(200 * time.Millisecond)
	instances, tasks := r.Pending()
	require.Equal(t, 3, instances, "index 1 is held once")
	require.Equal(t, 1, tasks)
	idx, _ := a.got("pg")
	require.Empty(t, idx)

	took := time.Now()
	l.take(t, addr)
	require.Eventually(t, func() bool {
		idx, tk := a.got("pg")
		return len(idx) == 3 && len(tk) == 1
	}, 5*time.Second, 5*time.Millisecond)
	t.Logf("delivered %s after the lock changed", time.Since(took))
	idx, tk := a.got("pg")
	require.Equal(t, []int32{0, 1, 2}, idx)
	require.Equal(t, []string{"t1"}, tk)
	// A request leaves the pending set once its send has returned, just
	// after the auctioneer recorded it.
	require.Eventually(t, func() bool { instances, tasks := r.Pending(); return instances+tasks == 0 },
		5*time.Second, 5*time.Millisecond, "nothing stays pending once delivered")

	// Later work goes straight through.
	r.RequestLRPs(lrp("pg", 7))
	require.Eventually(t, func() bool { idx, _ := a.got("pg"); return len(idx) == 4 }, 5*time.Second, 5*time.Millisecond)
}

// A failed send is retried with backoff until the auctioneer accepts it.
func TestFailedSendsAreRetried(t *testing.T) {
	l := newLocks()
	a := &auctioneer{failures: 3}
	l.take(t, serve(t, a))
	reg := prometheus.NewRegistry()
	r := run(t, auctionrequest.Options{Locks: l, Registerer: reg, RetryMin: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	r.RequestLRPs(lrp("pg", 0))
	require.Eventually(t, func() bool { idx, _ := a.got("pg"); return len(idx) == 1 }, 5*time.Second, 5*time.Millisecond)
	a.mu.Lock()
	require.Equal(t, 4, a.calls, "three refusals, then the delivery")
	a.mu.Unlock()
	require.Equal(t, 3.0, metric(t, reg, "gavel_bbs_auction_request_send_failures_total", ""))
}

// The pending set is bounded: requests beyond it are dropped and counted;
// the rest are delivered when an auctioneer appears.
func TestPendingSetIsBounded(t *testing.T) {
	l := newLocks()
	a := &auctioneer{}
	addr := serve(t, a)
	reg := prometheus.NewRegistry()
	r := run(t, auctionrequest.Options{Locks: l, Registerer: reg, MaxPending: 5})

	r.RequestLRPs(lrp("pg", 0, 1, 2, 3))
	r.RequestTasks(task("t1"), task("t2"), task("t3"))
	r.RequestLRPs(lrp("pg", 0)) // already pending: no drop
	instances, tasks := r.Pending()
	require.Equal(t, 4, instances)
	require.Equal(t, 1, tasks)
	require.Equal(t, 2.0, metric(t, reg, "gavel_bbs_auction_requests_dropped_total", "task"))
	require.Equal(t, 4.0, metric(t, reg, "gavel_bbs_auction_requests_pending", "lrp"))

	l.take(t, addr)
	require.Eventually(t, func() bool {
		idx, tk := a.got("pg")
		return len(idx) == 4 && len(tk) == 1
	}, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { instances, tasks := r.Pending(); return instances+tasks == 0 },
		5*time.Second, 5*time.Millisecond, "the delivered requests leave the pending set")
	// Room again: new work is held and delivered, not dropped.
	r.RequestTasks(task("t4"))
	require.Eventually(t, func() bool { _, tk := a.got("pg"); return len(tk) == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 2.0, metric(t, reg, "gavel_bbs_auction_requests_dropped_total", "task"))
}

// metric reads one metric of reg (with kind=kind unless kind is empty); 0 when absent.
func metric(t *testing.T, reg *prometheus.Registry, name, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := kind == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "kind" && lp.GetValue() == kind {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// A repair (auctionrequest.LRPRepair) reaches the auctioneer marked as one,
// also when a plain request for the same process guid was pending with it;
// a plain request stays plain.
func TestRepairsAreMarked(t *testing.T) {
	l := newLocks()
	a := &auctioneer{}
	addr := serve(t, a)
	r := run(t, auctionrequest.Options{Locks: l})
	sched := &modelsv1.DesiredLRPSchedulingInfo{Key: &modelsv1.DesiredLRPKey{ProcessGuid: "lost", Domain: "d"}}
	r.RequestLRPs(lrp("lost", 0))
	r.RequestLRPs(auctionrequest.LRPRepair(sched, 1))
	r.RequestLRPs(lrp("lost", 2))
	r.RequestLRPs(lrp("desired", 0))
	l.take(t, addr)
	require.Eventually(t, func() bool {
		lost, _ := a.got("lost")
		desired, _ := a.got("desired")
		return len(lost) == 3 && len(desired) == 1
	}, 5*time.Second, 5*time.Millisecond)
	a.mu.Lock()
	defer a.mu.Unlock()
	require.True(t, a.repairs["lost"], "the repair's guid arrives as a repair")
	require.False(t, a.repairs["desired"], "a plain request stays plain")
}
