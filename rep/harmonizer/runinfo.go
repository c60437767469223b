package harmonizer

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// DefaultRunInfoCacheSize bounds the desired LRPs a RunInfoCache holds.
const DefaultRunInfoCacheSize = 1024

// RunInfoCache holds the desired LRPs the harmonizers of one rep process
// fetched to run instances, keyed by process guid and the version of their
// run info (the desired epoch and the run record's etcd revision, which the
// BBS returns with every claim). A claim naming the version held is run
// without a GetDesiredLRP; one naming another version (the desired LRP was
// desired again or its run info rewritten) misses and replaces it. It holds
// at most its size, dropping the least recently used. Fetch shares one
// GetDesiredLRP per process guid among every cell of the process. Safe for
// concurrent use.
type RunInfoCache struct {
	max int

	mu      sync.Mutex
	byGUID  map[string]*list.Element // of *runInfoEntry
	lru     *list.List               // front: most recently used
	flights map[string]*runInfoFlight
	hits    atomic.Int64
	misses  atomic.Int64
	evicted atomic.Int64
	fetches atomic.Int64
}

// runInfoFlight is one fetch of a desired LRP in progress; its fields are
// set before done is closed.
type runInfoFlight struct {
	done    chan struct{}
	desired *modelsv1.DesiredLRP
	rev     int64
	err     error
}

// RunInfoFetch fetches a desired LRP and the revision of its run info (a
// GetDesiredLRP). It bounds its own call: ctx carries no deadline.
type RunInfoFetch func(ctx context.Context) (desired *modelsv1.DesiredLRP, rev int64, err error)

type runInfoEntry struct {
	guid    string
	epoch   string
	rev     int64
	desired *modelsv1.DesiredLRP
}

// NewRunInfoCache returns a cache of at most size desired LRPs (default
// DefaultRunInfoCacheSize when size <= 0).
func NewRunInfoCache(size int) *RunInfoCache {
	if size <= 0 {
		size = DefaultRunInfoCacheSize
	}
	return &RunInfoCache{max: size, byGUID: map[string]*list.Element{}, lru: list.New(), flights: map[string]*runInfoFlight{}}
}

// Fetch returns guid's desired LRP at the version a claim named (epoch,
// rev): from the cache when it holds that version, else from fetch, which
// runs at most once at a time per guid in the process; callers asking for
// the same guid meanwhile, from any cell, share its answer, which is then
// held. The fetch runs detached from the caller that started it, so that
// caller stopping does not fail the others; each caller stops waiting when
// its own ctx is done. An answer older than rev (a fetch that started
// before the claim's version existed) is fetched once more.
func (c *RunInfoCache) Fetch(ctx context.Context, guid, epoch string, rev int64, fetch RunInfoFetch) (*modelsv1.DesiredLRP, error) {
	if d, ok := c.Get(guid, epoch, rev); ok {
		return d, nil
	}
	var f *runInfoFlight
	for range 2 {
		f = c.flight(ctx, guid, fetch)
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.err != nil || f.rev >= rev {
			break
		}
	}
	return f.desired, f.err
}

// flight returns the fetch of guid in progress, starting one if none is.
func (c *RunInfoCache) flight(ctx context.Context, guid string, fetch RunInfoFetch) *runInfoFlight {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.flights[guid]; ok {
		return f
	}
	f := &runInfoFlight{done: make(chan struct{})}
	c.flights[guid] = f
	c.fetches.Add(1)
	go func() {
		f.desired, f.rev, f.err = fetch(context.WithoutCancel(ctx))
		if f.err == nil {
			c.Put(guid, f.desired.GetModificationTag().GetEpoch(), f.rev, f.desired)
		}
		c.mu.Lock()
		delete(c.flights, guid)
		c.mu.Unlock()
		close(f.done)
	}()
	return f
}

// Get returns the desired LRP of guid held at exactly this version. An
// unknown version (empty epoch or zero revision) never hits.
func (c *RunInfoCache) Get(guid, epoch string, rev int64) (*modelsv1.DesiredLRP, bool) {
	if epoch == "" || rev == 0 {
		c.misses.Add(1)
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byGUID[guid]
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	e := el.Value.(*runInfoEntry)
	if e.epoch != epoch || e.rev != rev {
		c.misses.Add(1)
		return nil, false
	}
	c.lru.MoveToFront(el)
	c.hits.Add(1)
	return e.desired, true
}

// Put holds d as guid's desired LRP at this version, replacing any other
// version of guid unless it is newer (a higher revision). An unknown
// version is not held.
func (c *RunInfoCache) Put(guid, epoch string, rev int64, d *modelsv1.DesiredLRP) {
	if epoch == "" || rev == 0 || d == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byGUID[guid]; ok {
		e := el.Value.(*runInfoEntry)
		if e.rev > rev {
			return
		}
		e.epoch, e.rev, e.desired = epoch, rev, d
		c.lru.MoveToFront(el)
		return
	}
	c.byGUID[guid] = c.lru.PushFront(&runInfoEntry{guid: guid, epoch: epoch, rev: rev, desired: d})
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.byGUID, old.Value.(*runInfoEntry).guid)
		c.evicted.Add(1)
	}
}

// Len is the number of desired LRPs held.
func (c *RunInfoCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// RunInfoCacheStats counts the cache's lookups, evictions and fetches.
type RunInfoCacheStats struct {
	Hits, Misses, Evicted int64
	// Fetches counts the fetches run (one per guid however many callers
	// waited for it).
	Fetches int64
}

// Stats returns the counts so far.
func (c *RunInfoCache) Stats() RunInfoCacheStats {
	return RunInfoCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Evicted: c.evicted.Load(), Fetches: c.fetches.Load()}
}

// Collector exports the counts as gavel_rep_run_info_cache_hits_total,
// _misses_total, _evictions_total and gavel_rep_run_info_fetches_total.
func (c *RunInfoCache) Collector() prometheus.Collector {
	return runInfoCollector{c}
}

var (
	runInfoHitsDesc      = prometheus.NewDesc("gavel_rep_run_info_cache_hits_total", "Claims run with a desired LRP held by the run-info cache.", nil, nil)
	runInfoMissesDesc    = prometheus.NewDesc("gavel_rep_run_info_cache_misses_total", "Claims whose run-info version the cache did not hold.", nil, nil)
	runInfoEvictionsDesc = prometheus.NewDesc("gavel_rep_run_info_cache_evictions_total", "Desired LRPs dropped from the full run-info cache.", nil, nil)
	runInfoFetchesDesc   = prometheus.NewDesc("gavel_rep_run_info_fetches_total", "GetDesiredLRP calls made for the run-info cache (one per process guid however many cells wait for it).", nil, nil)
)

type runInfoCollector struct{ c *RunInfoCache }

func (rc runInfoCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- runInfoHitsDesc
	ch <- runInfoMissesDesc
	ch <- runInfoEvictionsDesc
	ch <- runInfoFetchesDesc
}

func (rc runInfoCollector) Collect(ch chan<- prometheus.Metric) {
	s := rc.c.Stats()
	ch <- prometheus.MustNewConstMetric(runInfoHitsDesc, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(runInfoMissesDesc, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(runInfoEvictionsDesc, prometheus.CounterValue, float64(s.Evicted))
	ch <- prometheus.MustNewConstMetric(runInfoFetchesDesc, prometheus.CounterValue, float64(s.Fetches))
}
