package server

import (
	"context"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/auctionrequest"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/store"
	"github.com/gavelhq/gavel/internal/authz"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// stopTimeout bounds the background stop of instances left by an update or removal.
const stopTimeout = time.Minute

func indices(n int32) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}

// DesireLRP creates a desired LRP and asks for its placement.
func (s *Server) DesireLRP(ctx context.Context, req *bbsv1.DesireLRPRequest) (*bbsv1.DesireLRPResponse, error) {
	if err := models.ValidateDesiredLRPWithin(req.GetDesiredLrp(), s.opts.Limits); err != nil {
		return nil, err
	}
	d, err := s.store.DesireLRP(ctx, req.GetDesiredLrp())
	if err != nil {
		return nil, err
	}
	if sched, err := s.store.GetSchedulingInfo(d.GetProcessGuid()); err == nil && d.GetInstances() > 0 {
		s.opts.Auctions.RequestLRPs(auctionrequest.LRPStart(sched, indices(d.GetInstances())...))
	}
	return &bbsv1.DesireLRPResponse{DesiredLrp: d}, nil
}

// UpdateDesiredLRP changes a desired LRP's mutable fields.
func (s *Server) UpdateDesiredLRP(ctx context.Context, req *bbsv1.UpdateDesiredLRPRequest) (*bbsv1.UpdateDesiredLRPResponse, error) {
	if err := models.ValidateDesiredLRPUpdateWithin(req.GetProcessGuid(), req.GetUpdate(), s.opts.Limits); err != nil {
		return nil, err
	}
	res, err := s.store.UpdateDesiredLRP(ctx, req.GetProcessGuid(), req.GetUpdate())
	if err != nil {
		return nil, err
	}
	if len(res.NewIndices) > 0 {
		s.opts.Auctions.RequestLRPs(auctionrequest.LRPStart(res.After, res.NewIndices...))
	}
	s.stopInstances(ctx, res.Stop)
	return &bbsv1.UpdateDesiredLRPResponse{SchedulingInfo: res.After}, nil
}

// RemoveDesiredLRP removes a desired LRP and stops its instances.
func (s *Server) RemoveDesiredLRP(ctx context.Context, req *bbsv1.RemoveDesiredLRPRequest) (*bbsv1.RemoveDesiredLRPResponse, error) {
	if err := models.ValidateProcessGUID(req.GetProcessGuid()); err != nil {
		return nil, err
	}
	_, stop, err := s.store.RemoveDesiredLRP(ctx, req.GetProcessGuid())
	if err != nil {
		return nil, err
	}
	s.stopInstances(ctx, stop)
	return &bbsv1.RemoveDesiredLRPResponse{}, nil
}

// stopInstances stops running instances through their cells in the
// background; an instance whose cell is gone is removed directly.
func (s *Server) stopInstances(ctx context.Context, rows []*modelsv1.ActualLRP) {
	if len(rows) == 0 {
		return
	}
	s.goBackground(ctx, stopTimeout, func(ctx context.Context) {
		for _, row := range rows {
			if err := s.stopOne(ctx, row); err != nil {
				s.logger.Error("stop-instance-failed", err, lager.Data{"process_guid": row.GetKey().GetProcessGuid(), "index": row.GetKey().GetIndex()})
			}
		}
	})
}

func (s *Server) stopOne(ctx context.Context, row *modelsv1.ActualLRP) error {
	cell, err := s.store.GetCell(row.GetInstanceKey().GetCellId())
	if err != nil {
		return s.store.RemoveActualLRP(ctx, row.GetKey().GetProcessGuid(), row.GetKey().GetIndex(), row.GetInstanceKey())
	}
	var last error
	for attempt := 0; attempt < s.opts.RetireAttempts; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = s.opts.Cells.StopLRPInstance(actx, cell, row.GetKey(), row.GetInstanceKey())
		cancel()
		if last == nil || ctx.Err() != nil {
			return last
		}
	}
	return last
}

// GetDesiredLRP returns one desired LRP.
func (s *Server) GetDesiredLRP(ctx context.Context, req *bbsv1.GetDesiredLRPRequest) (*bbsv1.GetDesiredLRPResponse, error) {
	if err := models.ValidateProcessGUID(req.GetProcessGuid()); err != nil {
		return nil, err
	}
	d, v, err := s.store.GetDesiredLRPVersion(req.GetProcessGuid())
	if err != nil {
		return nil, err
	}
	return &bbsv1.GetDesiredLRPResponse{DesiredLrp: d, RunInfoRevision: v.Revision}, nil
}

func desiredFilter(f *bbsv1.DesiredLRPFilter) (store.DesiredFilter, error) {
	if err := models.ValidateProcessGUIDs("filter.process_guids", f.GetProcessGuids()); err != nil {
		return store.DesiredFilter{}, err
	}
	return store.DesiredFilter{Domain: f.GetDomain(), ProcessGUIDs: f.GetProcessGuids()}, nil
}

// ListDesiredLRPs lists desired LRPs in full.
func (s *Server) ListDesiredLRPs(ctx context.Context, req *bbsv1.ListDesiredLRPsRequest) (*bbsv1.ListDesiredLRPsResponse, error) {
	f, err := desiredFilter(req.GetFilter())
	if err != nil {
		return nil, err
	}
	list, rev := s.store.ListDesiredLRPs(f)
	return &bbsv1.ListDesiredLRPsResponse{DesiredLrps: list, Revision: rev}, nil
}

// ListDesiredLRPSchedulingInfos lists scheduling records.
func (s *Server) ListDesiredLRPSchedulingInfos(ctx context.Context, req *bbsv1.ListDesiredLRPSchedulingInfosRequest) (*bbsv1.ListDesiredLRPSchedulingInfosResponse, error) {
	f, err := desiredFilter(req.GetFilter())
	if err != nil {
		return nil, err
	}
	list, rev := s.store.ListSchedulingInfos(f)
	return &bbsv1.ListDesiredLRPSchedulingInfosResponse{SchedulingInfos: list, Revision: rev}, nil
}

// ListDesiredLRPRoutingInfos lists what route emitters need.
func (s *Server) ListDesiredLRPRoutingInfos(ctx context.Context, req *bbsv1.ListDesiredLRPRoutingInfosRequest) (*bbsv1.ListDesiredLRPRoutingInfosResponse, error) {
	f, err := desiredFilter(req.GetFilter())
	if err != nil {
		return nil, err
	}
	list, rev := s.store.ListSchedulingInfos(f)
	out := make([]*modelsv1.DesiredLRPRoutingInfo, len(list))
	for i, sched := range list {
		out[i] = &modelsv1.DesiredLRPRoutingInfo{
			Key: sched.GetKey(), Instances: sched.GetInstances(), Routes: sched.GetRoutes(),
			ModificationTag: sched.GetModificationTag(), MetricTags: sched.GetMetricTags(),
		}
	}
	return &bbsv1.ListDesiredLRPRoutingInfosResponse{RoutingInfos: out, Revision: rev}, nil
}

// ListActualLRPs lists instances.
func (s *Server) ListActualLRPs(ctx context.Context, req *bbsv1.ListActualLRPsRequest) (*bbsv1.ListActualLRPsResponse, error) {
	if err := models.ValidateProcessGUIDs("process_guids", req.GetProcessGuids()); err != nil {
		return nil, err
	}
	if req.Index != nil && len(req.GetProcessGuids()) != 1 {
		v := &models.ValidationError{}
		v.Add("index", "needs exactly one process guid")
		return nil, v
	}
	list, rev := s.store.ListActualLRPs(store.ActualFilter{Domain: req.GetDomain(), CellID: req.GetCellId(), ProcessGUIDs: req.GetProcessGuids(), Index: req.Index})
	return &bbsv1.ListActualLRPsResponse{ActualLrps: list, Revision: rev}, nil
}

// GetActualLRP returns one instance: its ordinary (or suspect) row, RUNNING
// preferred, else its evacuating row; and the evacuating row beside it.
func (s *Server) GetActualLRP(ctx context.Context, req *bbsv1.GetActualLRPRequest) (*bbsv1.GetActualLRPResponse, error) {
	v := &models.ValidationError{}
	if req.GetProcessGuid() == "" {
		v.Add("process_guid", "required")
	}
	if req.GetIndex() < 0 {
		v.Add("index", "must be >= 0 (got %d)", req.GetIndex())
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	index := req.GetIndex()
	rows, _ := s.store.ListActualLRPs(store.ActualFilter{ProcessGUIDs: []string{req.GetProcessGuid()}, Index: &index})
	if len(rows) == 0 {
		return nil, fmt.Errorf("actual LRP %s index %d: %w", req.GetProcessGuid(), index, models.ErrNotFound)
	}
	resp := &bbsv1.GetActualLRPResponse{}
	var evacuating *modelsv1.ActualLRP
	for _, r := range rows {
		switch {
		case r.GetPresence() == modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_EVACUATING:
			evacuating = r
		case resp.ActualLrp == nil || r.GetState() == modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING:
			resp.ActualLrp = r
		}
	}
	if resp.ActualLrp == nil {
		resp.ActualLrp = evacuating
	} else {
		resp.Evacuating = evacuating
	}
	return resp, nil
}

// RetireActualLRP stops one instance.
func (s *Server) RetireActualLRP(ctx context.Context, req *bbsv1.RetireActualLRPRequest) (*bbsv1.RetireActualLRPResponse, error) {
	if err := models.ValidateActualLRPKey("actual_lrp_key", req.GetActualLrpKey()); err != nil {
		return nil, err
	}
	stop, _, err := s.store.RetireActualLRP(ctx, req.GetActualLrpKey())
	if err != nil {
		return nil, err
	}
	if stop != nil {
		if err := s.stopOne(ctx, stop); err != nil {
			return nil, err
		}
	}
	return &bbsv1.RetireActualLRPResponse{}, nil
}

// ClaimActualLRP is a cell claiming an instance.
func (s *Server) ClaimActualLRP(ctx context.Context, req *bbsv1.ClaimActualLRPRequest) (*bbsv1.ClaimActualLRPResponse, error) {
	if err := checkClaim(ctx, req); err != nil {
		return nil, err
	}
	if err := s.store.ClaimActualLRP(ctx, req.GetProcessGuid(), req.GetIndex(), req.GetInstanceKey()); err != nil {
		return nil, err
	}
	return s.claimed(req.GetProcessGuid()), nil
}

// checkClaim validates a claim and that the caller may make it.
func checkClaim(ctx context.Context, req *bbsv1.ClaimActualLRPRequest) error {
	if err := models.ValidateClaim(req.GetProcessGuid(), req.GetIndex(), req.GetInstanceKey()); err != nil {
		return err
	}
	return authz.CheckCell(ctx, bbsv1.BBSService_ClaimActualLRP_FullMethodName, "instance_key.cell_id", req.GetInstanceKey().GetCellId())
}

// claimed is the answer to a claim that succeeded: the version of the run
// info the cell is about to need, so it can skip fetching one it holds.
func (s *Server) claimed(processGuid string) *bbsv1.ClaimActualLRPResponse {
	v, _ := s.store.GetRunInfoVersion(processGuid)
	return &bbsv1.ClaimActualLRPResponse{DesiredEpoch: v.Epoch, RunInfoRevision: v.Revision}
}

func startInfo(req *bbsv1.StartActualLRPRequest) models.StartInfo {
	info := models.StartInfo{
		InstanceKey: req.GetInstanceKey(), NetInfo: req.GetNetInfo(), InternalRoutes: req.GetInternalRoutes(),
		MetricTags: req.GetMetricTags(), Routable: req.Routable, AvailabilityZone: req.GetAvailabilityZone(),
	}
	if v := req.GetRunInfoVersion(); v != nil {
		info.RanVersion = &models.RunInfoVersion{Epoch: v.GetDesiredEpoch(), Revision: v.GetRunInfoRevision()}
	}
	return info
}

// StartActualLRP reports an instance running.
func (s *Server) StartActualLRP(ctx context.Context, req *bbsv1.StartActualLRPRequest) (*bbsv1.StartActualLRPResponse, error) {
	if err := checkStart(ctx, req); err != nil {
		return nil, err
	}
	if err := s.store.StartActualLRP(ctx, req.GetActualLrpKey(), startInfo(req)); err != nil {
		return nil, err
	}
	return &bbsv1.StartActualLRPResponse{}, nil
}

// checkStart validates a start report and that the caller may make it.
func checkStart(ctx context.Context, req *bbsv1.StartActualLRPRequest) error {
	if err := models.ValidateStart(req.GetActualLrpKey(), req.GetInstanceKey(), req.GetNetInfo()); err != nil {
		return err
	}
	if v := req.GetRunInfoVersion(); v != nil && (v.GetDesiredEpoch() == "" || v.GetRunInfoRevision() <= 0) {
		ve := &models.ValidationError{}
		ve.Add("run_info_version", "when set, must name a desired_epoch and a run_info_revision > 0 (got %q and %d)", v.GetDesiredEpoch(), v.GetRunInfoRevision())
		return ve
	}
	return authz.CheckCell(ctx, bbsv1.BBSService_StartActualLRP_FullMethodName, "instance_key.cell_id", req.GetInstanceKey().GetCellId())
}

// CrashActualLRP records a crash and restarts the instance when the policy says so.
func (s *Server) CrashActualLRP(ctx context.Context, req *bbsv1.CrashActualLRPRequest) (*bbsv1.CrashActualLRPResponse, error) {
	if err := models.ValidateCrash(req.GetActualLrpKey(), req.GetInstanceKey()); err != nil {
		return nil, err
	}
	if err := authz.CheckCell(ctx, bbsv1.BBSService_CrashActualLRP_FullMethodName, "instance_key.cell_id", req.GetInstanceKey().GetCellId()); err != nil {
		return nil, err
	}
	res, err := s.store.CrashActualLRP(ctx, req.GetActualLrpKey(), req.GetInstanceKey(), req.GetErrorMessage())
	if err != nil {
		return nil, err
	}
	if res.Restart {
		if sched, err := s.store.GetSchedulingInfo(req.GetActualLrpKey().GetProcessGuid()); err == nil {
			s.opts.Auctions.RequestLRPs(auctionrequest.LRPRepair(sched, req.GetActualLrpKey().GetIndex()))
		}
	}
	return &bbsv1.CrashActualLRPResponse{}, nil
}

// FailActualLRP records a placement error.
func (s *Server) FailActualLRP(ctx context.Context, req *bbsv1.FailActualLRPRequest) (*bbsv1.FailActualLRPResponse, error) {
	if err := models.ValidateActualLRPKey("actual_lrp_key", req.GetActualLrpKey()); err != nil {
		return nil, err
	}
	if err := s.store.FailActualLRP(ctx, req.GetActualLrpKey(), req.GetErrorMessage()); err != nil {
		return nil, err
	}
	return &bbsv1.FailActualLRPResponse{}, nil
}

// RemoveActualLRP deletes an instance row.
func (s *Server) RemoveActualLRP(ctx context.Context, req *bbsv1.RemoveActualLRPRequest) (*bbsv1.RemoveActualLRPResponse, error) {
	if err := models.ValidateRemove(req.GetProcessGuid(), req.GetIndex(), req.GetInstanceKey()); err != nil {
		return nil, err
	}
	if id, ok := authz.FromContext(ctx); ok && id.Role == authz.Rep && req.GetInstanceKey() == nil {
		return nil, status.Errorf(codes.PermissionDenied, "role rep (cell %q) may not call %s without instance_key: a rep removes only its own instances", id.CellID, bbsv1.BBSService_RemoveActualLRP_FullMethodName)
	}
	if err := authz.CheckCell(ctx, bbsv1.BBSService_RemoveActualLRP_FullMethodName, "instance_key.cell_id", req.GetInstanceKey().GetCellId()); err != nil {
		return nil, err
	}
	if err := s.store.RemoveActualLRP(ctx, req.GetProcessGuid(), req.GetIndex(), req.GetInstanceKey()); err != nil {
		return nil, err
	}
	return &bbsv1.RemoveActualLRPResponse{}, nil
}

func result(err error) *bbsv1.BatchItemResult {
	if err == nil {
		return &bbsv1.BatchItemResult{Code: int32(codes.OK)}
	}
	return &bbsv1.BatchItemResult{Code: int32(models.Code(err)), Message: err.Error()}
}

// batch runs f for every item concurrently (the store groups their writes) and collects the results in order.
func batch(n int, f func(i int) error) []*bbsv1.BatchItemResult {
	out := make([]*bbsv1.BatchItemResult, n)
	done := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		go func() {
			out[i] = result(f(i))
			done <- struct{}{}
		}()
	}
	for i := 0; i < n; i++ {
		<-done
	}
	return out
}

// BatchClaimActualLRPs claims many instances; each succeeds or fails alone.
// The valid items go to the store together, so they share its transactions
// and one wait for the watch cache.
func (s *Server) BatchClaimActualLRPs(ctx context.Context, req *bbsv1.BatchClaimActualLRPsRequest) (*bbsv1.BatchClaimActualLRPsResponse, error) {
	errs := storeBatch(ctx, req.GetClaims(), checkClaim, func(c *bbsv1.ClaimActualLRPRequest) store.Claim {
		return store.Claim{ProcessGuid: c.GetProcessGuid(), Index: c.GetIndex(), InstanceKey: c.GetInstanceKey()}
	}, s.store.ClaimActualLRPs)
	out := &bbsv1.BatchClaimActualLRPsResponse{Results: results(errs), Claims: make([]*bbsv1.ClaimActualLRPResponse, len(errs))}
	for i, c := range req.GetClaims() {
		out.Claims[i] = &bbsv1.ClaimActualLRPResponse{}
		if errs[i] == nil {
			out.Claims[i] = s.claimed(c.GetProcessGuid())
		}
	}
	return out, nil
}

// BatchStartActualLRPs starts many instances; each succeeds or fails alone.
// The valid items go to the store together.
func (s *Server) BatchStartActualLRPs(ctx context.Context, req *bbsv1.BatchStartActualLRPsRequest) (*bbsv1.BatchStartActualLRPsResponse, error) {
	errs := storeBatch(ctx, req.GetStarts(), checkStart, func(r *bbsv1.StartActualLRPRequest) store.Start {
		return store.Start{Key: r.GetActualLrpKey(), Info: startInfo(r)}
	}, s.store.StartActualLRPs)
	return &bbsv1.BatchStartActualLRPsResponse{Results: results(errs)}, nil
}

// storeBatch checks every request, hands the ones that pass to write in
// one call, and returns each request's outcome in order.
func storeBatch[R, T any](ctx context.Context, reqs []R, check func(context.Context, R) error, item func(R) T, write func(context.Context, []T) []error) []error {
	errs := make([]error, len(reqs))
	var items []T
	var at []int // the request index of each item
	for i, r := range reqs {
		if errs[i] = check(ctx, r); errs[i] == nil {
			items = append(items, item(r))
			at = append(at, i)
		}
	}
	for j, err := range write(ctx, items) {
		errs[at[j]] = err
	}
	return errs
}

// results is the batch item result of each error.
func results(errs []error) []*bbsv1.BatchItemResult {
	out := make([]*bbsv1.BatchItemResult, len(errs))
	for i, err := range errs {
		out[i] = result(err)
	}
	return out
}
