package auctionrunner

import (
	"github.com/gavelhq/gavel/auctioneer"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// LRPStarts expands a start request into one engine item per index, in
// the request's index order.
func LRPStarts(req *auctioneerv1.LRPStartRequest) []auctioneer.LRPStart {
	out := make([]auctioneer.LRPStart, 0, len(req.GetIndices()))
	for _, idx := range req.GetIndices() {
		out = append(out, auctioneer.LRPStart{
			ProcessGUID:     req.GetProcessGuid(),
			Index:           int(idx),
			Domain:          req.GetDomain(),
			MemoryMB:        int(req.GetResource().GetMemoryMb()),
			DiskMB:          int(req.GetResource().GetDiskMb()),
			MaxPids:         int(req.GetResource().GetMaxPids()),
			RootFS:          req.GetPlacementConstraint().GetRootFs(),
			PlacementTags:   req.GetPlacementConstraint().GetPlacementTags(),
			VolumeDrivers:   req.GetPlacementConstraint().GetVolumeDrivers(),
			DesiredEpoch:    req.GetDesiredEpoch(),
			RunInfoRevision: req.GetRunInfoRevision(),
			Repair:          req.GetRepair(),
		})
	}
	return out
}

// TaskStart converts a task start request to the engine's item.
func TaskStart(req *auctioneerv1.TaskStartRequest) auctioneer.TaskStart {
	return auctioneer.TaskStart{
		TaskGUID:      req.GetTaskGuid(),
		Domain:        req.GetDomain(),
		MemoryMB:      int(req.GetResource().GetMemoryMb()),
		DiskMB:        int(req.GetResource().GetDiskMb()),
		MaxPids:       int(req.GetResource().GetMaxPids()),
		RootFS:        req.GetPlacementConstraint().GetRootFs(),
		PlacementTags: req.GetPlacementConstraint().GetPlacementTags(),
		VolumeDrivers: req.GetPlacementConstraint().GetVolumeDrivers(),
	}
}

// CellState converts a cell's State answer to the engine's cell state. The
// presence supplies the cell id and zone when the state leaves them empty.
// The LRP instances are read from the answer's summaries, or from its lrps
// when a cell that predates summaries answered.
// A rootfs provider maps its name (the URL scheme) to its properties (the
// stacks); no properties means any URL of that scheme.
func CellState(p *modelsv1.CellPresence, st *repv1.StateResponse) auctioneer.CellState {
	cs := auctioneer.CellState{
		CellID:                st.GetCellId(),
		Zone:                  st.GetZone(),
		Index:                 int(st.GetIndex()),
		Total:                 resources(st.GetTotalResources()),
		Available:             resources(st.GetAvailableResources()),
		RootFSProviders:       make(map[string][]string, len(st.GetRootfsProviders())),
		PlacementTags:         st.GetPlacementTags(),
		OptionalPlacementTags: st.GetOptionalPlacementTags(),
		VolumeDrivers:         st.GetVolumeDrivers(),
		ProxyMemoryMB:         int(st.GetProxyMemoryAllocationMb()),
		StartingContainers:    int(st.GetStartingContainerCount()),
		Evacuating:            st.GetEvacuating(),
		LRPs:                  make([]auctioneer.RunningLRP, 0, len(st.GetLrps())+len(st.GetLrpSummaries())),
		Tasks:                 make([]auctioneer.RunningTask, 0, len(st.GetTasks())),
	}
	if cs.CellID == "" {
		cs.CellID = p.GetCellId()
	}
	if cs.Zone == "" {
		cs.Zone = p.GetZone()
	}
	for _, rp := range st.GetRootfsProviders() {
		cs.RootFSProviders[rp.GetName()] = append(cs.RootFSProviders[rp.GetName()], rp.GetProperties()...)
	}
	for _, l := range st.GetLrpSummaries() {
		cs.LRPs = append(cs.LRPs, auctioneer.RunningLRP{
			ProcessGUID: l.GetProcessGuid(), Index: int(l.GetIndex()), MemoryMB: int(l.GetMemoryMb()), DiskMB: int(l.GetDiskMb()),
		})
	}
	for _, l := range st.GetLrps() {
		cs.LRPs = append(cs.LRPs, auctioneer.RunningLRP{
			ProcessGUID: l.GetKey().GetProcessGuid(),
			Index:       int(l.GetKey().GetIndex()),
			MemoryMB:    int(l.GetResource().GetMemoryMb()),
			DiskMB:      int(l.GetResource().GetDiskMb()),
		})
	}
	for _, t := range st.GetTasks() {
		cs.Tasks = append(cs.Tasks, auctioneer.RunningTask{
			TaskGUID: t.GetTaskGuid(),
			MemoryMB: int(t.GetResource().GetMemoryMb()),
			DiskMB:   int(t.GetResource().GetDiskMb()),
		})
	}
	return cs
}

func resources(r *repv1.Resources) auctioneer.Resources {
	return auctioneer.Resources{
		MemoryMB:   int(r.GetMemoryMb()),
		DiskMB:     int(r.GetDiskMb()),
		Containers: int(r.GetContainers()),
	}
}

// repLRP is the work a cell receives for an LRP instance.
func repLRP(l *auctioneer.LRPStart) *repv1.LRP {
	return &repv1.LRP{
		Key: &modelsv1.ActualLRPKey{ProcessGuid: l.ProcessGUID, Index: int32(l.Index), Domain: l.Domain},
		Resource: &auctioneerv1.Resource{
			MemoryMb: int32(l.MemoryMB), DiskMb: int32(l.DiskMB), MaxPids: int32(l.MaxPids),
		},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{
			RootFs: l.RootFS, PlacementTags: l.PlacementTags, VolumeDrivers: l.VolumeDrivers,
		},
		DesiredEpoch: l.DesiredEpoch, RunInfoRevision: l.RunInfoRevision,
	}
}

// repTask is the work a cell receives for a task.
func repTask(t *auctioneer.TaskStart) *repv1.Task {
	return &repv1.Task{
		TaskGuid: t.TaskGUID,
		Domain:   t.Domain,
		Resource: &auctioneerv1.Resource{
			MemoryMb: int32(t.MemoryMB), DiskMb: int32(t.DiskMB), MaxPids: int32(t.MaxPids),
		},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{
			RootFs: t.RootFS, PlacementTags: t.PlacementTags, VolumeDrivers: t.VolumeDrivers,
		},
	}
}
