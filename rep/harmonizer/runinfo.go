package harmonizer

import (
	"container/list"
	"sync"
	"sync/atomic"

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
// at most its size, dropping the least recently used. Safe for concurrent use.
type RunInfoCache struct {
	max int

	mu      sync.Mutex
	byGUID  map[string]*list.Element // of *runInfoEntry
	lru     *list.List               // front: most recently used
	hits    atomic.Int64
	misses  atomic.Int64
	evicted atomic.Int64
}

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
	return &RunInfoCache{max: size, byGUID: map[string]*list.Element{}, lru: list.New()}
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

// RunInfoCacheStats counts the cache's lookups and evictions.
type RunInfoCacheStats struct {
	Hits, Misses, Evicted int64
}

// Stats returns the counts so far.
func (c *RunInfoCache) Stats() RunInfoCacheStats {
	return RunInfoCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Evicted: c.evicted.Load()}
}
