package store

import (
	"container/heap"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/encryption"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// item is a cached record and the etcd mod revision it was read at. Records
// in the cache are never mutated: a change replaces the item.
type item[T any] struct {
	val T
	rev int64
}

type set[K comparable] map[K]struct{}

func (s set[K]) add(k K) { s[k] = struct{}{} }

func addTo[I, K comparable](idx map[I]set[K], i I, k K) {
	s := idx[i]
	if s == nil {
		s = set[K]{}
		idx[i] = s
	}
	s.add(k)
}

func removeFrom[I, K comparable](idx map[I]set[K], i I, k K) {
	if s := idx[i]; s != nil {
		delete(s, k)
		if len(s) == 0 {
			delete(idx, i)
		}
	}
}

// cacheState is everything the cache holds, guarded by Cache.mu.
type cacheState struct {
	rev int64

	schedules       map[string]item[*modelsv1.DesiredLRPSchedulingInfo]
	runs            map[string]item[*modelsv1.DesiredLRPRunInfo]
	desiredByDomain map[string]set[string]

	actuals        map[actualID]item[*modelsv1.ActualLRP]
	actualsByGUID  map[string]set[actualID]
	actualsByCell  map[string]set[actualID]
	actualsByState map[modelsv1.ActualLRPState]set[actualID]

	tasks        map[string]item[*modelsv1.Task]
	tasksByCell  map[string]set[string]
	tasksByState map[modelsv1.TaskState]set[string]

	domains map[string]item[*modelsv1.Domain]
	cells   map[string]item[*modelsv1.CellPresence]
	locks   map[string]item[[]byte]

	// undecodable holds keys whose value could not be decoded, with the error.
	// They are reported and kept, never deleted.
	undecodable map[string]item[error]

	// labels holds the encryption key label of each sealed record with
	// events (see trackLabel); nil while none is sealed.
	labels map[string]string
}

func newCacheState() *cacheState {
	return &cacheState{
		schedules:       map[string]item[*modelsv1.DesiredLRPSchedulingInfo]{},
		runs:            map[string]item[*modelsv1.DesiredLRPRunInfo]{},
		desiredByDomain: map[string]set[string]{},
		actuals:         map[actualID]item[*modelsv1.ActualLRP]{},
		actualsByGUID:   map[string]set[actualID]{},
		actualsByCell:   map[string]set[actualID]{},
		actualsByState:  map[modelsv1.ActualLRPState]set[actualID]{},
		tasks:           map[string]item[*modelsv1.Task]{},
		tasksByCell:     map[string]set[string]{},
		tasksByState:    map[modelsv1.TaskState]set[string]{},
		domains:         map[string]item[*modelsv1.Domain]{},
		cells:           map[string]item[*modelsv1.CellPresence]{},
		locks:           map[string]item[[]byte]{},
		undecodable:     map[string]item[error]{},
	}
}

// Cache is the in-memory copy of the BBS's state, fed by one etcd watch from
// a known revision. It answers every read of the BBS. It is safe for
// concurrent use.
type Cache struct {
	client  *clientv3.Client
	keys    Keys
	keyring *encryption.Keyring
	logger  lager.Logger

	mu      sync.RWMutex
	state   *cacheState
	events  eventLog        // the recent changes applied from the watch, for subscribers (eventlog.go)
	waiters revisionWaiters // WaitForRevision callers, by the revision they wait for
	// waiterAt is the waiter of each revision in waiters: callers waiting
	// for one revision (every request a transaction carried) share it.
	waiterAt map[int64]*revisionWaiter
	synced   chan struct{} // closed after the first list
	// progressAsked is true while a progress request to etcd is in flight.
	progressAsked atomic.Bool
	cellSubs      map[chan struct{}]struct{} // CellRemovals subscribers (convergence.go)
	wantedSubs    map[chan struct{}]struct{} // WantedInstanceRemovals subscribers (convergence.go)
	lockSubs      map[chan struct{}]struct{} // LockChanges subscribers (lockwatch.go)
	// revisions reads etcd's current revision for Sync (consistent.go).
	revisions revisionReader
	// cancelWatch ends the running watch (guarded by mu; nil between watches).
	cancelWatch context.CancelFunc
	// watchStarted is when the running watch started (guarded by mu).
	watchStarted time.Time
	// stallTimeout is how long Sync waits for a cache that applies nothing
	// before restarting its watch (watchStallTimeout; shorter in tests).
	stallTimeout time.Duration
	// relists counts the full reads of the prefix (the first one included).
	relists atomic.Int64
	// beforeApply, when set (tests only), runs before the watch applies a
	// response; ctx is the watch's own context.
	beforeApply func(ctx context.Context)

	// ownMu guards own: the models of the store's own writes, by key, that
	// the watch has not delivered yet (see offer).
	ownMu sync.Mutex
	own   map[string]ownWrite
	// applied is state.rev as of the last applied response, written under
	// ownMu (and mu), read by offer under ownMu.
	applied atomic.Int64
	// ownHits and decoded count put events applied from an offered model
	// and decoded from their values.
	ownHits, decoded atomic.Int64
}

// maxOwn bounds the offered models awaiting their watch events; beyond it
// offers are dropped and the events decoded. The store has at most its
// commit workers × batch size writes in flight, far fewer.
const maxOwn = 1 << 16

// written is one record a mutation puts: its key and the model it marshalled.
type written struct {
	key string
	msg proto.Message
}

// ownWrite is an offered model and the revision its write committed at.
type ownWrite struct {
	rev int64
	msg proto.Message
}

// offer hands the cache the models of writes that committed at rev, so that
// when their events arrive the cache stores these models instead of
// decoding the values. A model offered must never be changed afterwards
// (the cache's records are shared with readers). An event matches an offer
// only by key and mod revision, which together name one write in etcd: a
// write by anyone else, or one the watch delivered before the offer, is
// decoded as before.
func (c *Cache) offer(ws []written, rev int64) {
	if len(ws) == 0 {
		return
	}
	c.ownMu.Lock()
	defer c.ownMu.Unlock()
	if rev <= c.applied.Load() {
		return // already applied from the event
	}
	if c.own == nil {
		c.own = make(map[string]ownWrite)
	}
	for _, w := range ws {
		if len(c.own) >= maxOwn {
			return
		}
		c.own[w.key] = ownWrite{rev: rev, msg: w.msg}
	}
}

// OwnWriteStats counts put events applied from the store's own models
// (hits) and decoded from their values (decoded).
func (c *Cache) OwnWriteStats() (hits, decoded int64) { return c.ownHits.Load(), c.decoded.Load() }

// Relists counts the cache's full reads of its prefix, the first one
// included: every later one follows a compacted, broken or stalled watch.
func (c *Cache) Relists() int64 { return c.relists.Load() }

// NewCache returns a cache of the keys under keys' prefix. Run fills it.
func NewCache(client *clientv3.Client, keys Keys, logger lager.Logger) *Cache {
	return newCache(client, keys, logger, nil)
}

// newCache is NewCache with a keyring that opens sealed records.
func newCache(client *clientv3.Client, keys Keys, logger lager.Logger, keyring *encryption.Keyring) *Cache {
	c := &Cache{
		client:  client,
		keys:    keys,
		keyring: keyring,
		logger:  logger.Session("watch-cache"),
		state:   newCacheState(),
		events:  newEventLog(EventLogSize),
		synced:  make(chan struct{}),

		stallTimeout: watchStallTimeout,
	}
	c.revisions.get = c.etcdRevision
	return c
}

// Synced is closed once the cache holds a consistent snapshot.
func (c *Cache) Synced() <-chan struct{} { return c.synced }

// Run lists the prefix, then watches it from the next revision, until ctx ends.
// A compacted or broken watch makes it relist. It returns ctx's error.
func (c *Cache) Run(ctx context.Context) error {
	first := true
	for {
		rev, err := c.relist(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.logger.Error("relist-failed", err)
			if !sleepCtx(ctx, retryDelay) {
				return ctx.Err()
			}
			continue
		}
		if first {
			close(c.synced)
			first = false
		}
		err = c.watch(ctx, rev)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.logger.Info("watch-restarting", lager.Data{"reason": fmt.Sprint(err)})
	}
}

// relist replaces the state with a fresh read of the prefix and returns its revision.
func (c *Cache) relist(ctx context.Context) (int64, error) {
	resp, err := c.client.Get(ctx, c.keys.Prefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", c.keys.Prefix(), err)
	}
	c.relists.Add(1)
	st := newCacheState()
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		_ = c.applyPut(st, key, c.keys.parse(key), kv, nil) // undecodable records are logged below
	}
	st.rev = resp.Header.Revision
	c.mu.Lock()
	cellGone := false
	for id := range c.state.cells {
		if _, ok := st.cells[id]; !ok {
			cellGone = true
		}
	}
	c.state = st
	c.events.restart(st.rev)
	c.ownMu.Lock()
	c.own = nil // the list decoded every record; later offers are newer
	c.applied.Store(st.rev)
	c.ownMu.Unlock()
	c.notifyLocked()
	if cellGone {
		c.notifyCellRemovedLocked()
	}
	c.notifyLockChangedLocked()
	c.mu.Unlock()
	c.logger.Info("listed", lager.Data{"revision": st.rev, "keys": len(resp.Kvs), "undecodable": len(st.undecodable)})
	for key, bad := range st.undecodable {
		c.logger.Error("undecodable-record", bad.val, lager.Data{"key": key})
	}
	return st.rev, nil
}

func (c *Cache) watch(ctx context.Context, fromRev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	c.mu.Lock()
	c.cancelWatch = cancel
	c.watchStarted = time.Now()
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cancelWatch = nil
		c.mu.Unlock()
	}()
	wch := c.client.Watch(wctx, c.keys.Prefix(), clientv3.WithPrefix(), clientv3.WithRev(fromRev+1), clientv3.WithProgressNotify())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return err
		}
		if c.beforeApply != nil {
			c.beforeApply(wctx)
		}
		c.applyResponse(wr.Events, wr.IsProgressNotify(), wr.Header.Revision)
	}
	if wctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("watch restarted: the cache stayed behind etcd")
	}
	return fmt.Errorf("watch channel closed")
}

// applyResponse applies one watch response's events to the state and wakes
// whoever waits for what changed. progress is a progress notification of
// etcd's revision headerRev.
func (c *Cache) applyResponse(events []*clientv3.Event, progress bool, headerRev int64) {
	cellsPrefix := c.keys.Prefix() + cellsDir
	locksPrefix := c.keys.Prefix() + locksDir
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ownMu.Lock()
	defer c.ownMu.Unlock()
	st := c.state
	cellGone, lockChanged, wantedGone := false, false, false
	logged0 := c.events.next
	for _, ev := range events {
		key := string(ev.Kv.Key)
		if strings.HasPrefix(key, locksPrefix) {
			lockChanged = true
		}
		pk := c.keys.parse(key)
		// A record with events is read before and after the change, and
		// the change logged for the subscribers.
		logged := c.events.active && hasEvents(pk.kind)
		var before proto.Message
		var beforeLabel string
		if logged {
			before, beforeLabel = st.record(pk), st.labels[key]
		}
		deleted := ev.Type == clientv3.EventTypeDelete
		if deleted {
			if _, ok := st.cells[strings.TrimPrefix(key, cellsPrefix)]; ok && strings.HasPrefix(key, cellsPrefix) {
				cellGone = true
			}
			if !wantedGone && st.isWantedInstance(pk) {
				wantedGone = true
			}
			c.applyDelete(st, key, pk)
		} else if err := c.applyPut(st, key, pk, ev.Kv, c.takeOwn(ev.Kv)); err != nil {
			c.logger.Error("undecodable-record", err, lager.Data{"key": key})
			logged = false // as an undecodable event: nothing to tell
		}
		if logged {
			var after proto.Message
			if !deleted {
				after = st.record(pk)
				if before != nil && st.labels[key] != beforeLabel && proto.Equal(before, after) {
					after = nil // re-encrypted under another key: no change
				}
			}
			if (deleted && before != nil) || after != nil {
				c.events.append(change{kind: pk.kind, rev: ev.Kv.ModRevision, before: before, after: after})
			}
		}
		if ev.Kv.ModRevision > st.rev {
			st.rev = ev.Kv.ModRevision
		}
	}
	if c.events.next > logged0 {
		c.events.signal()
	}
	if progress && headerRev > st.rev {
		st.rev = headerRev
	}
	c.applied.Store(st.rev)
	if len(c.own) > 0 {
		// An offer whose event was not a put of that key (it cannot
		// match any more) is dropped once the cache is past it.
		for k, w := range c.own {
			if w.rev <= st.rev {
				delete(c.own, k)
			}
		}
	}
	c.notifyLocked()
	if cellGone {
		c.notifyCellRemovedLocked()
	}
	if wantedGone {
		notifyAll(c.wantedSubs)
	}
	if lockChanged {
		c.notifyLockChangedLocked()
	}
}

// takeOwn returns the offered model of kv's write and forgets the offer, or
// nil when there is none for this key at this revision; ownMu is held.
func (c *Cache) takeOwn(kv *mvccpb.KeyValue) proto.Message {
	if len(c.own) == 0 {
		return nil
	}
	w, ok := c.own[string(kv.Key)]
	if !ok || w.rev > kv.ModRevision {
		return nil // none, or offered for a later write of this key
	}
	delete(c.own, string(kv.Key))
	if w.rev != kv.ModRevision {
		return nil
	}
	return w.msg
}

// notifyLocked wakes the waiters whose revision the cache now reflects; c.mu is held.
func (c *Cache) notifyLocked() {
	for len(c.waiters) > 0 && c.waiters[0].rev <= c.state.rev {
		w := heap.Pop(&c.waiters).(*revisionWaiter)
		delete(c.waiterAt, w.rev)
		close(w.done)
	}
}

// Revision is the etcd revision the cache reflects.
func (c *Cache) Revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.state.rev
}

// progressDelay is how long a waiter waits for the watch before asking etcd
// for a progress notification: the revision of a successful write always
// arrives as an event, but a lost compare reports a revision that may belong
// to keys outside the prefix, which only a progress notification reveals.
const progressDelay = 50 * time.Millisecond

// WaitForRevision blocks until the cache reflects rev or ctx ends. Waiters
// are kept in a heap, one per revision shared by its callers, and woken
// only when their revision arrives; when the watch is quiet, one shared
// progress request asks etcd for its current revision.
func (c *Cache) WaitForRevision(ctx context.Context, rev int64) error {
	w := c.waiterFor(rev)
	if w == nil {
		return nil
	}
	timer := time.NewTimer(progressDelay)
	defer timer.Stop()
	for {
		select {
		case <-w.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("wait for revision %d (cache at %d): %w", rev, c.Revision(), ctx.Err())
		case <-timer.C:
			c.requestProgress()
			timer.Reset(progressRetry)
		}
	}
}

// waiterFor returns the waiter for rev, registering one unless a caller
// already did; nil when the cache already reflects rev.
func (c *Cache) waiterFor(rev int64) *revisionWaiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.rev >= rev {
		return nil
	}
	if w, ok := c.waiterAt[rev]; ok {
		return w
	}
	w := &revisionWaiter{rev: rev, done: make(chan struct{})}
	heap.Push(&c.waiters, w)
	if c.waiterAt == nil {
		c.waiterAt = map[int64]*revisionWaiter{}
	}
	c.waiterAt[rev] = w
	return w
}

// requestProgress asks etcd for a progress notification, unless one is in flight.
func (c *Cache) requestProgress() {
	if !c.progressAsked.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.progressAsked.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), retryDelay)
		defer cancel()
		_ = c.client.RequestProgress(clientv3.WithRequireLeader(ctx))
	}()
}

// revisionWaiter is one WaitForRevision call.
type revisionWaiter struct {
	rev  int64
	done chan struct{}
}

// revisionWaiters is a min-heap of waiters by revision.
type revisionWaiters []*revisionWaiter

func (h revisionWaiters) Len() int           { return len(h) }
func (h revisionWaiters) Less(i, j int) bool { return h[i].rev < h[j].rev }
func (h revisionWaiters) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *revisionWaiters) Push(x any)        { *h = append(*h, x.(*revisionWaiter)) }
func (h *revisionWaiters) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return w
}

// applyPut stores a put record of key (kv's key, parsed as pk); it returns
// the decode error of an undecodable one. own, if not nil, is the model the
// store wrote as kv's value (see offer): it is stored instead of decoding
// the value.
func (c *Cache) applyPut(st *cacheState, key string, pk parsedKey, kv *mvccpb.KeyValue, own proto.Message) error {
	rev := kv.ModRevision
	var err error
	switch pk.kind {
	case kindSchedule:
		var v *modelsv1.DesiredLRPSchedulingInfo
		if v, err = decodeAs[*modelsv1.DesiredLRPSchedulingInfo](c, kv, own); err == nil {
			c.applyDelete(st, key, pk)
			st.schedules[pk.name] = item[*modelsv1.DesiredLRPSchedulingInfo]{v, rev}
			addTo(st.desiredByDomain, v.GetKey().GetDomain(), pk.name)
		}
	case kindRun:
		var v *modelsv1.DesiredLRPRunInfo
		if v, err = decodeAs[*modelsv1.DesiredLRPRunInfo](c, kv, own); err == nil {
			delete(st.undecodable, key)
			st.runs[pk.name] = item[*modelsv1.DesiredLRPRunInfo]{v, rev}
		}
	case kindActual:
		var v *modelsv1.ActualLRP
		if v, err = decodeAs[*modelsv1.ActualLRP](c, kv, own); err == nil {
			delete(st.undecodable, key)
			st.putActual(pk.actual, v, rev)
		}
	case kindTask:
		var v *modelsv1.Task
		if v, err = decodeAs[*modelsv1.Task](c, kv, own); err == nil {
			c.applyDelete(st, key, pk)
			st.tasks[pk.name] = item[*modelsv1.Task]{v, rev}
			addTo(st.tasksByState, v.GetState(), pk.name)
			if v.GetCellId() != "" {
				addTo(st.tasksByCell, v.GetCellId(), pk.name)
			}
		}
	case kindDomain:
		var v *modelsv1.Domain
		if v, err = decodeAs[*modelsv1.Domain](c, kv, own); err == nil {
			delete(st.undecodable, key)
			st.domains[pk.name] = item[*modelsv1.Domain]{v, rev}
		}
	case kindCell:
		var v *modelsv1.CellPresence
		if v, err = decodeAs[*modelsv1.CellPresence](c, kv, own); err == nil {
			delete(st.undecodable, key)
			st.cells[pk.name] = item[*modelsv1.CellPresence]{v, rev}
		}
	case kindLock:
		delete(st.undecodable, key)
		st.locks[pk.name] = item[[]byte]{append([]byte(nil), kv.Value...), rev}
	default:
		return nil
	}
	if err == nil && hasEvents(pk.kind) {
		st.trackLabel(key, kv)
	}
	if err != nil {
		// The record stays unreadable: what was there before is gone.
		c.applyDelete(st, key, pk)
		err = fmt.Errorf("decode %s: %w", key, err)
		st.undecodable[key] = item[error]{err, rev}
	}
	return err
}

// putActual stores row as the actual LRP id, updating only the indices whose
// entry changed (an update keeps its guid, usually its cell).
func (st *cacheState) putActual(id actualID, row *modelsv1.ActualLRP, rev int64) {
	old, had := st.actuals[id]
	if had {
		st.actuals[id] = item[*modelsv1.ActualLRP]{row, rev}
		if os, ns := old.val.GetState(), row.GetState(); os != ns {
			removeFrom(st.actualsByState, os, id)
			addTo(st.actualsByState, ns, id)
		}
		if oc, nc := old.val.GetInstanceKey().GetCellId(), row.GetInstanceKey().GetCellId(); oc != nc {
			if oc != "" {
				removeFrom(st.actualsByCell, oc, id)
			}
			if nc != "" {
				addTo(st.actualsByCell, nc, id)
			}
		}
		return
	}
	st.actuals[id] = item[*modelsv1.ActualLRP]{row, rev}
	addTo(st.actualsByGUID, id.guid, id)
	addTo(st.actualsByState, row.GetState(), id)
	if cell := row.GetInstanceKey().GetCellId(); cell != "" {
		addTo(st.actualsByCell, cell, id)
	}
}

// decodeAs returns own if it is a T (the store's model of kv's value),
// otherwise kv's value opened and decoded into a new T.
func decodeAs[T proto.Message](c *Cache, kv *mvccpb.KeyValue, own proto.Message) (T, error) {
	if v, ok := own.(T); ok {
		c.ownHits.Add(1)
		return v, nil
	}
	c.decoded.Add(1)
	v := newMessage[T]()
	if err := c.decode(kv, v); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// newMessage returns a new, empty T (a pointer to a generated message).
func newMessage[T proto.Message]() T {
	var zero T
	return zero.ProtoReflect().Type().New().Interface().(T)
}

// decode opens a record (sealed or plaintext) and unmarshals it into v.
func (c *Cache) decode(kv *mvccpb.KeyValue, v proto.Message) error {
	pt, _, err := c.keyring.Open(kv.Key, kv.Value)
	if err != nil {
		return err
	}
	return proto.Unmarshal(pt, v)
}

// applyDelete removes the record of key (parsed as pk) from st.
func (c *Cache) applyDelete(st *cacheState, key string, pk parsedKey) {
	delete(st.undecodable, key)
	if len(st.labels) > 0 {
		delete(st.labels, key)
	}
	switch pk.kind {
	case kindSchedule:
		if old, ok := st.schedules[pk.name]; ok {
			removeFrom(st.desiredByDomain, old.val.GetKey().GetDomain(), pk.name)
			delete(st.schedules, pk.name)
		}
	case kindRun:
		delete(st.runs, pk.name)
	case kindActual:
		id := pk.actual
		if old, ok := st.actuals[id]; ok {
			removeFrom(st.actualsByGUID, id.guid, id)
			removeFrom(st.actualsByState, old.val.GetState(), id)
			if cell := old.val.GetInstanceKey().GetCellId(); cell != "" {
				removeFrom(st.actualsByCell, cell, id)
			}
			delete(st.actuals, id)
		}
	case kindTask:
		if old, ok := st.tasks[pk.name]; ok {
			removeFrom(st.tasksByState, old.val.GetState(), pk.name)
			if old.val.GetCellId() != "" {
				removeFrom(st.tasksByCell, old.val.GetCellId(), pk.name)
			}
			delete(st.tasks, pk.name)
		}
	case kindDomain:
		delete(st.domains, pk.name)
	case kindCell:
		delete(st.cells, pk.name)
	case kindLock:
		delete(st.locks, pk.name)
	}
}

// Undecodable lists the keys whose values could not be decoded, with their errors.
func (c *Cache) Undecodable() map[string]error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]error, len(c.state.undecodable))
	for k, v := range c.state.undecodable {
		out[k] = v.val
	}
	return out
}

// undecodableAt returns the decode error of a key, if it holds an undecodable record.
func (c *Cache) undecodableAt(key string) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if bad, ok := c.state.undecodable[key]; ok {
		return bad.val
	}
	return nil
}

// read runs f with the state under the read lock.
func (c *Cache) read(f func(st *cacheState)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	f(c.state)
}

// sortedActuals returns the rows of ids sorted by guid, index, presence.
func sortedActuals(st *cacheState, ids set[actualID], keep func(*modelsv1.ActualLRP) bool) []*modelsv1.ActualLRP {
	idList := make([]actualID, 0, len(ids))
	for id := range ids {
		idList = append(idList, id)
	}
	sort.Slice(idList, func(i, j int) bool { return lessActual(idList[i], idList[j]) })
	out := make([]*modelsv1.ActualLRP, 0, len(idList))
	for _, id := range idList {
		v := st.actuals[id].val
		if keep == nil || keep(v) {
			out = append(out, v)
		}
	}
	return out
}

func lessActual(a, b actualID) bool {
	if a.guid != b.guid {
		return a.guid < b.guid
	}
	if a.index != b.index {
		return a.index < b.index
	}
	return a.presence < b.presence
}
