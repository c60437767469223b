package store

import (
	"context"
	"errors"
	"time"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// EvacuationResult is the answer to an evacuation call: whether the draining
// cell keeps the container, and whether the index's ordinary row was
// unclaimed (or restarted) so that the caller must request its auction.
type EvacuationResult struct {
	Keep    bool
	Auction bool
}

// indexRows are the rows of one index, with whether the caller holds them.
type indexRows struct {
	guid                       string
	index                      int32
	ord, evac, sus             item[*modelsv1.ActualLRP]
	hasOrd, hasEvac, hasSus    bool
	ordMine, evacMine, susMine bool
}

func rowsOf(st *cacheState, guid string, index int32, ik *modelsv1.ActualLRPInstanceKey) indexRows {
	r := indexRows{guid: guid, index: index}
	r.ord, r.hasOrd = st.actuals[actualID{guid, index, models.Ordinary}]
	r.evac, r.hasEvac = st.actuals[actualID{guid, index, models.Evacuating}]
	r.sus, r.hasSus = st.actuals[actualID{guid, index, models.Suspect}]
	r.ordMine = r.hasOrd && models.SameInstance(r.ord.val.GetInstanceKey(), ik)
	r.evacMine = r.hasEvac && models.SameInstance(r.evac.val.GetInstanceKey(), ik)
	r.susMine = r.hasSus && models.SameInstance(r.sus.val.GetInstanceKey(), ik)
	return r
}

func (r indexRows) id(p modelsv1.ActualLRPPresence) actualID { return actualID{r.guid, r.index, p} }

func placedState(s modelsv1.ActualLRPState) bool { return s == models.Claimed || s == models.Running }

// EvacuateClaimedActualLRP is a draining cell giving up an instance it has
// claimed but not started: the ordinary row it holds is unclaimed (the caller
// requests its auction); an evacuating or suspect row it holds is deleted.
// The container is never kept.
func (s *Store) EvacuateClaimedActualLRP(ctx context.Context, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) (EvacuationResult, error) {
	var res EvacuationResult
	err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
		res = EvacuationResult{}
		r := rowsOf(st, key.GetProcessGuid(), key.GetIndex(), ik)
		m := &mutation{}
		if r.evacMine {
			s.delRow(m, r.id(models.Evacuating), r.evac.rev)
		}
		if r.susMine {
			s.delRow(m, r.id(models.Suspect), r.sus.rev)
		}
		if r.ordMine && placedState(r.ord.val.GetState()) {
			if err := s.putRow(m, r.id(models.Ordinary), r.ord.rev, models.Unclaim(r.ord.val, s.now())); err != nil {
				return nil, err
			}
			res.Auction = true
		}
		return nonEmpty(m), nil
	})
	return res, err
}

// EvacuateRunningActualLRP is a draining cell reporting a running instance,
// with Diego's semantics. ROLLING (the default):
//   - no desired LRP, an index beyond the desired instances, or a replacement
//     already RUNNING or CRASHED: the caller's evacuating row is deleted, keep=false;
//   - another cell holds the index's evacuating row: keep=false (the caller's
//     ordinary row, if any, is unclaimed and auctioned);
//   - the caller holds the ordinary row: it is copied as the EVACUATING row
//     (RUNNING, routable as before), the ordinary row is unclaimed and auctioned, keep=true;
//   - the caller holds a suspect row: it becomes the EVACUATING row (the
//     replacement already exists), keep=true;
//   - otherwise (a retry while the replacement is unplaced or starting) the
//     caller's evacuating row is created or refreshed, keep=true.
//
// RECREATE: no evacuating copy. The caller's ordinary row is unclaimed (keep=false)
// only when every desired instance is RUNNING, so instances move one at a
// time; until then keep=true and the cell retries.
func (s *Store) EvacuateRunningActualLRP(ctx context.Context, key *modelsv1.ActualLRPKey, info models.StartInfo) (EvacuationResult, error) {
	// Concurrent RECREATE calls for instances of one LRP each guard the
	// other instances' rows, and the committer never batches a guard with a
	// write of the same key, so only one of them unclaims at a time.
	var res EvacuationResult
	err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
		res = EvacuationResult{}
		guid, index := key.GetProcessGuid(), key.GetIndex()
		r := rowsOf(st, guid, index, info.InstanceKey)
		m := &mutation{}
		sched, desired := st.schedules[guid]
		if !desired || index >= sched.val.GetInstances() {
			if r.evacMine {
				s.delRow(m, r.id(models.Evacuating), r.evac.rev)
			}
			return nonEmpty(m), nil
		}
		if sched.val.GetUpdateStrategy() == modelsv1.UpdateStrategy_UPDATE_STRATEGY_RECREATE {
			return s.evacuateRecreate(st, r, sched.val.GetInstances(), &res)
		}
		if r.hasOrd && !r.ordMine && (r.ord.val.GetState() == models.Running || r.ord.val.GetState() == models.Crashed) {
			// The replacement runs (or ran and crashed): the old instance may go.
			if r.evacMine {
				s.delRow(m, r.id(models.Evacuating), r.evac.rev)
			}
			if r.susMine {
				s.delRow(m, r.id(models.Suspect), r.sus.rev)
			}
			return nonEmpty(m), nil
		}
		otherEvac := r.hasEvac && !r.evacMine
		switch {
		case r.ordMine && placedState(r.ord.val.GetState()):
			if err := s.putRow(m, r.id(models.Ordinary), r.ord.rev, models.Unclaim(r.ord.val, s.now())); err != nil {
				return nil, err
			}
			res.Auction = true
			if otherEvac {
				return m, nil
			}
			evac, err := s.evacuatingRow(r.ord.val, key, info)
			if err != nil {
				return nil, err
			}
			res.Keep = true
			return m, s.putRow(m, r.id(models.Evacuating), 0, evac)
		case r.susMine && placedState(r.sus.val.GetState()):
			s.delRow(m, r.id(models.Suspect), r.sus.rev)
			if otherEvac {
				return m, nil
			}
			evac, err := s.evacuatingRow(r.sus.val, key, info)
			if err != nil {
				return nil, err
			}
			res.Keep = true
			return m, s.putRow(m, r.id(models.Evacuating), 0, evac)
		case otherEvac:
			return nil, nil
		}
		var cur *modelsv1.ActualLRP
		if r.evacMine {
			cur = r.evac.val
		}
		next, changed, err := evacuatingStart(cur, key, info, s.now())
		if err != nil {
			return nil, err
		}
		res.Keep = true
		if !changed {
			return nil, nil
		}
		return m, s.putRow(m, r.id(models.Evacuating), r.evac.rev, next)
	})
	return res, err
}

// evacuateRecreate is EvacuateRunningActualLRP for the RECREATE strategy.
func (s *Store) evacuateRecreate(st *cacheState, r indexRows, instances int32, res *EvacuationResult) (*mutation, error) {
	m := &mutation{}
	if r.evacMine {
		s.delRow(m, r.id(models.Evacuating), r.evac.rev)
	}
	switch {
	case r.ordMine && placedState(r.ord.val.GetState()):
		if !allRunning(st, r.guid, instances) {
			res.Keep = true
			return nonEmpty(m), nil
		}
		// The decision holds only if no other instance changed meanwhile:
		// one guard per instance while they fit a transaction, else one
		// guard on the LRP's whole row prefix (no row changed since the
		// cache's revision), which is stricter but a single compare.
		if s.room(m, int(instances)+1, int(instances)*(len(s.keys.Actual(r.guid, instances, models.Ordinary))+cmpOverhead)+1024) {
			for i := int32(0); i < instances; i++ {
				if i != r.index {
					m.guard(s.keys.Actual(r.guid, i, models.Ordinary), st.actuals[actualID{r.guid, i, models.Ordinary}].rev)
				}
			}
		} else {
			m.guardPrefix(s.keys.ActualPrefix(r.guid), st.rev)
		}
		res.Auction = true
		return m, s.putRow(m, r.id(models.Ordinary), r.ord.rev, models.Unclaim(r.ord.val, s.now()))
	case r.susMine && placedState(r.sus.val.GetState()):
		// A replacement exists: the suspect goes once it runs.
		if r.hasOrd && r.ord.val.GetState() == models.Running {
			s.delRow(m, r.id(models.Suspect), r.sus.rev)
			return m, nil
		}
		res.Keep = true
	}
	return nonEmpty(m), nil
}

// allRunning says whether every index below instances has a RUNNING ordinary row.
func allRunning(st *cacheState, guid string, instances int32) bool {
	for i := int32(0); i < instances; i++ {
		row, ok := st.actuals[actualID{guid, i, models.Ordinary}]
		if !ok || row.val.GetState() != models.Running {
			return false
		}
	}
	return true
}

// evacuatingRow is from (an ordinary or suspect row the caller holds) copied
// as the EVACUATING row, RUNNING with the reported net info.
func (s *Store) evacuatingRow(from *modelsv1.ActualLRP, key *modelsv1.ActualLRPKey, info models.StartInfo) (*modelsv1.ActualLRP, error) {
	base := models.CloneActualLRP(from)
	base.Presence = models.Evacuating
	next, _, err := models.Start(base, key, info, s.now())
	if err != nil {
		return nil, err
	}
	next.Presence = models.Evacuating
	return next, nil
}

// evacuatingStart creates or refreshes the caller's EVACUATING row.
func evacuatingStart(cur *modelsv1.ActualLRP, key *modelsv1.ActualLRPKey, info models.StartInfo, now time.Time) (*modelsv1.ActualLRP, bool, error) {
	next, changed, err := models.Start(cur, key, info, now)
	if err != nil || !changed {
		return next, changed, err
	}
	next.Presence = models.Evacuating
	return next, true, nil
}

// EvacuateStoppedActualLRP is a draining cell reporting a stopped instance:
// every row of the index the caller holds is deleted. keep is false.
func (s *Store) EvacuateStoppedActualLRP(ctx context.Context, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) (EvacuationResult, error) {
	err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
		r := rowsOf(st, key.GetProcessGuid(), key.GetIndex(), ik)
		m := &mutation{}
		if r.ordMine {
			s.delRow(m, r.id(models.Ordinary), r.ord.rev)
		}
		if r.evacMine {
			s.delRow(m, r.id(models.Evacuating), r.evac.rev)
		}
		if r.susMine {
			s.delRow(m, r.id(models.Suspect), r.sus.rev)
		}
		return nonEmpty(m), nil
	})
	return EvacuationResult{}, err
}

// EvacuateCrashedActualLRP is a draining cell reporting a crash: a crash of
// the ordinary instance is recorded by the crash policy (Auction when it
// restarts at once); the caller's evacuating or suspect row is deleted. keep
// is false; a row the caller does not hold is not an error.
func (s *Store) EvacuateCrashedActualLRP(ctx context.Context, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey, reason string) (EvacuationResult, error) {
	res, err := s.CrashActualLRP(ctx, key, ik, reason)
	if errors.Is(err, models.ErrNotFound) || errors.Is(err, models.ErrInvalidTransition) {
		return EvacuationResult{}, nil
	}
	if err != nil {
		return EvacuationResult{}, err
	}
	return EvacuationResult{Auction: res.Restart}, nil
}

// RemoveEvacuatingActualLRP deletes the caller's EVACUATING row. An absent
// row is not an error; a row held by another instance is FailedPrecondition.
func (s *Store) RemoveEvacuatingActualLRP(ctx context.Context, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) error {
	return s.apply(ctx, func(st *cacheState) (*mutation, error) {
		r := rowsOf(st, key.GetProcessGuid(), key.GetIndex(), ik)
		switch {
		case !r.hasEvac:
			return nil, nil
		case !r.evacMine:
			return nil, models.CheckRemove(r.evac.val, ik)
		}
		m := &mutation{}
		s.delRow(m, r.id(models.Evacuating), r.evac.rev)
		return m, nil
	})
}

// ReclaimEvacuatingActualLRP ends an evacuation that cannot finish: while no
// replacement is placed (the ordinary row is UNCLAIMED, CRASHED or absent) the
// caller's EVACUATING row becomes the ordinary row again, RUNNING on the
// caller's cell, and reclaimed is true. A replacement that runs deletes the
// caller's evacuating row; one that is claimed leaves it (reclaimed false). A
// caller already holding the ordinary row is reclaimed.
func (s *Store) ReclaimEvacuatingActualLRP(ctx context.Context, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) (reclaimed bool, err error) {
	err = s.apply(ctx, func(st *cacheState) (*mutation, error) {
		reclaimed = false
		guid, index := key.GetProcessGuid(), key.GetIndex()
		r := rowsOf(st, guid, index, ik)
		if r.ordMine {
			reclaimed = placedState(r.ord.val.GetState())
			return nil, nil
		}
		if !r.evacMine {
			return nil, nil
		}
		m := &mutation{}
		sched, desired := st.schedules[guid]
		if !desired || index >= sched.val.GetInstances() {
			s.delRow(m, r.id(models.Evacuating), r.evac.rev)
			return m, nil
		}
		if r.hasOrd {
			switch r.ord.val.GetState() {
			case models.Running:
				s.delRow(m, r.id(models.Evacuating), r.evac.rev)
				return m, nil
			case models.Claimed:
				return nil, nil
			}
		}
		next := models.CloneActualLRP(r.evac.val)
		next.Presence = models.Ordinary
		ordRev := int64(0)
		if r.hasOrd {
			ordRev = r.ord.rev
			next.CrashCount = r.ord.val.GetCrashCount()
			next.ModificationTag = models.NextTag(r.ord.val.GetModificationTag())
		} else {
			next.ModificationTag = models.NewTag()
		}
		s.delRow(m, r.id(models.Evacuating), r.evac.rev)
		if err := s.putRow(m, r.id(models.Ordinary), ordRev, next); err != nil {
			return nil, err
		}
		reclaimed = true
		return m, nil
	})
	return reclaimed, err
}

// nonEmpty is m, or nil when it writes nothing.
func nonEmpty(m *mutation) *mutation {
	if len(m.ops) == 0 {
		return nil
	}
	return m
}
