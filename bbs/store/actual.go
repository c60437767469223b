package store

import (
	"context"
	"fmt"
	"sort"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// ActualFilter selects instance rows; empty fields match everything.
type ActualFilter struct {
	Domain       string
	CellID       string
	ProcessGUIDs []string
	// Index, when set, selects one index (with one process guid).
	Index *int32
}

// ListActualLRPs lists instance rows sorted by process guid, index and presence, with the cache revision.
func (s *Store) ListActualLRPs(f ActualFilter) ([]*modelsv1.ActualLRP, int64) {
	var out []*modelsv1.ActualLRP
	var rev int64
	keep := func(a *modelsv1.ActualLRP) bool {
		return (f.Domain == "" || a.GetKey().GetDomain() == f.Domain) &&
			(f.CellID == "" || a.GetInstanceKey().GetCellId() == f.CellID) &&
			(f.Index == nil || a.GetKey().GetIndex() == *f.Index)
	}
	s.cache.read(func(st *cacheState) {
		rev = st.rev
		switch {
		case len(f.ProcessGUIDs) > 0:
			out = actualsOfGUIDs(st, dedupSorted(sortedCopy(f.ProcessGUIDs)), keep)
		case f.CellID != "":
			out = sortedActuals(st, st.actualsByCell[f.CellID], keep)
		default:
			guids := make([]string, 0, len(st.actualsByGUID))
			for g := range st.actualsByGUID {
				guids = append(guids, g)
			}
			sort.Strings(guids)
			out = actualsOfGUIDs(st, guids, keep)
		}
	})
	return out, rev
}

// actualsOfGUIDs returns the rows of sorted guids, each guid's rows sorted by index and presence.
func actualsOfGUIDs(st *cacheState, guids []string, keep func(*modelsv1.ActualLRP) bool) []*modelsv1.ActualLRP {
	n := 0
	for _, g := range guids {
		n += len(st.actualsByGUID[g])
	}
	out := make([]*modelsv1.ActualLRP, 0, n)
	ids := make([]actualID, 0, 64)
	for _, g := range guids {
		ids = ids[:0]
		for id := range st.actualsByGUID[g] {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return lessActual(ids[i], ids[j]) })
		for _, id := range ids {
			if v := st.actuals[id].val; keep(v) {
				out = append(out, v)
			}
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// GetActualLRP returns one instance row.
func (s *Store) GetActualLRP(guid string, index int32, presence modelsv1.ActualLRPPresence) (*modelsv1.ActualLRP, error) {
	var out *modelsv1.ActualLRP
	s.cache.read(func(st *cacheState) {
		if row, ok := st.actuals[actualID{guid, index, presence}]; ok {
			out = row.val
		}
	})
	if out == nil {
		return nil, notFound("actual LRP %s/%d (%s)", guid, index, models.PresenceName(presence))
	}
	return out, nil
}

// rowFor returns the row of an id, or NotFound.
func rowFor(st *cacheState, id actualID) (item[*modelsv1.ActualLRP], error) {
	row, ok := st.actuals[id]
	if !ok {
		return row, notFound("actual LRP %s/%d (%s)", id.guid, id.index, models.PresenceName(id.presence))
	}
	return row, nil
}

// otherPresenceWith finds a non-ordinary row of the index held by this instance key.
func otherPresenceWith(st *cacheState, guid string, index int32, ik *modelsv1.ActualLRPInstanceKey) (actualID, item[*modelsv1.ActualLRP], bool) {
	for _, p := range []modelsv1.ActualLRPPresence{models.Suspect, models.Evacuating} {
		id := actualID{guid, index, p}
		if row, ok := st.actuals[id]; ok && models.SameInstance(row.val.GetInstanceKey(), ik) {
			return id, row, true
		}
	}
	return actualID{}, item[*modelsv1.ActualLRP]{}, false
}

func (s *Store) putRow(m *mutation, id actualID, rev int64, row *modelsv1.ActualLRP) error {
	k := s.keys.Actual(id.guid, id.index, id.presence)
	m.guard(k, rev)
	if err := s.putProto(m, k, row); err != nil {
		return err
	}
	// Rows are built afresh for each write and never changed after it, so
	// the cache may keep this one instead of decoding it back (the hot
	// path: claims and starts). Other records are decoded.
	m.written = append(m.written, written{key: k, msg: row})
	return nil
}

func (s *Store) delRow(m *mutation, id actualID, rev int64) {
	k := s.keys.Actual(id.guid, id.index, id.presence)
	m.guard(k, rev)
	m.del(k)
}

// ClaimActualLRP is a cell claiming an instance. A claim by a suspect instance is ignored.
func (s *Store) ClaimActualLRP(ctx context.Context, guid string, index int32, ik *modelsv1.ActualLRPInstanceKey) error {
	return s.apply(ctx, s.claim(guid, index, ik))
}

// Claim is one claim of ClaimActualLRPs.
type Claim struct {
	ProcessGuid string
	Index       int32
	InstanceKey *modelsv1.ActualLRPInstanceKey
}

// ClaimActualLRPs is ClaimActualLRP for many instances at once, each
// succeeding or failing alone; errs[i] is claims[i]'s outcome.
func (s *Store) ClaimActualLRPs(ctx context.Context, claims []Claim) []error {
	builds := make([]func(*cacheState) (*mutation, error), len(claims))
	for i, c := range claims {
		builds[i] = s.claim(c.ProcessGuid, c.Index, c.InstanceKey)
	}
	return s.applyMany(ctx, builds)
}

// claim builds a claim's write.
func (s *Store) claim(guid string, index int32, ik *modelsv1.ActualLRPInstanceKey) func(st *cacheState) (*mutation, error) {
	return func(st *cacheState) (*mutation, error) {
		id := actualID{guid, index, models.Ordinary}
		row, err := rowFor(st, id)
		if err != nil {
			return nil, err
		}
		if !models.SameInstance(row.val.GetInstanceKey(), ik) {
			if _, _, ok := otherPresenceWith(st, guid, index, ik); ok {
				return nil, nil
			}
		}
		next, changed, err := models.Claim(row.val, ik, s.now())
		if err != nil || !changed {
			return nil, err
		}
		m := &mutation{}
		return m, s.putRow(m, id, row.rev, next)
	}
}

// StartActualLRP reports an instance RUNNING. It creates the row when there is
// none, ignores a start by a suspect or evacuating instance, treats an
// identical repeat as a heartbeat, and deletes the index's suspect and
// evacuating rows once their replacement runs.
func (s *Store) StartActualLRP(ctx context.Context, key *modelsv1.ActualLRPKey, info models.StartInfo) error {
	return s.apply(ctx, s.start(key, info))
}

// Start is one start report of StartActualLRPs.
type Start struct {
	Key  *modelsv1.ActualLRPKey
	Info models.StartInfo
}

// StartActualLRPs is StartActualLRP for many instances at once, each
// succeeding or failing alone; errs[i] is starts[i]'s outcome.
func (s *Store) StartActualLRPs(ctx context.Context, starts []Start) []error {
	builds := make([]func(*cacheState) (*mutation, error), len(starts))
	for i, st := range starts {
		builds[i] = s.start(st.Key, st.Info)
	}
	return s.applyMany(ctx, builds)
}

// start builds a start report's write.
func (s *Store) start(key *modelsv1.ActualLRPKey, info models.StartInfo) func(st *cacheState) (*mutation, error) {
	return func(st *cacheState) (*mutation, error) {
		key := key
		guid, index := key.GetProcessGuid(), key.GetIndex()
		id := actualID{guid, index, models.Ordinary}
		row, exists := st.actuals[id]
		if exists && !models.SameInstance(row.val.GetInstanceKey(), info.InstanceKey) {
			if _, _, ok := otherPresenceWith(st, guid, index, info.InstanceKey); ok {
				return nil, nil
			}
		}
		if !exists && key.GetDomain() == "" {
			if sched, ok := st.schedules[guid]; ok {
				key = &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: index, Domain: sched.val.GetKey().GetDomain()}
			}
		}
		var cur *modelsv1.ActualLRP
		if exists {
			cur = row.val
		}
		if v := info.RanVersion; v != nil && (cur == nil || cur.GetState() == models.Unclaimed) {
			if err := checkRanVersion(st, guid, index, *v); err != nil {
				return nil, err
			}
		}
		next, changed, err := models.Start(cur, key, info, s.now())
		if err != nil || !changed {
			return nil, err
		}
		m := &mutation{}
		if err := s.putRow(m, id, row.rev, next); err != nil {
			return nil, err
		}
		if next.GetState() == models.Running {
			for _, p := range []modelsv1.ActualLRPPresence{models.Suspect, models.Evacuating} {
				other := actualID{guid, index, p}
				if orow, ok := st.actuals[other]; ok && !models.SameInstance(orow.val.GetInstanceKey(), info.InstanceKey) {
					s.delRow(m, other, orow.rev)
				}
			}
		}
		return m, nil
	}
}

// checkRanVersion refuses the start of an instance a cell ran without
// claiming it first unless ran is the current version of the desired LRP's
// run info: the desired LRP may have been desired again, or its run info
// rewritten, since the auction named the version the cell ran.
func checkRanVersion(st *cacheState, guid string, index int32, ran models.RunInfoVersion) error {
	cur, ok := st.runInfoVersion(guid)
	if !ok || index >= st.schedules[guid].val.GetInstances() {
		return fmt.Errorf("%w: cannot start instance %s/%d without a claim: the LRP is not desired at that index", models.ErrInvalidTransition, guid, index)
	}
	if cur != ran {
		return fmt.Errorf("%w: cannot start instance %s/%d without a claim: it runs run info %s@%d, and the desired LRP's is %s@%d",
			models.ErrInvalidTransition, guid, index, ran.Epoch, ran.Revision, cur.Epoch, cur.Revision)
	}
	return nil
}

// CrashResult is the row after a crash and whether it is due for an auction now.
type CrashResult struct {
	After   *modelsv1.ActualLRP
	Restart bool
}

// CrashActualLRP records a crash by the crash policy. A crash reported by a
// suspect or evacuating instance deletes that row.
func (s *Store) CrashActualLRP(ctx context.Context, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey, reason string) (*CrashResult, error) {
	var res *CrashResult
	err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
		guid, index := key.GetProcessGuid(), key.GetIndex()
		id := actualID{guid, index, models.Ordinary}
		row, exists := st.actuals[id]
		if !exists || !models.SameInstance(row.val.GetInstanceKey(), ik) {
			if oid, orow, ok := otherPresenceWith(st, guid, index, ik); ok {
				m := &mutation{}
				s.delRow(m, oid, orow.rev)
				res = &CrashResult{}
				return m, nil
			}
		}
		if !exists {
			return nil, notFound("actual LRP %s/%d", guid, index)
		}
		next, restart, err := models.Crash(row.val, ik, reason, s.policy, s.now())
		if err != nil {
			return nil, err
		}
		res = &CrashResult{After: next, Restart: restart}
		m := &mutation{}
		return m, s.putRow(m, id, row.rev, next)
	})
	return res, err
}

// FailActualLRP records a placement error on an UNCLAIMED row.
func (s *Store) FailActualLRP(ctx context.Context, key *modelsv1.ActualLRPKey, reason string) error {
	return s.apply(ctx, func(st *cacheState) (*mutation, error) {
		id := actualID{key.GetProcessGuid(), key.GetIndex(), models.Ordinary}
		row, err := rowFor(st, id)
		if err != nil {
			return nil, err
		}
		if row.val.GetPlacementError() == models.Truncate(reason) && row.val.GetState() == models.Unclaimed {
			return nil, nil
		}
		next, err := models.Fail(row.val, reason)
		if err != nil {
			return nil, err
		}
		m := &mutation{}
		return m, s.putRow(m, id, row.rev, next)
	})
}

// RemoveActualLRP deletes an instance row: the ordinary one, or the row this
// instance key holds. With an instance key the row must be that instance's.
func (s *Store) RemoveActualLRP(ctx context.Context, guid string, index int32, ik *modelsv1.ActualLRPInstanceKey) error {
	return s.apply(ctx, func(st *cacheState) (*mutation, error) {
		id := actualID{guid, index, models.Ordinary}
		row, exists := st.actuals[id]
		if ik != nil && (!exists || !models.SameInstance(row.val.GetInstanceKey(), ik)) {
			if oid, orow, ok := otherPresenceWith(st, guid, index, ik); ok {
				m := &mutation{}
				s.delRow(m, oid, orow.rev)
				return m, nil
			}
		}
		if !exists {
			return nil, notFound("actual LRP %s/%d", guid, index)
		}
		if err := models.CheckRemove(row.val, ik); err != nil {
			return nil, err
		}
		m := &mutation{}
		s.delRow(m, id, row.rev)
		return m, nil
	})
}

// RetireActualLRP stops an instance. UNCLAIMED and CRASHED rows, and rows on a
// cell that is gone, are deleted; for a CLAIMED or RUNNING row on a live cell
// it returns the row and the cell, for the caller to stop it there.
func (s *Store) RetireActualLRP(ctx context.Context, key *modelsv1.ActualLRPKey) (stop *modelsv1.ActualLRP, cell *modelsv1.CellPresence, err error) {
	err = s.apply(ctx, func(st *cacheState) (*mutation, error) {
		stop, cell = nil, nil
		id := actualID{key.GetProcessGuid(), key.GetIndex(), models.Ordinary}
		row, err := rowFor(st, id)
		if err != nil {
			return nil, err
		}
		if state := row.val.GetState(); state == models.Claimed || state == models.Running {
			if c, ok := st.cells[row.val.GetInstanceKey().GetCellId()]; ok {
				stop, cell = row.val, c.val
				return nil, nil
			}
		}
		m := &mutation{}
		s.delRow(m, id, row.rev)
		return m, nil
	})
	return stop, cell, err
}
