package store

import (
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// splitDesired divides a desired LRP into its scheduling and run records.
func splitDesired(d *modelsv1.DesiredLRP) (*modelsv1.DesiredLRPSchedulingInfo, *modelsv1.DesiredLRPRunInfo) {
	key := &modelsv1.DesiredLRPKey{ProcessGuid: d.GetProcessGuid(), Domain: d.GetDomain(), LogGuid: d.GetLogGuid()}
	drivers := make([]string, 0, len(d.GetVolumeMounts()))
	for _, vm := range d.GetVolumeMounts() {
		drivers = append(drivers, vm.GetDriver())
	}
	sched := &modelsv1.DesiredLRPSchedulingInfo{
		Key:             key,
		Annotation:      d.GetAnnotation(),
		Instances:       d.GetInstances(),
		Resource:        &modelsv1.DesiredLRPResource{MemoryMb: d.GetMemoryMb(), DiskMb: d.GetDiskMb(), MaxPids: d.GetMaxPids(), RootFs: d.GetRootFs()},
		Routes:          d.GetRoutes(),
		ModificationTag: d.GetModificationTag(),
		VolumePlacement: &modelsv1.VolumePlacement{DriverNames: drivers},
		PlacementTags:   d.GetPlacementTags(),
		UpdateStrategy:  d.GetUpdateStrategy(),
		MetricTags:      d.GetMetricTags(),
	}
	run := &modelsv1.DesiredLRPRunInfo{
		Key:                           proto.Clone(key).(*modelsv1.DesiredLRPKey),
		EnvironmentVariables:          d.GetEnvironmentVariables(),
		Setup:                         d.GetSetup(),
		Action:                        d.GetAction(),
		Monitor:                       d.GetMonitor(),
		StartTimeoutMs:                d.GetStartTimeoutMs(),
		Privileged:                    d.GetPrivileged(),
		CpuWeight:                     d.GetCpuWeight(),
		Ports:                         d.GetPorts(),
		EgressRules:                   d.GetEgressRules(),
		LogSource:                     d.GetLogSource(),
		MetricsGuid:                   d.GetMetricsGuid(),
		CachedDependencies:            d.GetCachedDependencies(),
		TrustedSystemCertificatesPath: d.GetTrustedSystemCertificatesPath(),
		VolumeMounts:                  d.GetVolumeMounts(),
		Network:                       d.GetNetwork(),
		CertificateProperties:         d.GetCertificateProperties(),
		ImageUsername:                 d.GetImageUsername(),
		ImagePassword:                 d.GetImagePassword(),
		CheckDefinition:               d.GetCheckDefinition(),
		ImageLayers:                   d.GetImageLayers(),
		Sidecars:                      d.GetSidecars(),
		LogRateLimit:                  d.GetLogRateLimit(),
		VolumeMountedFiles:            d.GetVolumeMountedFiles(),
	}
	return sched, run
}

// MergeDesired joins a scheduling and a run record into a full desired LRP.
func MergeDesired(sched *modelsv1.DesiredLRPSchedulingInfo, run *modelsv1.DesiredLRPRunInfo) *modelsv1.DesiredLRP {
	return &modelsv1.DesiredLRP{
		ProcessGuid:                   sched.GetKey().GetProcessGuid(),
		Domain:                        sched.GetKey().GetDomain(),
		LogGuid:                       sched.GetKey().GetLogGuid(),
		RootFs:                        sched.GetResource().GetRootFs(),
		Instances:                     sched.GetInstances(),
		MemoryMb:                      sched.GetResource().GetMemoryMb(),
		DiskMb:                        sched.GetResource().GetDiskMb(),
		MaxPids:                       sched.GetResource().GetMaxPids(),
		Routes:                        sched.GetRoutes(),
		Annotation:                    sched.GetAnnotation(),
		ModificationTag:               sched.GetModificationTag(),
		PlacementTags:                 sched.GetPlacementTags(),
		UpdateStrategy:                sched.GetUpdateStrategy(),
		MetricTags:                    sched.GetMetricTags(),
		EnvironmentVariables:          run.GetEnvironmentVariables(),
		Setup:                         run.GetSetup(),
		Action:                        run.GetAction(),
		Monitor:                       run.GetMonitor(),
		StartTimeoutMs:                run.GetStartTimeoutMs(),
		Privileged:                    run.GetPrivileged(),
		CpuWeight:                     run.GetCpuWeight(),
		Ports:                         run.GetPorts(),
		EgressRules:                   run.GetEgressRules(),
		LogSource:                     run.GetLogSource(),
		MetricsGuid:                   run.GetMetricsGuid(),
		CachedDependencies:            run.GetCachedDependencies(),
		TrustedSystemCertificatesPath: run.GetTrustedSystemCertificatesPath(),
		VolumeMounts:                  run.GetVolumeMounts(),
		Network:                       run.GetNetwork(),
		CertificateProperties:         run.GetCertificateProperties(),
		ImageUsername:                 run.GetImageUsername(),
		ImagePassword:                 run.GetImagePassword(),
		CheckDefinition:               run.GetCheckDefinition(),
		ImageLayers:                   run.GetImageLayers(),
		Sidecars:                      run.GetSidecars(),
		LogRateLimit:                  run.GetLogRateLimit(),
		VolumeMountedFiles:            run.GetVolumeMountedFiles(),
	}
}

// Writes that grow with their input are split into transactions that fit
// etcd's limits (Options.MaxTxnOps, Options.MaxRequestBytes) and committed in
// order. The desired LRP's two records always change together, in the first
// transaction; the instance rows follow in chunks. Each follow-up chunk is
// guarded by the scheduling record's revision and re-reads the cache, so it
// only does what the desired state still asks for. Interrupted between
// chunks (a crash, a lost lock, an etcd failure), the state left is one that
// convergence repairs: a scale-up or desire misses rows (convergence creates
// missing instances), a scale-down leaves extra rows (retired, in a fresh
// domain), a removal leaves rows without a desired LRP (orphans, removed in a
// fresh domain).

// DesireLRP stores a new desired LRP and an UNCLAIMED row for each of its
// instances. The desired records and as many rows as fit are one
// transaction; the other rows follow in transactions that fit etcd's limits.
// Once the first transaction commits the desire is durable: a failure of a
// follow-up is logged and left to convergence. A desired LRP whose records
// alone exceed the limits fails with models.ErrTooLarge. It returns the
// stored LRP.
func (s *Store) DesireLRP(ctx context.Context, d *modelsv1.DesiredLRP) (*modelsv1.DesiredLRP, error) {
	guid := d.GetProcessGuid()
	if err := s.checkDecodable(s.keys.Schedule(guid)); err != nil {
		return nil, err
	}
	now := s.now()
	d = proto.Clone(d).(*modelsv1.DesiredLRP)
	d.ModificationTag = models.NewTag()
	sched, run := splitDesired(d)
	run.CreatedAt = now.UnixNano()
	var upTo int32 // the first transaction handles the indices below upTo
	err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
		if _, ok := st.schedules[guid]; ok {
			return nil, fmt.Errorf("%w: desired LRP %s", models.ErrAlreadyExists, guid)
		}
		m := &mutation{}
		m.guard(s.keys.Schedule(guid), 0)
		m.guard(s.keys.Run(guid), 0)
		if err := s.putProto(m, s.keys.Schedule(guid), sched); err != nil {
			return nil, err
		}
		if err := s.putProto(m, s.keys.Run(guid), run); err != nil {
			return nil, err
		}
		if err := s.committer.tooLarge(m); err != nil {
			return nil, fmt.Errorf("desired LRP %s: %w", guid, err)
		}
		for upTo = 0; upTo < d.GetInstances(); upTo++ {
			ok, err := s.addUnclaimed(st, m, sched.GetKey(), upTo, now)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
		}
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	if upTo < d.GetInstances() {
		if _, err := s.createInstances(ctx, guid, upTo, d.GetInstances()); err != nil {
			s.logger.Error("desire-create-remaining-instances", err, map[string]any{"process_guid": guid, "from": upTo, "to": d.GetInstances()})
		}
	}
	return d, nil
}

// addUnclaimed adds the creation of an index's UNCLAIMED ordinary row to m,
// unless a row already exists. It returns false, adding nothing, when m has
// no room left for the row.
func (s *Store) addUnclaimed(st *cacheState, m *mutation, key *modelsv1.DesiredLRPKey, index int32, now time.Time) (bool, error) {
	id := actualID{guid: key.GetProcessGuid(), index: index, presence: models.Ordinary}
	if _, ok := st.actuals[id]; ok {
		return true, nil
	}
	k := s.keys.Actual(id.guid, index, models.Ordinary)
	row := &modelsv1.ActualLRP{
		Key:             &modelsv1.ActualLRPKey{ProcessGuid: key.GetProcessGuid(), Index: index, Domain: key.GetDomain()},
		State:           models.Unclaimed,
		Presence:        models.Ordinary,
		Since:           now.UnixNano(),
		ModificationTag: models.NewTag(),
	}
	b, err := s.marshal(k, row)
	if err != nil {
		return false, err
	}
	if !s.room(m, 1, len(k)+cmpOverhead+putCost(k, len(b))) {
		return false, nil
	}
	m.guard(k, 0)
	m.put(k, b)
	return true, nil
}

// createInstances creates the missing UNCLAIMED rows of indices [from, to)
// of a desired LRP, in order, one transaction of at most the split limits at
// a time. Each transaction is guarded by the scheduling record's revision
// and creates only indices below its current instance count, so a
// concurrent scale-down or removal wins. It returns the indices it created.
func (s *Store) createInstances(ctx context.Context, guid string, from, to int32) ([]int32, error) {
	var created []int32
	for from < to {
		var made []int32
		next := from
		err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
			made, next = made[:0], from
			sched, ok := st.schedules[guid]
			if !ok {
				next = to
				return nil, nil
			}
			limit := min(to, sched.val.GetInstances())
			m := &mutation{}
			m.guard(s.keys.Schedule(guid), sched.rev)
			now := s.now()
			for ; next < limit; next++ {
				before := len(m.ops)
				ok, err := s.addUnclaimed(st, m, sched.val.GetKey(), next, now)
				if err != nil {
					return nil, err
				}
				if !ok {
					break
				}
				if len(m.ops) > before {
					made = append(made, next)
				}
			}
			if next >= limit {
				next = to
			}
			if len(m.ops) == 0 {
				return nil, nil
			}
			return m, nil
		})
		if err != nil {
			return created, fmt.Errorf("create instances %d..%d of %s: %w", from, to-1, guid, err)
		}
		if next == from {
			return created, fmt.Errorf("create instance %d of %s: %w: one row does not fit a transaction", from, guid, models.ErrTooLarge)
		}
		if s.hooks.afterChunk != nil {
			if err := s.hooks.afterChunk(); err != nil {
				return created, err
			}
		}
		created = append(created, made...)
		from = next
	}
	return created, nil
}

// deleteRows deletes the rows of ids for which still holds in the current
// state, in order, one transaction of at most the split limits at a time,
// each guarded by the scheduling record of guid at its cached revision (0:
// absent). Rows that are gone or no longer match are skipped.
func (s *Store) deleteRows(ctx context.Context, guid string, ids []actualID, still func(st *cacheState, id actualID, row *modelsv1.ActualLRP) bool) error {
	for len(ids) > 0 {
		used := 0
		err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
			used = 0
			m := &mutation{}
			m.guard(s.keys.Schedule(guid), st.schedules[guid].rev)
			for _, id := range ids {
				if row, ok := st.actuals[id]; ok && still(st, id, row.val) {
					k := s.keys.Actual(id.guid, id.index, id.presence)
					if !s.room(m, 1, 2*len(k)+cmpOverhead+delOverhead) {
						break
					}
					s.delRow(m, id, row.rev)
				}
				used++
			}
			if len(m.ops) == 0 {
				return nil, nil
			}
			return m, nil
		})
		if err != nil {
			return fmt.Errorf("delete %d instance rows of %s: %w", len(ids), guid, err)
		}
		if used == 0 {
			return fmt.Errorf("delete instance rows of %s: %w: one deletion does not fit a transaction", guid, models.ErrTooLarge)
		}
		if s.hooks.afterChunk != nil {
			if err := s.hooks.afterChunk(); err != nil {
				return err
			}
		}
		ids = ids[used:]
	}
	return nil
}

// retirable says whether a row is deleted outright when its instance is no
// longer desired (the others are stopped on their cells).
func retirable(row *modelsv1.ActualLRP) bool {
	state := row.GetState()
	return state == models.Unclaimed || state == models.Crashed
}

// sortedIDs returns the ids of a guid's rows sorted by index and presence.
func sortedIDs(ids set[actualID]) []actualID {
	out := make([]actualID, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return lessActual(out[i], out[j]) })
	return out
}

// UpdateResult is what an update changed and what is left for the caller.
type UpdateResult struct {
	Before, After *modelsv1.DesiredLRPSchedulingInfo
	// NewIndices got UNCLAIMED rows and need placing.
	NewIndices []int32
	// Stop are CLAIMED or RUNNING instances above the new instance count, to stop through their cells.
	Stop []*modelsv1.ActualLRP
}

// UpdateDesiredLRP applies an update. The scheduling record (and the run
// record, for new image credentials) changes in the first transaction, with
// as many row writes as fit; the rest follow in order in transactions that
// fit etcd's limits. Scaling up creates UNCLAIMED rows for the new indices;
// scaling down deletes UNCLAIMED and CRASHED rows above the count and
// returns the others for stopping. An error after the first transaction
// (the update itself is durable) is logged and left to convergence.
func (s *Store) UpdateDesiredLRP(ctx context.Context, guid string, u *modelsv1.DesiredLRPUpdate) (*UpdateResult, error) {
	var res *UpdateResult
	now := s.now()
	var createFrom int32 // scale-up: indices from createFrom are left for follow-ups
	var leftover []actualID
	err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
		leftover = leftover[:0]
		cur, ok := st.schedules[guid]
		if !ok {
			return nil, notFound("desired LRP %s", guid)
		}
		next := proto.Clone(cur.val).(*modelsv1.DesiredLRPSchedulingInfo)
		if u.Instances != nil {
			next.Instances = u.GetInstances()
		}
		if u.Annotation != nil {
			next.Annotation = u.GetAnnotation()
		}
		if u.GetSetRoutes() {
			next.Routes = u.GetRoutes()
		}
		if u.GetSetMetricTags() {
			next.MetricTags = u.GetMetricTags()
		}
		next.ModificationTag = models.NextTag(cur.val.GetModificationTag())
		m := &mutation{}
		k := s.keys.Schedule(guid)
		m.guard(k, cur.rev)
		if err := s.putProto(m, k, next); err != nil {
			return nil, err
		}
		if u.ImageUsername != nil {
			run, ok := st.runs[guid]
			if !ok {
				return nil, notFound("run info of desired LRP %s", guid)
			}
			nextRun := proto.Clone(run.val).(*modelsv1.DesiredLRPRunInfo)
			nextRun.ImageUsername, nextRun.ImagePassword = u.GetImageUsername(), u.GetImagePassword()
			m.guard(s.keys.Run(guid), run.rev)
			if err := s.putProto(m, s.keys.Run(guid), nextRun); err != nil {
				return nil, err
			}
		}
		if err := s.committer.tooLarge(m); err != nil {
			return nil, fmt.Errorf("update of desired LRP %s: %w", guid, err)
		}
		res = &UpdateResult{Before: cur.val, After: next}
		oldN, newN := cur.val.GetInstances(), next.GetInstances()
		createFrom = newN
		for i := oldN; i < newN; i++ {
			before := len(m.ops)
			ok, err := s.addUnclaimed(st, m, next.GetKey(), i, now)
			if err != nil {
				return nil, err
			}
			if !ok {
				createFrom = i
				break
			}
			if len(m.ops) > before {
				res.NewIndices = append(res.NewIndices, i)
			}
		}
		if newN < oldN {
			full := false
			for _, id := range sortedIDs(st.actualsByGUID[guid]) {
				if id.index < newN {
					continue
				}
				row := st.actuals[id]
				if !retirable(row.val) {
					res.Stop = append(res.Stop, row.val)
					continue
				}
				ak := s.keys.Actual(id.guid, id.index, id.presence)
				if full || !s.room(m, 1, 2*len(ak)+cmpOverhead+delOverhead) {
					full = true
					leftover = append(leftover, id)
					continue
				}
				m.guard(ak, row.rev)
				m.del(ak)
			}
		}
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	if createFrom < res.After.GetInstances() {
		made, err := s.createInstances(ctx, guid, createFrom, res.After.GetInstances())
		res.NewIndices = append(res.NewIndices, made...)
		if err != nil {
			s.logger.Error("update-create-remaining-instances", err, map[string]any{"process_guid": guid, "from": createFrom})
		}
	}
	if len(leftover) > 0 {
		err := s.deleteRows(ctx, guid, leftover, func(st *cacheState, id actualID, row *modelsv1.ActualLRP) bool {
			sched, ok := st.schedules[guid]
			return ok && id.index >= sched.val.GetInstances() && retirable(row)
		})
		if err != nil {
			s.logger.Error("update-delete-extra-instances", err, map[string]any{"process_guid": guid, "rows": len(leftover)})
		}
	}
	return res, nil
}

// RemoveDesiredLRP deletes a desired LRP, then its UNCLAIMED and CRASHED
// rows: the desired records and as many rows as fit are one transaction,
// the other rows follow in transactions that fit etcd's limits, each
// guarded by the desired LRP's absence (a new desire of the same guid keeps
// its rows). It returns the CLAIMED and RUNNING rows, to stop through their
// cells. Rows left by an interrupted removal are orphans, which convergence
// removes.
func (s *Store) RemoveDesiredLRP(ctx context.Context, guid string) (removed *modelsv1.DesiredLRPSchedulingInfo, stop []*modelsv1.ActualLRP, err error) {
	var leftover []actualID
	err = s.apply(ctx, func(st *cacheState) (*mutation, error) {
		leftover = leftover[:0]
		cur, ok := st.schedules[guid]
		if !ok {
			return nil, notFound("desired LRP %s", guid)
		}
		removed, stop = cur.val, nil
		m := &mutation{}
		m.guard(s.keys.Schedule(guid), cur.rev)
		m.del(s.keys.Schedule(guid))
		if run, ok := st.runs[guid]; ok {
			m.guard(s.keys.Run(guid), run.rev)
			m.del(s.keys.Run(guid))
		}
		full := false
		for _, id := range sortedIDs(st.actualsByGUID[guid]) {
			row := st.actuals[id]
			if !retirable(row.val) {
				stop = append(stop, row.val)
				continue
			}
			ak := s.keys.Actual(id.guid, id.index, id.presence)
			if full || !s.room(m, 1, 2*len(ak)+cmpOverhead+delOverhead) {
				full = true
				leftover = append(leftover, id)
				continue
			}
			m.guard(ak, row.rev)
			m.del(ak)
		}
		return m, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(leftover) > 0 {
		err := s.deleteRows(ctx, guid, leftover, func(st *cacheState, _ actualID, row *modelsv1.ActualLRP) bool {
			_, desired := st.schedules[guid]
			return !desired && retirable(row)
		})
		if err != nil {
			s.logger.Error("remove-delete-instances", err, map[string]any{"process_guid": guid, "rows": len(leftover)})
		}
	}
	return removed, stop, nil
}

// GetDesiredLRP returns a desired LRP in full.
func (s *Store) GetDesiredLRP(guid string) (*modelsv1.DesiredLRP, error) {
	d, _, err := s.GetDesiredLRPVersion(guid)
	return d, err
}

// GetDesiredLRPVersion is GetDesiredLRP with the version of the run info it holds.
func (s *Store) GetDesiredLRPVersion(guid string) (*modelsv1.DesiredLRP, models.RunInfoVersion, error) {
	var out *modelsv1.DesiredLRP
	var v models.RunInfoVersion
	s.cache.read(func(st *cacheState) {
		sched, ok := st.schedules[guid]
		if !ok {
			return
		}
		run := st.runs[guid]
		out = MergeDesired(sched.val, run.val)
		v = runInfoVersion(sched, run)
	})
	if out == nil {
		if err := s.checkDecodable(s.keys.Schedule(guid)); err != nil {
			return nil, models.RunInfoVersion{}, err
		}
		return nil, models.RunInfoVersion{}, notFound("desired LRP %s", guid)
	}
	return out, v, nil
}

// GetRunInfoVersion returns the version of a desired LRP's run info; false
// when the desired LRP or its run record is missing. It is a map lookup.
func (s *Store) GetRunInfoVersion(guid string) (models.RunInfoVersion, bool) {
	var v models.RunInfoVersion
	ok := false
	s.cache.read(func(st *cacheState) { v, ok = st.runInfoVersion(guid) })
	return v, ok
}

// runInfoVersion is the current version of a desired LRP's run info; false
// when the desired LRP or its run record is missing.
func (st *cacheState) runInfoVersion(guid string) (models.RunInfoVersion, bool) {
	sched, okS := st.schedules[guid]
	run, okR := st.runs[guid]
	if !okS || !okR {
		return models.RunInfoVersion{}, false
	}
	return runInfoVersion(sched, run), true
}

// runInfoVersion is the version of the run info run, of the desired LRP
// scheduled as sched.
func runInfoVersion(sched item[*modelsv1.DesiredLRPSchedulingInfo], run item[*modelsv1.DesiredLRPRunInfo]) models.RunInfoVersion {
	return models.RunInfoVersion{Epoch: sched.val.GetModificationTag().GetEpoch(), Revision: run.rev}
}

// GetSchedulingInfo returns a desired LRP's scheduling record.
func (s *Store) GetSchedulingInfo(guid string) (*modelsv1.DesiredLRPSchedulingInfo, error) {
	var out *modelsv1.DesiredLRPSchedulingInfo
	s.cache.read(func(st *cacheState) {
		if sched, ok := st.schedules[guid]; ok {
			out = sched.val
		}
	})
	if out == nil {
		return nil, notFound("desired LRP %s", guid)
	}
	return out, nil
}

// DesiredFilter selects desired LRPs; empty fields match everything.
type DesiredFilter struct {
	Domain       string
	ProcessGUIDs []string
}

// ListSchedulingInfos lists scheduling records sorted by process guid, with the cache revision.
func (s *Store) ListSchedulingInfos(f DesiredFilter) ([]*modelsv1.DesiredLRPSchedulingInfo, int64) {
	var out []*modelsv1.DesiredLRPSchedulingInfo
	var rev int64
	s.cache.read(func(st *cacheState) {
		rev = st.rev
		for _, guid := range desiredGUIDs(st, f) {
			out = append(out, st.schedules[guid].val)
		}
	})
	return out, rev
}

// ListDesiredLRPs lists full desired LRPs sorted by process guid, with the cache revision.
func (s *Store) ListDesiredLRPs(f DesiredFilter) ([]*modelsv1.DesiredLRP, int64) {
	var out []*modelsv1.DesiredLRP
	var rev int64
	s.cache.read(func(st *cacheState) {
		rev = st.rev
		for _, guid := range desiredGUIDs(st, f) {
			out = append(out, MergeDesired(st.schedules[guid].val, st.runs[guid].val))
		}
	})
	return out, rev
}

func desiredGUIDs(st *cacheState, f DesiredFilter) []string {
	var guids []string
	switch {
	case len(f.ProcessGUIDs) > 0:
		for _, g := range f.ProcessGUIDs {
			if sched, ok := st.schedules[g]; ok && (f.Domain == "" || sched.val.GetKey().GetDomain() == f.Domain) {
				guids = append(guids, g)
			}
		}
	case f.Domain != "":
		for g := range st.desiredByDomain[f.Domain] {
			guids = append(guids, g)
		}
	default:
		guids = make([]string, 0, len(st.schedules))
		for g := range st.schedules {
			guids = append(guids, g)
		}
	}
	sort.Strings(guids)
	return dedupSorted(guids)
}

func dedupSorted(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
