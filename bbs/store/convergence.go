package store

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// This file is the store's side of convergence: one consistent snapshot of
// the cache for the planner (package converger), and a batched, guarded
// write path for the plan. The store holds no convergence policy.

// DesiredRow is a desired LRP's scheduling record and its mod revision.
type DesiredRow struct {
	Info *modelsv1.DesiredLRPSchedulingInfo
	Rev  int64
}

// ActualRow is an instance row, the identity its key gives it, and its mod revision.
type ActualRow struct {
	ProcessGUID string
	Index       int32
	// Presence is the key's presence segment (the record's own field should agree).
	Presence modelsv1.ActualLRPPresence
	LRP      *modelsv1.ActualLRP
	Rev      int64
}

// TaskRow is a task and its mod revision.
type TaskRow struct {
	Task *modelsv1.Task
	Rev  int64
}

// Snapshot is the whole BBS state at one cache revision. Its records are the
// cache's own immutable values: readers must not modify them.
type Snapshot struct {
	// Revision is the etcd revision the snapshot reflects.
	Revision int64
	// Desired holds the scheduling records by process guid.
	Desired map[string]DesiredRow
	// Actuals holds the instance rows by process guid (including guids with no desired LRP), unordered.
	Actuals map[string][]ActualRow
	// Tasks holds every task, unordered.
	Tasks []TaskRow
	// Cells holds the live cell presences by cell id.
	Cells map[string]*modelsv1.CellPresence
	// Domains holds the domain records by name (a domain's key vanishes when its lease expires).
	Domains map[string]*modelsv1.Domain
}

// Snapshot reads the whole state under one read lock of the cache. It costs
// O(records) and copies no record.
func (s *Store) Snapshot() *Snapshot {
	var snap *Snapshot
	s.cache.read(func(st *cacheState) {
		snap = &Snapshot{
			Revision: st.rev,
			Desired:  make(map[string]DesiredRow, len(st.schedules)),
			Actuals:  make(map[string][]ActualRow, len(st.actualsByGUID)),
			Tasks:    make([]TaskRow, 0, len(st.tasks)),
			Cells:    make(map[string]*modelsv1.CellPresence, len(st.cells)),
			Domains:  make(map[string]*modelsv1.Domain, len(st.domains)),
		}
		for guid, it := range st.schedules {
			snap.Desired[guid] = DesiredRow{Info: it.val, Rev: it.rev}
		}
		// One backing array for all rows keeps the copy to a single allocation.
		all := make([]ActualRow, 0, len(st.actuals))
		for guid, ids := range st.actualsByGUID {
			start := len(all)
			for id := range ids {
				it := st.actuals[id]
				all = append(all, ActualRow{ProcessGUID: id.guid, Index: id.index, Presence: id.presence, LRP: it.val, Rev: it.rev})
			}
			snap.Actuals[guid] = all[start:len(all):len(all)]
		}
		for _, it := range st.tasks {
			snap.Tasks = append(snap.Tasks, TaskRow{Task: it.val, Rev: it.rev})
		}
		for id, it := range st.cells {
			snap.Cells[id] = it.val
		}
		for name, it := range st.domains {
			snap.Domains[name] = it.val
		}
	})
	return snap
}

// Guard requires the record at Key to be at mod revision Rev (0: absent).
type Guard struct {
	Key string
	Rev int64
}

// Write puts Value at Key, or deletes Key when Value is nil.
type Write struct {
	Key   string
	Value proto.Message
}

// Change is a set of guarded writes that commit together or not at all.
// Build keys with Keys.
type Change struct {
	Guards []Guard
	Writes []Write
}

// ChangeResults reports what ApplyChanges did, index by index.
type ChangeResults struct {
	// Applied says whether each change committed.
	Applied []bool
	// Conflicts counts changes whose guards no longer held (a concurrent write won).
	Conflicts int
	// Failed counts changes etcd did not answer for (unknown outcome) or that could not be encoded.
	Failed int
}

// ApplyChanges commits many guarded changes through the group committer,
// packed into as few transactions as its limits allow (each change a nested
// transaction, so one lost guard fails only its own change). A change whose
// guard fails is not retried: the caller plans again from a newer snapshot.
// It returns once every change has an answer and the cache reflects the
// writes that committed. The error joins etcd failures (their changes'
// outcome is unknown) and encoding errors; results are always filled.
func (s *Store) ApplyChanges(ctx context.Context, changes []Change) (ChangeResults, error) {
	return s.ApplyChangesInChunks(ctx, changes, len(changes), nil)
}

// ChunkCommitted is told that changes[from:to] all have answers (applied,
// indexed like the changes, says which committed) and that the cache
// reflects those that did, unless waiting for it failed (the error of
// ApplyChangesInChunks then says so).
type ChunkCommitted func(from, to int, applied []bool)

// ApplyChangesInChunks is ApplyChanges that reports progress: the changes
// are queued to the committer in order, at most two chunks ahead of the
// answers, and committed is called for each run of chunk changes as soon as
// the run is answered, so a caller can act on the first changes (auction
// their instances) while the rest are still committing, and other writers'
// requests interleave with the chunks instead of queueing behind them all.
// committed may be nil; chunk < 1 means one chunk.
func (s *Store) ApplyChangesInChunks(ctx context.Context, changes []Change, chunk int, committed ChunkCommitted) (ChangeResults, error) {
	res := ChangeResults{Applied: make([]bool, len(changes))}
	if len(changes) == 0 {
		return res, nil
	}
	if chunk < 1 || chunk > len(changes) {
		chunk = len(changes)
	}
	ms := make([]*mutation, 0, len(changes))
	index := make([]int, 0, len(changes))
	var errs []error
	for i, c := range changes {
		m := &mutation{}
		for _, g := range c.Guards {
			m.guard(g.Key, g.Rev)
		}
		var err error
		for _, w := range c.Writes {
			if w.Value == nil {
				m.del(w.Key)
				continue
			}
			if err = s.putProto(m, w.Key, w.Value); err != nil {
				break
			}
		}
		if err != nil {
			res.Failed++
			errs = append(errs, fmt.Errorf("change %d: %w", i, err))
			continue
		}
		ms = append(ms, m)
		index = append(index, i)
	}
	queued := make([]bool, len(ms))
	sent := 0 // mutations handed to the committer (or refused) so far
	enqueueUpTo := func(to int) {
		for ; sent < len(ms) && index[sent] < to; sent++ {
			if err := s.committer.enqueue(ctx, ms[sent]); err != nil {
				res.Failed++
				if len(errs) < 5 {
					errs = append(errs, fmt.Errorf("change %d: %w", index[sent], err))
				}
				continue
			}
			queued[sent] = true
		}
	}
	var newest, seen int64 // the newest revision answered; the newest the cache was waited for
	j := 0                 // the next mutation to wait for
	for from := 0; from < len(changes); from += chunk {
		to := min(from+chunk, len(changes))
		// Queue this chunk and the next, no further: the committer is
		// shared, and the cells' claims and starts of the instances
		// auctioned from the first chunks must not wait behind the whole
		// plan (a lost cell's thousands of suspects).
		enqueueUpTo(min(to+chunk, len(changes)))
		for ; j < len(ms) && index[j] < to; j++ {
			if !queued[j] {
				continue
			}
			switch r := s.committer.wait(ctx, ms[j]); {
			case r.err != nil:
				res.Failed++
				if len(errs) < 5 { // the same etcd failure repeats for a whole batch
					errs = append(errs, r.err)
				}
			case r.ok:
				res.Applied[index[j]] = true
				newest = max(newest, r.rev)
			default:
				res.Conflicts++
				newest = max(newest, r.rev)
			}
		}
		if newest > seen {
			if err := s.cache.WaitForRevision(ctx, newest); err != nil && len(errs) < 5 {
				errs = append(errs, err)
			}
			seen = newest
		}
		if committed != nil {
			committed(from, to, res.Applied)
		}
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("apply %d changes (%d failed): %w", len(changes), res.Failed, errors.Join(errs...))
	}
	return res, nil
}

// CellRemovals returns a channel that receives a value whenever a cell
// presence disappears from the cache (its lease expired or it was deleted),
// after the cache reflects the removal. Signals coalesce: one pending value
// stands for any number of removals. Call the returned function to
// unsubscribe.
func (c *Cache) CellRemovals() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	if c.cellSubs == nil {
		c.cellSubs = map[chan struct{}]struct{}{}
	}
	c.cellSubs[ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.cellSubs, ch)
		c.mu.Unlock()
	}
}

// notifyCellRemovedLocked signals the CellRemovals subscribers; c.mu is held.
func (c *Cache) notifyCellRemovedLocked() {
	for ch := range c.cellSubs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// WantedInstanceRemovals returns a channel that receives a value whenever
// the ORDINARY row of an instance that its desired LRP still wants is
// deleted (a cell that lost the container removed it, or it was retired),
// after the cache reflects the deletion, so that convergence can create the
// replacement at once instead of at its next periodic pass. Removals that
// a scale-down or a removed desired LRP explain do not signal. Signals
// coalesce like CellRemovals'. Call the returned function to unsubscribe.
func (c *Cache) WantedInstanceRemovals() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	if c.wantedSubs == nil {
		c.wantedSubs = map[chan struct{}]struct{}{}
	}
	c.wantedSubs[ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.wantedSubs, ch)
		c.mu.Unlock()
	}
}

// isWantedInstance reports whether pk names the ORDINARY row of an instance
// whose desired LRP (in st) still wants its index.
func (st *cacheState) isWantedInstance(pk parsedKey) bool {
	if pk.kind != kindActual || pk.actual.presence != models.Ordinary {
		return false
	}
	if _, ok := st.actuals[pk.actual]; !ok {
		return false
	}
	sched, ok := st.schedules[pk.actual.guid]
	return ok && pk.actual.index < sched.val.GetInstances()
}

// notifyAll signals every subscriber without blocking; the caller holds the
// cache's lock.
func notifyAll(subs map[chan struct{}]struct{}) {
	for ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
