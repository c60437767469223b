package server

import (
	"context"
	"fmt"

	"github.com/gavelhq/gavel/auctioneer/auctionrunner"
	"github.com/gavelhq/gavel/bbs/models"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
)

// Leader says whether this replica is the active auctioneer.
type Leader interface {
	// Held reports whether the auctioneer lock is held; it must not block
	// and must be safe for concurrent use.
	Held() bool
}

// Server implements AuctioneerService over a batch. Safe for concurrent use.
type Server struct {
	auctioneerv1.UnimplementedAuctioneerServiceServer
	batch  *auctionrunner.Batch
	leader Leader
}

var _ auctioneerv1.AuctioneerServiceServer = (*Server)(nil)

// New returns a server adding work to batch while leader holds the lock.
func New(batch *auctionrunner.Batch, leader Leader) *Server {
	return &Server{batch: batch, leader: leader}
}

// RequestLRPAuctions validates the start requests and adds their instances
// to the batch. Errors: Unavailable when passive, InvalidArgument naming
// every bad field (then nothing is added).
func (s *Server) RequestLRPAuctions(_ context.Context, req *auctioneerv1.RequestLRPAuctionsRequest) (*auctioneerv1.RequestLRPAuctionsResponse, error) {
	if !s.leader.Held() {
		return nil, models.ToStatus(fmt.Errorf("%w: this auctioneer does not hold the auctioneer lock", models.ErrUnavailable))
	}
	if err := ValidateLRPStarts(req.GetStarts()); err != nil {
		return nil, models.ToStatus(err)
	}
	for _, start := range req.GetStarts() {
		s.batch.AddLRPs(auctionrunner.LRPStarts(start)...)
	}
	return &auctioneerv1.RequestLRPAuctionsResponse{}, nil
}

// RequestTaskAuctions validates the start requests and adds the tasks to
// the batch. Errors: Unavailable when passive, InvalidArgument naming every
// bad field (then nothing is added).
func (s *Server) RequestTaskAuctions(_ context.Context, req *auctioneerv1.RequestTaskAuctionsRequest) (*auctioneerv1.RequestTaskAuctionsResponse, error) {
	if !s.leader.Held() {
		return nil, models.ToStatus(fmt.Errorf("%w: this auctioneer does not hold the auctioneer lock", models.ErrUnavailable))
	}
	if err := ValidateTaskStarts(req.GetStarts()); err != nil {
		return nil, models.ToStatus(err)
	}
	for _, start := range req.GetStarts() {
		s.batch.AddTasks(auctionrunner.TaskStart(start))
	}
	return &auctioneerv1.RequestTaskAuctionsResponse{}, nil
}

// ValidateLRPStarts checks LRP start requests as Diego does (process
// guid, domain, at least one index, resources >= 0, a rootfs), plus
// indices >= 0, and returns a *models.ValidationError naming every bad
// field, e.g. "starts[1].placement_constraint.root_fs", or nil.
func ValidateLRPStarts(starts []*auctioneerv1.LRPStartRequest) error {
	v := &models.ValidationError{}
	for i, s := range starts {
		p := fmt.Sprintf("starts[%d]", i)
		if s == nil {
			v.Add(p, "is required")
			continue
		}
		if s.GetProcessGuid() == "" {
			v.Add(p+".process_guid", "is required")
		}
		if s.GetDomain() == "" {
			v.Add(p+".domain", "is required")
		}
		if len(s.GetIndices()) == 0 {
			v.Add(p+".indices", "at least one index is required")
		}
		for j, idx := range s.GetIndices() {
			if idx < 0 {
				v.Add(fmt.Sprintf("%s.indices[%d]", p, j), "must be >= 0 (got %d)", idx)
			}
		}
		validateResource(v, p+".resource", s.GetResource().GetMemoryMb(), s.GetResource().GetDiskMb(), s.GetResource().GetMaxPids())
		if s.GetPlacementConstraint().GetRootFs() == "" {
			v.Add(p+".placement_constraint.root_fs", "is required")
		}
		switch rev, epoch := s.GetRunInfoRevision(), s.GetDesiredEpoch(); {
		case rev < 0:
			v.Add(p+".run_info_revision", "must be >= 0 (got %d)", rev)
		case rev > 0 && epoch == "":
			v.Add(p+".desired_epoch", "is required with a run_info_revision")
		case len(epoch) > models.MaxGUIDBytes:
			v.Add(p+".desired_epoch", "must be at most %d bytes (got %d)", models.MaxGUIDBytes, len(epoch))
		}
	}
	return v.Err()
}

// ValidateTaskStarts checks task start requests as Diego does (task guid,
// resources >= 0, a rootfs) and returns a *models.ValidationError
// naming every bad field, or nil.
func ValidateTaskStarts(starts []*auctioneerv1.TaskStartRequest) error {
	v := &models.ValidationError{}
	for i, s := range starts {
		p := fmt.Sprintf("starts[%d]", i)
		if s == nil {
			v.Add(p, "is required")
			continue
		}
		if s.GetTaskGuid() == "" {
			v.Add(p+".task_guid", "is required")
		}
		validateResource(v, p+".resource", s.GetResource().GetMemoryMb(), s.GetResource().GetDiskMb(), s.GetResource().GetMaxPids())
		if s.GetPlacementConstraint().GetRootFs() == "" {
			v.Add(p+".placement_constraint.root_fs", "is required")
		}
	}
	return v.Err()
}

func validateResource(v *models.ValidationError, p string, memory, disk, pids int32) {
	if memory < 0 {
		v.Add(p+".memory_mb", "must be >= 0 (got %d)", memory)
	}
	if disk < 0 {
		v.Add(p+".disk_mb", "must be >= 0 (got %d)", disk)
	}
	if pids < 0 {
		v.Add(p+".max_pids", "must be >= 0 (got %d)", pids)
	}
}
