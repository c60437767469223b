package store

import (
	"time"

	"context"
	"fmt"
	"sort"

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

// DesireLRP stores a new desired LRP and an UNCLAIMED row for each of its
// instances in one transaction (when it fits etcd's operation limit; a larger
// desire writes the rows that do not fit in follow-up transactions, and
// convergence creates any that failed). It returns the stored LRP.
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
	var rest []int32
	err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
		if _, ok := st.schedules[guid]; ok {
			return nil, fmt.Errorf("%w: desired LRP %s", models.ErrAlreadyExists, guid)
		}
		m := &mutation{}
		m.guard(s.keys.Schedule(guid), 0)
		m.guard(s.keys.Run(guid), 0)
		if err := putProto(m, s.keys.Schedule(guid), sched); err != nil {
			return nil, err
		}
		if err := putProto(m, s.keys.Run(guid), run); err != nil {
			return nil, err
		}
		rest = rest[:0]
		for i := int32(0); i < d.GetInstances(); i++ {
			if len(m.ops) >= s.maxOps {
				rest = append(rest, i)
				continue
			}
			if err := s.addUnclaimed(st, m, sched.GetKey(), i, now); err != nil {
				return nil, err
			}
		}
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		if _, err := s.CreateUnclaimed(ctx, sched.GetKey(), rest); err != nil {
			s.logger.Error("desire-create-remaining-instances", err, map[string]any{"process_guid": guid, "count": len(rest)})
		}
	}
	return d, nil
}

// addUnclaimed adds the creation of an index's UNCLAIMED ordinary row to m,
// unless a row already exists.
func (s *Store) addUnclaimed(st *cacheState, m *mutation, key *modelsv1.DesiredLRPKey, index int32, now time.Time) error {
	id := actualID{guid: key.GetProcessGuid(), index: index, presence: models.Ordinary}
	if _, ok := st.actuals[id]; ok {
		return nil
	}
	k := s.keys.Actual(id.guid, index, models.Ordinary)
	m.guard(k, 0)
	row := &modelsv1.ActualLRP{
		Key:             &modelsv1.ActualLRPKey{ProcessGuid: key.GetProcessGuid(), Index: index, Domain: key.GetDomain()},
		State:           models.Unclaimed,
		Presence:        models.Ordinary,
		Since:           now.UnixNano(),
		ModificationTag: models.NewTag(),
	}
	return putProto(m, k, row)
}

// CreateUnclaimed creates UNCLAIMED ordinary rows for the indices that have no
// ordinary row, in transactions of at most the committer's operation limit. It
// returns the indices it created.
func (s *Store) CreateUnclaimed(ctx context.Context, key *modelsv1.DesiredLRPKey, indices []int32) ([]int32, error) {
	var created []int32
	for start := 0; start < len(indices); start += s.maxOps {
		chunk := indices[start:min(len(indices), start+s.maxOps)]
		var made []int32
		err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
			m := &mutation{}
			made = made[:0]
			for _, i := range chunk {
				before := len(m.ops)
				if err := s.addUnclaimed(st, m, key, i, s.now()); err != nil {
					return nil, err
				}
				if len(m.ops) > before {
					made = append(made, i)
				}
			}
			if len(m.ops) == 0 {
				return nil, nil
			}
			return m, nil
		})
		if err != nil {
			return created, fmt.Errorf("create instances of %s: %w", key.GetProcessGuid(), err)
		}
		created = append(created, made...)
	}
	return created, nil
}

// UpdateResult is what an update changed and what is left for the caller.
type UpdateResult struct {
	Before, After *modelsv1.DesiredLRPSchedulingInfo
	// NewIndices got UNCLAIMED rows and need placing.
	NewIndices []int32
	// Stop are CLAIMED or RUNNING instances above the new instance count, to stop through their cells.
	Stop []*modelsv1.ActualLRP
}

// UpdateDesiredLRP applies an update. Scaling up creates the new rows in the
// same transaction; scaling down deletes UNCLAIMED and CRASHED rows above the
// count and returns the others for stopping.
func (s *Store) UpdateDesiredLRP(ctx context.Context, guid string, u *modelsv1.DesiredLRPUpdate) (*UpdateResult, error) {
	var res *UpdateResult
	now := s.now()
	err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
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
		if err := putProto(m, k, next); err != nil {
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
			if err := putProto(m, s.keys.Run(guid), nextRun); err != nil {
				return nil, err
			}
		}
		res = &UpdateResult{Before: cur.val, After: next}
		oldN, newN := cur.val.GetInstances(), next.GetInstances()
		for i := oldN; i < newN; i++ {
			before := len(m.ops)
			if err := s.addUnclaimed(st, m, next.GetKey(), i, now); err != nil {
				return nil, err
			}
			if len(m.ops) > before {
				res.NewIndices = append(res.NewIndices, i)
			}
		}
		if newN < oldN {
			for id := range st.actualsByGUID[guid] {
				if id.index < newN {
					continue
				}
				row := st.actuals[id]
				switch row.val.GetState() {
				case models.Unclaimed, models.Crashed:
					ak := s.keys.Actual(id.guid, id.index, id.presence)
					m.guard(ak, row.rev)
					m.del(ak)
				default:
					res.Stop = append(res.Stop, row.val)
				}
			}
		}
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// RemoveDesiredLRP deletes a desired LRP and its UNCLAIMED and CRASHED rows in
// one transaction; it returns the CLAIMED and RUNNING rows, to stop through
// their cells.
func (s *Store) RemoveDesiredLRP(ctx context.Context, guid string) (removed *modelsv1.DesiredLRPSchedulingInfo, stop []*modelsv1.ActualLRP, err error) {
	err = s.apply(ctx, func(st *cacheState) (*mutation, error) {
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
		for id := range st.actualsByGUID[guid] {
			row := st.actuals[id]
			switch row.val.GetState() {
			case models.Unclaimed, models.Crashed:
				ak := s.keys.Actual(id.guid, id.index, id.presence)
				m.guard(ak, row.rev)
				m.del(ak)
			default:
				stop = append(stop, row.val)
			}
		}
		return m, nil
	})
	return removed, stop, err
}

// GetDesiredLRP returns a desired LRP in full.
func (s *Store) GetDesiredLRP(guid string) (*modelsv1.DesiredLRP, error) {
	var out *modelsv1.DesiredLRP
	s.cache.read(func(st *cacheState) {
		sched, ok := st.schedules[guid]
		if !ok {
			return
		}
		out = MergeDesired(sched.val, st.runs[guid].val)
	})
	if out == nil {
		if err := s.checkDecodable(s.keys.Schedule(guid)); err != nil {
			return nil, err
		}
		return nil, notFound("desired LRP %s", guid)
	}
	return out, nil
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
