package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/internal/logging"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/executor"
	"github.com/gavelhq/gavel/rep/logarchive"
)

// ErrCellIDMismatch is the error of a Perform meant for another cell.
var ErrCellIDMismatch = errors.New("workload cell ID does not match this cell")

// Options describe the cell the server answers for.
type Options struct {
	// CellID is the cell's id; required.
	CellID string
	// Zone is the cell's availability zone.
	Zone string
	// Index orders cells for the bin-pack term of the auction score.
	Index int32
	// Executor runs the containers; required.
	Executor *executor.Executor
	// RootFSProviders lists the URL schemes (and, for fixed sets, the stacks) the cell runs.
	RootFSProviders []*modelsv1.RootFSProvider
	// PlacementTags and OptionalPlacementTags are the cell's placement tags.
	PlacementTags, OptionalPlacementTags []string
	// VolumeDrivers are the volume drivers the cell offers.
	VolumeDrivers []string
	// ProxyMemoryMB is reported as proxy_memory_allocation_mb (the executor adds it to each LRP).
	ProxyMemoryMB int32
	// Evacuation is the cell's evacuation flag; nil means never evacuating.
	Evacuation *rep.Evacuation
	// Logger is the fallback logger (requests carry their own).
	Logger lager.Logger
	// LogArchive holds the output of ended containers (StreamLogs recent and
	// previous); nil: none is kept.
	LogArchive *logarchive.Archive
	// Drain starts the cell's drain and returns whether it started now and
	// its deadline; nil: the Drain RPC is refused (Unimplemented).
	Drain func() (started bool, deadline time.Time)
}

// Server is the RepService of one cell. Safe for concurrent use.
type Server struct {
	repv1.UnimplementedRepServiceServer
	opts  Options
	state stateEntries
}

// stateEntries keeps each container's entry in State's answer, built once:
// a container's tags and resources never change, so neither does its entry,
// and the auctioneer asks a busy cell for its State every few seconds.
type stateEntries struct {
	mu      sync.Mutex
	gen     uint64 // State calls so far; an entry not seen in the last is dropped
	entries map[string]*stateEntry
}

// stateEntry is one container's State entry: an LRP or a task.
type stateEntry struct {
	// of is the container the entry was built from: a container made later
	// under the same guid (a task desired again) gets an entry of its own.
	of   *executor.Container
	lrp  *repv1.LRP
	task *repv1.Task
	// summary is lrp as an auction reads it, built when first asked for.
	summary *repv1.LRPSummary
	seen    uint64
}

// lrpSummary is e's LRP summary; the caller holds the entries' mu.
func (e *stateEntry) lrpSummary() *repv1.LRPSummary {
	if e.summary == nil {
		e.summary = &repv1.LRPSummary{
			ProcessGuid: e.lrp.GetKey().GetProcessGuid(), Index: e.lrp.GetKey().GetIndex(),
			MemoryMb: e.lrp.GetResource().GetMemoryMb(), DiskMb: e.lrp.GetResource().GetDiskMb(),
		}
	}
	return e.summary
}

// entry returns c's entry, building it when c has none; the caller holds mu.
func (se *stateEntries) entry(c *executor.Container) *stateEntry {
	e := se.entries[c.Guid]
	if e == nil || e.of != c {
		e = &stateEntry{of: c}
		switch {
		case rep.IsLRP(*c):
			e.lrp = rep.StateLRP(*c)
		case rep.IsTask(*c):
			e.task = rep.StateTask(*c)
		}
		se.entries[c.Guid] = e
	}
	e.seen = se.gen
	return e
}

// prune drops the entries of containers the last State did not see; the
// caller holds mu.
func (se *stateEntries) prune(seen int) {
	if len(se.entries) == seen {
		return
	}
	for guid, e := range se.entries {
		if e.seen != se.gen {
			delete(se.entries, guid)
		}
	}
}

var _ repv1.RepServiceServer = (*Server)(nil)

// New returns a server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("rep-server")
	}
	if opts.Evacuation == nil {
		opts.Evacuation = &rep.Evacuation{}
	}
	return &Server{opts: opts, state: stateEntries{entries: map[string]*stateEntry{}}}
}

func resources(r executor.Resources) *repv1.Resources {
	return &repv1.Resources{MemoryMb: int32(r.MemoryMB), DiskMb: int32(r.DiskMB), Containers: int32(r.Containers)}
}

// State reports the cell's capacity and containers, its LRP instances as
// summaries (in no particular order: an auction only counts them) when the
// request asks for them. Each container's entry is built once and shared by
// the answers that list it (see stateEntries).
func (s *Server) State(ctx context.Context, req *repv1.StateRequest) (*repv1.StateResponse, error) {
	if err := s.opts.Executor.Healthy(ctx); err != nil {
		return nil, status.Errorf(codes.Unavailable, "cell %s: %v", s.opts.CellID, err)
	}
	resp := &repv1.StateResponse{
		CellId:                  s.opts.CellID,
		Zone:                    s.opts.Zone,
		AvailableResources:      resources(s.opts.Executor.RemainingResources()),
		TotalResources:          resources(s.opts.Executor.TotalResources()),
		RootfsProviders:         s.opts.RootFSProviders,
		PlacementTags:           s.opts.PlacementTags,
		OptionalPlacementTags:   s.opts.OptionalPlacementTags,
		VolumeDrivers:           s.opts.VolumeDrivers,
		Evacuating:              s.opts.Evacuation.Evacuating(),
		ProxyMemoryAllocationMb: s.opts.ProxyMemoryMB,
		Index:                   s.opts.Index,
	}
	if d := s.opts.Evacuation.Deadline(); !d.IsZero() {
		resp.EvacuationDeadline = d.UnixNano()
	}
	s.state.mu.Lock()
	s.state.gen++
	seen := 0
	s.opts.Executor.Visit(func(c *executor.Container) {
		switch c.State {
		case executor.StateReserved, executor.StateInitializing, executor.StateCreated:
			resp.StartingContainerCount++
		}
		e := s.state.entry(c)
		seen++
		switch {
		case e.lrp != nil && req.GetLrpSummaries():
			resp.LrpSummaries = append(resp.LrpSummaries, e.lrpSummary())
		case e.lrp != nil:
			resp.Lrps = append(resp.Lrps, e.lrp)
		case e.task != nil:
			resp.Tasks = append(resp.Tasks, e.task)
		}
	})
	s.state.prune(seen)
	s.state.mu.Unlock()
	sort.Slice(resp.Lrps, func(i, j int) bool { return resp.Lrps[i].GetInstanceGuid() < resp.Lrps[j].GetInstanceGuid() })
	sort.Slice(resp.Tasks, func(i, j int) bool { return resp.Tasks[i].GetTaskGuid() < resp.Tasks[j].GetTaskGuid() })
	return resp, nil
}

// Perform reserves the work that fits, LRPs largest memory first, then tasks,
// each reservation atomic; it returns the rest. Everything is returned while
// the cell evacuates; a request for another cell fails with FailedPrecondition.
func (s *Server) Perform(ctx context.Context, req *repv1.PerformRequest) (*repv1.PerformResponse, error) {
	if req.GetCellId() != s.opts.CellID {
		return nil, status.Errorf(codes.FailedPrecondition, "%v: got %q, this is %q", ErrCellIDMismatch, req.GetCellId(), s.opts.CellID)
	}
	resp := &repv1.PerformResponse{}
	if s.opts.Evacuation.Evacuating() {
		resp.FailedLrps, resp.FailedTasks = req.GetLrps(), req.GetTasks()
		return resp, nil
	}
	lrps := append([]*repv1.LRP(nil), req.GetLrps()...)
	sort.SliceStable(lrps, func(i, j int) bool {
		return lrps[i].GetResource().GetMemoryMb() > lrps[j].GetResource().GetMemoryMb()
	})
	reqs := make([]executor.AllocationRequest, 0, len(lrps)+len(req.GetTasks()))
	lrpOf := make(map[string]*repv1.LRP, len(lrps))
	taskOf := make(map[string]*repv1.Task, len(req.GetTasks()))
	for _, l := range lrps {
		if l.GetKey().GetProcessGuid() == "" || !s.runs(l.GetPlacementConstraint().GetRootFs()) {
			resp.FailedLrps = append(resp.FailedLrps, l)
			continue
		}
		guid := newInstanceGuid()
		lrpOf[guid] = l
		reqs = append(reqs, executor.AllocationRequest{
			Guid: guid, LRP: true, Resource: resource(l.GetResource()), Tags: rep.LRPTags(l, guid),
		})
	}
	for _, t := range req.GetTasks() {
		if t.GetTaskGuid() == "" || taskOf[t.GetTaskGuid()] != nil || !s.runs(t.GetPlacementConstraint().GetRootFs()) {
			resp.FailedTasks = append(resp.FailedTasks, t)
			continue
		}
		taskOf[t.GetTaskGuid()] = t
		reqs = append(reqs, executor.AllocationRequest{
			Guid: t.GetTaskGuid(), Resource: resource(t.GetResource()), Tags: rep.TaskTags(t),
		})
	}
	failures := s.opts.Executor.Allocate(reqs)
	if len(failures) > 0 {
		logger := logging.FromContext(ctx, s.opts.Logger)
		for _, f := range failures {
			logger.Debug("allocation-failed", lager.Data{"guid": f.Request.Guid, "error": f.Err.Error()})
			if l, ok := lrpOf[f.Request.Guid]; ok && f.Request.LRP {
				resp.FailedLrps = append(resp.FailedLrps, l)
			} else if t, ok := taskOf[f.Request.Guid]; ok {
				if errors.Is(f.Err, executor.ErrGuidNotAvailable) {
					// The cell already holds this task's container: an
					// earlier placement here, not started yet because the
					// BBS was unreachable. Placing it again is a no-op; a
					// refusal would burn one of the task's rejections.
					continue
				}
				resp.FailedTasks = append(resp.FailedTasks, t)
			}
		}
	}
	return resp, nil
}

func resource(r interface {
	GetMemoryMb() int32
	GetDiskMb() int32
	GetMaxPids() int32
}) executor.Resource {
	return executor.Resource{MemoryMB: int(r.GetMemoryMb()), DiskMB: int(r.GetDiskMb()), MaxPids: int(r.GetMaxPids())}
}

// runs reports whether the cell offers a root filesystem URL ("scheme:path"):
// its scheme must be a provider, and a provider with a fixed set of stacks
// must list the path.
func (s *Server) runs(rootfs string) bool {
	if rootfs == "" {
		return true
	}
	scheme, path, _ := strings.Cut(rootfs, ":")
	for _, p := range s.opts.RootFSProviders {
		if p.GetName() != scheme {
			continue
		}
		if len(p.GetProperties()) == 0 {
			return true
		}
		for _, stack := range p.GetProperties() {
			if stack == path {
				return true
			}
		}
		return false
	}
	return false
}

// newInstanceGuid is a random instance guid (a UUIDv4 cut to 28 characters, as in Diego).
func newInstanceGuid() string { return uuid.NewString()[:28] }

// StopLRPInstance stops an instance gracefully; the harmonizer removes it from
// the BBS once its container completes. An instance the cell does not run is
// not an error.
func (s *Server) StopLRPInstance(ctx context.Context, req *repv1.StopLRPInstanceRequest) (*repv1.StopLRPInstanceResponse, error) {
	guid := req.GetInstanceKey().GetInstanceGuid()
	if guid == "" {
		return nil, status.Error(codes.InvalidArgument, "instance_key.instance_guid: is required")
	}
	c, err := s.opts.Executor.Get(guid)
	if errors.Is(err, executor.ErrContainerNotFound) {
		return &repv1.StopLRPInstanceResponse{}, nil
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if pg := req.GetKey().GetProcessGuid(); !rep.IsLRP(c) || (pg != "" && c.Tags[rep.TagProcessGuid] != pg) {
		return nil, status.Errorf(codes.InvalidArgument, "instance %s on cell %s does not belong to process %s", guid, s.opts.CellID, pg)
	}
	if err := s.opts.Executor.Stop(guid); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
		return nil, status.Error(codes.Internal, fmt.Sprintf("stop %s: %v", guid, err))
	}
	return &repv1.StopLRPInstanceResponse{}, nil
}

// CancelTask stops a task's container; the harmonizer deletes it once it completes.
func (s *Server) CancelTask(ctx context.Context, req *repv1.CancelTaskRequest) (*repv1.CancelTaskResponse, error) {
	guid := req.GetTaskGuid()
	if guid == "" {
		return nil, status.Error(codes.InvalidArgument, "task_guid: is required")
	}
	c, err := s.opts.Executor.Get(guid)
	if errors.Is(err, executor.ErrContainerNotFound) {
		return &repv1.CancelTaskResponse{}, nil
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !rep.IsTask(c) {
		return nil, status.Errorf(codes.InvalidArgument, "container %s on cell %s is not a task", guid, s.opts.CellID)
	}
	if err := s.opts.Executor.Stop(guid); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
		return nil, status.Error(codes.Internal, fmt.Sprintf("cancel %s: %v", guid, err))
	}
	return &repv1.CancelTaskResponse{}, nil
}

// Ping answers.
func (s *Server) Ping(context.Context, *repv1.PingRequest) (*repv1.PingResponse, error) {
	return &repv1.PingResponse{}, nil
}

// Drain starts the cell's drain; repeating it is a no-op that reports the same deadline.
func (s *Server) Drain(ctx context.Context, _ *repv1.DrainRequest) (*repv1.DrainResponse, error) {
	if s.opts.Drain == nil {
		return nil, status.Errorf(codes.Unimplemented, "cell %s cannot be drained through its API", s.opts.CellID)
	}
	started, deadline := s.opts.Drain()
	logging.FromContext(ctx, s.opts.Logger).Info("drain", lager.Data{"started": started, "deadline": deadline.Format(time.RFC3339)})
	return &repv1.DrainResponse{AlreadyDraining: !started, Deadline: deadline.UnixNano()}, nil
}
