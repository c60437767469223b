package reptest

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// Rep is a fake cell. Its fields are set before the first call and not
// changed after; its state changes through Perform and Update.
type Rep struct {
	repv1.UnimplementedRepServiceServer

	// StateHook, if set, runs before State answers; an error is returned
	// as is (a hook may block until ctx ends to simulate a hung cell).
	StateHook func(ctx context.Context) error
	// PerformHook, if set, runs before Perform; an error is returned as is.
	PerformHook func(ctx context.Context, req *repv1.PerformRequest) error
	// OnAccepted, if set, is called with the work Perform accepted, before
	// it answers.
	OnAccepted func(ctx context.Context, lrps []*repv1.LRP, tasks []*repv1.Task)

	addr string

	mu       sync.Mutex
	state    *repv1.StateResponse
	performs []*repv1.PerformRequest
	states   int
}

// Cell returns an empty cell's state: the given capacity, all available,
// offering preloaded:cflinuxfs4 and any docker URL.
func Cell(cellID, zone string, memoryMB, diskMB, containers int32) *repv1.StateResponse {
	total := &repv1.Resources{MemoryMb: memoryMB, DiskMb: diskMB, Containers: containers}
	return &repv1.StateResponse{
		CellId: cellID, Zone: zone,
		TotalResources:     total,
		AvailableResources: proto.Clone(total).(*repv1.Resources),
		RootfsProviders: []*modelsv1.RootFSProvider{
			{Name: "preloaded", Properties: []string{"cflinuxfs4"}},
			{Name: "docker"},
		},
	}
}

// Start serves a fake cell with the given state on a loopback port until
// the test ends.
func Start(t testing.TB, state *repv1.StateResponse) *Rep {
	t.Helper()
	r := &Rep{state: proto.Clone(state).(*repv1.StateResponse)}
	return r.serve(t)
}

// New returns a fake cell that is not yet serving, so a test can set its
// hooks; call Serve.
func New(state *repv1.StateResponse) *Rep {
	return &Rep{state: proto.Clone(state).(*repv1.StateResponse)}
}

// Serve starts serving on a loopback port until the test ends.
func (r *Rep) Serve(t testing.TB) *Rep { t.Helper(); return r.serve(t) }

func (r *Rep) serve(t testing.TB) *Rep {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reptest: listen: %v", err)
	}
	srv := grpc.NewServer()
	repv1.RegisterRepServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	r.addr = lis.Addr().String()
	return r
}

// Addr is the cell's gRPC address.
func (r *Rep) Addr() string { return r.addr }

// CellID is the cell id the cell reports.
func (r *Rep) CellID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.GetCellId()
}

// Presence is the presence a rep would register for this cell.
func (r *Rep) Presence() *modelsv1.CellPresence {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &modelsv1.CellPresence{
		CellId: r.state.GetCellId(), RepAddress: r.addr, Zone: r.state.GetZone(),
		Capacity: &modelsv1.CellCapacity{
			MemoryMb: r.state.GetTotalResources().GetMemoryMb(), DiskMb: r.state.GetTotalResources().GetDiskMb(),
			Containers: r.state.GetTotalResources().GetContainers(),
		},
		RootfsProviders: r.state.GetRootfsProviders(),
	}
}

// Update changes the cell's state under its lock.
func (r *Rep) Update(f func(*repv1.StateResponse)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.state)
}

// Performs returns the Perform requests received, in order.
func (r *Rep) Performs() []*repv1.PerformRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*repv1.PerformRequest(nil), r.performs...)
}

// StateCalls returns how many State calls were received.
func (r *Rep) StateCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.states
}

// State implements RepService.
func (r *Rep) State(ctx context.Context, _ *repv1.StateRequest) (*repv1.StateResponse, error) {
	r.mu.Lock()
	r.states++
	r.mu.Unlock()
	if r.StateHook != nil {
		if err := r.StateHook(ctx); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return proto.Clone(r.state).(*repv1.StateResponse), nil
}

// Perform implements RepService: it refuses a request for another cell,
// then reserves each item that fits (memory, disk, one container) and
// hands back the rest.
func (r *Rep) Perform(ctx context.Context, req *repv1.PerformRequest) (*repv1.PerformResponse, error) {
	r.mu.Lock()
	r.performs = append(r.performs, proto.Clone(req).(*repv1.PerformRequest))
	r.mu.Unlock()
	if r.PerformHook != nil {
		if err := r.PerformHook(ctx, req); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	if req.GetCellId() != r.state.GetCellId() {
		r.mu.Unlock()
		return nil, status.Errorf(codes.InvalidArgument, "workload cell ID %q does not match this cell %q", req.GetCellId(), r.state.GetCellId())
	}
	resp := &repv1.PerformResponse{}
	var lrps []*repv1.LRP
	var tasks []*repv1.Task
	avail := r.state.AvailableResources
	fits := func(mem, disk int32) bool {
		return avail.GetMemoryMb() >= mem && avail.GetDiskMb() >= disk && avail.GetContainers() >= 1
	}
	take := func(mem, disk int32) {
		avail.MemoryMb -= mem
		avail.DiskMb -= disk
		avail.Containers--
		r.state.StartingContainerCount++
	}
	for _, l := range req.GetLrps() {
		if !fits(l.GetResource().GetMemoryMb(), l.GetResource().GetDiskMb()) {
			resp.FailedLrps = append(resp.FailedLrps, l)
			continue
		}
		take(l.GetResource().GetMemoryMb(), l.GetResource().GetDiskMb())
		r.state.Lrps = append(r.state.Lrps, l)
		lrps = append(lrps, l)
	}
	for _, tk := range req.GetTasks() {
		if !fits(tk.GetResource().GetMemoryMb(), tk.GetResource().GetDiskMb()) {
			resp.FailedTasks = append(resp.FailedTasks, tk)
			continue
		}
		take(tk.GetResource().GetMemoryMb(), tk.GetResource().GetDiskMb())
		r.state.Tasks = append(r.state.Tasks, tk)
		tasks = append(tasks, tk)
	}
	r.mu.Unlock()
	if r.OnAccepted != nil && len(lrps)+len(tasks) > 0 {
		r.OnAccepted(ctx, lrps, tasks)
	}
	return resp, nil
}
