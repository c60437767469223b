package server

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/executor"
)

// MaxMetricsInstanceGuids bounds ContainerMetricsRequest.instance_guids.
const MaxMetricsInstanceGuids = 1000

// ContainerMetrics measures the selected instances of an LRP on this cell.
// An instance the backend cannot measure is reported with zero usage and
// the reason in unavailable, never as an error of the whole call.
func (s *Server) ContainerMetrics(ctx context.Context, req *repv1.ContainerMetricsRequest) (*repv1.ContainerMetricsResponse, error) {
	if req.GetProcessGuid() == "" {
		return nil, status.Error(codes.InvalidArgument, "process_guid: is required")
	}
	if n := len(req.GetInstanceGuids()); n > MaxMetricsInstanceGuids {
		return nil, status.Errorf(codes.InvalidArgument, "instance_guids: at most %d (got %d)", MaxMetricsInstanceGuids, n)
	}
	var selected []executor.Container
	for _, c := range s.opts.Executor.List() {
		if !rep.IsLRP(c) || c.Tags[rep.TagProcessGuid] != req.GetProcessGuid() {
			continue
		}
		if len(req.GetInstanceGuids()) > 0 && !slices.Contains(req.GetInstanceGuids(), c.Tags[rep.TagInstanceGuid]) {
			continue
		}
		selected = append(selected, c)
	}
	resp := &repv1.ContainerMetricsResponse{}
	for _, c := range selected {
		idx, _ := strconv.Atoi(c.Tags[rep.TagProcessIndex])
		im := &repv1.InstanceMetrics{
			ProcessGuid: req.GetProcessGuid(), Index: int32(idx), InstanceGuid: c.Tags[rep.TagInstanceGuid],
			MemoryQuotaBytes: uint64(c.AllocatedMemoryMB) << 20, DiskQuotaBytes: uint64(c.Resource.DiskMB) << 20,
			Timestamp: time.Now().UnixNano(),
		}
		m, err := s.opts.Executor.Metrics(ctx, c.Guid)
		switch {
		case err == nil:
			im.CpuUsageNs = uint64(m.CPUUsage)
			im.AgeNs = int64(m.Age)
			im.MemoryBytes = m.MemoryUsageInBytes
			im.DiskBytes = m.DiskBytesUsed
		case errors.Is(err, executor.ErrContainerNotFound):
			continue // removed meanwhile
		default:
			im.Unavailable = err.Error()
		}
		resp.Metrics = append(resp.Metrics, im)
	}
	slices.SortFunc(resp.Metrics, func(a, b *repv1.InstanceMetrics) int { return int(a.GetIndex() - b.GetIndex()) })
	return resp, nil
}
