package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/gavelhq/gavel/bbs/auctionrequest"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/store"
	"github.com/gavelhq/gavel/internal/authz"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// auctionAfter requests the auction of the index an evacuation unclaimed.
func (s *Server) auctionAfter(key *modelsv1.ActualLRPKey, res store.EvacuationResult) {
	if !res.Auction {
		return
	}
	if sched, err := s.store.GetSchedulingInfo(key.GetProcessGuid()); err == nil {
		s.opts.Auctions.RequestLRPs(auctionrequest.LRPRepair(sched, key.GetIndex()))
	}
}

// EvacuateClaimedActualLRP unclaims a claimed instance of a draining cell and auctions it again.
func (s *Server) EvacuateClaimedActualLRP(ctx context.Context, req *bbsv1.EvacuateClaimedActualLRPRequest) (*bbsv1.EvacuateClaimedActualLRPResponse, error) {
	if err := models.ValidateEvacuation(req.GetActualLrpKey(), req.GetInstanceKey()); err != nil {
		return nil, err
	}
	if err := authz.CheckCell(ctx, bbsv1.BBSService_EvacuateClaimedActualLRP_FullMethodName, "instance_key.cell_id", req.GetInstanceKey().GetCellId()); err != nil {
		return nil, err
	}
	res, err := s.store.EvacuateClaimedActualLRP(ctx, req.GetActualLrpKey(), req.GetInstanceKey())
	if err != nil {
		return nil, err
	}
	s.auctionAfter(req.GetActualLrpKey(), res)
	return &bbsv1.EvacuateClaimedActualLRPResponse{KeepContainer: res.Keep}, nil
}

// EvacuateRunningActualLRP evacuates a running instance of a draining cell.
func (s *Server) EvacuateRunningActualLRP(ctx context.Context, req *bbsv1.EvacuateRunningActualLRPRequest) (*bbsv1.EvacuateRunningActualLRPResponse, error) {
	if err := models.ValidateStart(req.GetActualLrpKey(), req.GetInstanceKey(), req.GetNetInfo()); err != nil {
		return nil, err
	}
	if err := authz.CheckCell(ctx, bbsv1.BBSService_EvacuateRunningActualLRP_FullMethodName, "instance_key.cell_id", req.GetInstanceKey().GetCellId()); err != nil {
		return nil, err
	}
	res, err := s.store.EvacuateRunningActualLRP(ctx, req.GetActualLrpKey(), models.StartInfo{
		InstanceKey: req.GetInstanceKey(), NetInfo: req.GetNetInfo(), InternalRoutes: req.GetInternalRoutes(),
		MetricTags: req.GetMetricTags(), Routable: req.Routable, AvailabilityZone: req.GetAvailabilityZone(),
	})
	if err != nil {
		return nil, err
	}
	s.auctionAfter(req.GetActualLrpKey(), res)
	return &bbsv1.EvacuateRunningActualLRPResponse{KeepContainer: res.Keep}, nil
}

// EvacuateStoppedActualLRP removes the rows a stopped instance of a draining cell held.
func (s *Server) EvacuateStoppedActualLRP(ctx context.Context, req *bbsv1.EvacuateStoppedActualLRPRequest) (*bbsv1.EvacuateStoppedActualLRPResponse, error) {
	if err := models.ValidateEvacuation(req.GetActualLrpKey(), req.GetInstanceKey()); err != nil {
		return nil, err
	}
	if err := authz.CheckCell(ctx, bbsv1.BBSService_EvacuateStoppedActualLRP_FullMethodName, "instance_key.cell_id", req.GetInstanceKey().GetCellId()); err != nil {
		return nil, err
	}
	res, err := s.store.EvacuateStoppedActualLRP(ctx, req.GetActualLrpKey(), req.GetInstanceKey())
	if err != nil {
		return nil, err
	}
	return &bbsv1.EvacuateStoppedActualLRPResponse{KeepContainer: res.Keep}, nil
}

// EvacuateCrashedActualLRP records a crash on a draining cell.
func (s *Server) EvacuateCrashedActualLRP(ctx context.Context, req *bbsv1.EvacuateCrashedActualLRPRequest) (*bbsv1.EvacuateCrashedActualLRPResponse, error) {
	if err := models.ValidateEvacuation(req.GetActualLrpKey(), req.GetInstanceKey()); err != nil {
		return nil, err
	}
	if err := authz.CheckCell(ctx, bbsv1.BBSService_EvacuateCrashedActualLRP_FullMethodName, "instance_key.cell_id", req.GetInstanceKey().GetCellId()); err != nil {
		return nil, err
	}
	res, err := s.store.EvacuateCrashedActualLRP(ctx, req.GetActualLrpKey(), req.GetInstanceKey(), req.GetErrorMessage())
	if err != nil {
		return nil, err
	}
	s.auctionAfter(req.GetActualLrpKey(), res)
	return &bbsv1.EvacuateCrashedActualLRPResponse{KeepContainer: res.Keep}, nil
}

// RemoveEvacuatingActualLRP deletes the caller's evacuating row.
func (s *Server) RemoveEvacuatingActualLRP(ctx context.Context, req *bbsv1.RemoveEvacuatingActualLRPRequest) (*bbsv1.RemoveEvacuatingActualLRPResponse, error) {
	if err := models.ValidateEvacuation(req.GetActualLrpKey(), req.GetInstanceKey()); err != nil {
		return nil, err
	}
	if err := authz.CheckCell(ctx, bbsv1.BBSService_RemoveEvacuatingActualLRP_FullMethodName, "instance_key.cell_id", req.GetInstanceKey().GetCellId()); err != nil {
		return nil, err
	}
	if err := s.store.RemoveEvacuatingActualLRP(ctx, req.GetActualLrpKey(), req.GetInstanceKey()); err != nil {
		return nil, err
	}
	return &bbsv1.RemoveEvacuatingActualLRPResponse{}, nil
}

// ReclaimEvacuatingActualLRP makes the caller's evacuating instance the ordinary one again while no replacement is placed.
func (s *Server) ReclaimEvacuatingActualLRP(ctx context.Context, req *bbsv1.ReclaimEvacuatingActualLRPRequest) (*bbsv1.ReclaimEvacuatingActualLRPResponse, error) {
	if err := models.ValidateEvacuation(req.GetActualLrpKey(), req.GetInstanceKey()); err != nil {
		return nil, err
	}
	if err := authz.CheckCell(ctx, bbsv1.BBSService_ReclaimEvacuatingActualLRP_FullMethodName, "instance_key.cell_id", req.GetInstanceKey().GetCellId()); err != nil {
		return nil, err
	}
	ok, err := s.store.ReclaimEvacuatingActualLRP(ctx, req.GetActualLrpKey(), req.GetInstanceKey())
	if err != nil {
		return nil, err
	}
	return &bbsv1.ReclaimEvacuatingActualLRPResponse{Reclaimed: ok}, nil
}

// BatchEvacuateActualLRPs makes many evacuation reports of a draining cell;
// each succeeds or fails alone, as its single call would (validation, the
// cell check and the auction of an unclaimed index included). They run
// concurrently, so their writes share the store's grouped transactions.
// More than models.MaxEvacuationBatch reports are refused InvalidArgument.
func (s *Server) BatchEvacuateActualLRPs(ctx context.Context, req *bbsv1.BatchEvacuateActualLRPsRequest) (*bbsv1.BatchEvacuateActualLRPsResponse, error) {
	reports := req.GetReports()
	if len(reports) > models.MaxEvacuationBatch {
		v := &models.ValidationError{}
		v.Add("reports", "at most %d items (got %d)", models.MaxEvacuationBatch, len(reports))
		return nil, v.Err()
	}
	keep := make([]bool, len(reports))
	results := batch(len(reports), func(i int) error {
		var err error
		switch r := reports[i].GetReport().(type) {
		case *bbsv1.EvacuationReport_Claimed:
			var resp *bbsv1.EvacuateClaimedActualLRPResponse
			resp, err = s.EvacuateClaimedActualLRP(ctx, r.Claimed)
			keep[i] = resp.GetKeepContainer()
		case *bbsv1.EvacuationReport_Running:
			var resp *bbsv1.EvacuateRunningActualLRPResponse
			resp, err = s.EvacuateRunningActualLRP(ctx, r.Running)
			keep[i] = resp.GetKeepContainer()
		case *bbsv1.EvacuationReport_Stopped:
			var resp *bbsv1.EvacuateStoppedActualLRPResponse
			resp, err = s.EvacuateStoppedActualLRP(ctx, r.Stopped)
			keep[i] = resp.GetKeepContainer()
		case *bbsv1.EvacuationReport_Crashed:
			var resp *bbsv1.EvacuateCrashedActualLRPResponse
			resp, err = s.EvacuateCrashedActualLRP(ctx, r.Crashed)
			keep[i] = resp.GetKeepContainer()
		default:
			v := &models.ValidationError{}
			v.Add(fmt.Sprintf("reports[%d].report", i), "is required")
			err = v.Err()
		}
		return err
	})
	out := &bbsv1.BatchEvacuateActualLRPsResponse{Results: make([]*bbsv1.EvacuationResult, len(results))}
	for i, r := range results {
		out.Results[i] = &bbsv1.EvacuationResult{Code: r.GetCode(), Message: r.GetMessage(), KeepContainer: keep[i] && codes.Code(r.GetCode()) == codes.OK}
	}
	return out, nil
}
