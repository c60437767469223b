package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/store"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Leader tells whether this replica holds the bbs lock.
type Leader interface {
	Held() bool
}

// Auctions takes placement requests without blocking.
type Auctions interface {
	RequestLRPs(reqs ...*auctioneerv1.LRPStartRequest)
	RequestTasks(reqs ...*auctioneerv1.TaskStartRequest)
}

// Cells reaches the rep of a cell.
type Cells interface {
	StopLRPInstance(ctx context.Context, cell *modelsv1.CellPresence, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) error
	CancelTask(ctx context.Context, cell *modelsv1.CellPresence, taskGUID string) error
}

// Completions delivers completed tasks to their callback URLs.
type Completions interface {
	Submit(task *modelsv1.Task)
}

// Options are the server's dependencies.
type Options struct {
	Store       *store.Store
	Leader      Leader
	Auctions    Auctions
	Cells       Cells
	Completions Completions
	Logger      lager.Logger
	// RetireAttempts is how often a retire tries to stop an instance on its cell (5).
	RetireAttempts int
	// Limits bound what requests may ask for (default models.DefaultMaxInstances instances).
	Limits models.Limits
}

// Server implements bbsv1.BBSServiceServer.
type Server struct {
	bbsv1.UnimplementedBBSServiceServer
	opts   Options
	store  *store.Store
	logger lager.Logger
	// background tracks work a request left behind (stops, cancels), so a stop waits for it.
	background sync.WaitGroup
}

var _ bbsv1.BBSServiceServer = (*Server)(nil)

// New returns the server.
func New(opts Options) *Server {
	if opts.RetireAttempts <= 0 {
		opts.RetireAttempts = 5
	}
	return &Server{opts: opts, store: opts.Store, logger: opts.Logger.Session("bbs-server")}
}

// Wait blocks until the background work requests left behind has finished.
func (s *Server) Wait() { s.background.Wait() }

// readOnly lists the methods a passive replica serves.
var readOnly = map[string]bool{
	"Ping": true, "ListDomains": true, "GetDesiredLRP": true, "ListDesiredLRPs": true,
	"ListDesiredLRPSchedulingInfos": true, "ListDesiredLRPRoutingInfos": true, "ListActualLRPs": true,
	"GetTask": true, "ListTasks": true, "ListCells": true, "SubscribeEvents": true,
}

// validatedWithBounds lists the methods whose handler's validation
// (models.ValidateDesiredLRP, ValidateDesiredLRPUpdate, ValidateTask) walks
// the whole request through the bounds itself, so the interceptor does not
// walk it twice.
var validatedWithBounds = map[string]bool{"DesireLRP": true, "UpdateDesiredLRP": true, "DesireTask": true}

func method(full string) string { return full[strings.LastIndex(full, "/")+1:] }

// errPassive is what a passive replica answers to writes.
var errPassive = status.Error(codes.Unavailable, "this BBS replica is passive: it does not hold the bbs lock; retry against the active replica")

// UnaryInterceptor refuses writes on a passive replica, refuses requests
// beyond the bounds of bbs/models (CheckBounds: lengths, counts, enums,
// record sizes) and maps store errors to status codes.
func (s *Server) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	name := method(info.FullMethod)
	if !readOnly[name] && !s.opts.Leader.Held() {
		return nil, errPassive
	}
	if readOnly[name] && name != "Ping" {
		// Reads come from the watch cache; first let it catch up with
		// etcd, so no replica answers with state older than a write
		// already acknowledged (by this replica or another).
		if err := s.store.Sync(ctx); err != nil {
			return nil, models.ToStatus(err)
		}
	}
	if m, ok := req.(proto.Message); ok && !validatedWithBounds[method(info.FullMethod)] {
		if err := models.CheckBounds(m); err != nil {
			return nil, models.ToStatus(err)
		}
	}
	resp, err := handler(ctx, req)
	return resp, models.ToStatus(err)
}

// StreamInterceptor maps store errors to status codes on streams.
func (s *Server) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return models.ToStatus(handler(srv, ss))
}

// go runs f in the background with its own deadline, detached from the request.
func (s *Server) goBackground(ctx context.Context, timeout time.Duration, f func(ctx context.Context)) {
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		f(bctx)
	}()
}

// Ping answers whether this replica serves writes.
func (s *Server) Ping(ctx context.Context, _ *bbsv1.PingRequest) (*bbsv1.PingResponse, error) {
	return &bbsv1.PingResponse{Available: s.opts.Leader.Held()}, nil
}

// UpsertDomain marks a domain fresh.
func (s *Server) UpsertDomain(ctx context.Context, req *bbsv1.UpsertDomainRequest) (*bbsv1.UpsertDomainResponse, error) {
	if err := models.ValidateDomain(req.GetDomain(), req.GetTtlSeconds()); err != nil {
		return nil, err
	}
	if err := s.store.UpsertDomain(ctx, req.GetDomain(), time.Duration(req.GetTtlSeconds())*time.Second); err != nil {
		return nil, err
	}
	return &bbsv1.UpsertDomainResponse{}, nil
}

// ListDomains lists the fresh domains.
func (s *Server) ListDomains(ctx context.Context, _ *bbsv1.ListDomainsRequest) (*bbsv1.ListDomainsResponse, error) {
	domains, rev := s.store.ListDomains()
	return &bbsv1.ListDomainsResponse{Domains: domains, Revision: rev}, nil
}

// ListCells lists the live cells.
func (s *Server) ListCells(ctx context.Context, _ *bbsv1.ListCellsRequest) (*bbsv1.ListCellsResponse, error) {
	cells, rev := s.store.ListCells()
	return &bbsv1.ListCellsResponse{Cells: cells, Revision: rev}, nil
}

// SubscribeEvents streams events.
func (s *Server) SubscribeEvents(req *bbsv1.SubscribeEventsRequest, stream bbsv1.BBSService_SubscribeEventsServer) error {
	if err := models.CheckBounds(req); err != nil {
		return err
	}
	if req.GetSinceRevision() < 0 {
		v := &models.ValidationError{}
		v.Add("since_revision", "must be >= 0 (got %d)", req.GetSinceRevision())
		return v
	}
	f := store.EventFilter{CellID: req.GetCellId()}
	if len(req.GetKinds()) == 0 {
		f.Kinds = store.AllEventKinds()
	}
	for i, k := range req.GetKinds() {
		switch k {
		case bbsv1.EventKind_EVENT_KIND_DESIRED_LRP:
			f.Kinds.DesiredLRP = true
		case bbsv1.EventKind_EVENT_KIND_ACTUAL_LRP:
			f.Kinds.ActualLRP = true
		case bbsv1.EventKind_EVENT_KIND_TASK:
			f.Kinds.Task = true
		case bbsv1.EventKind_EVENT_KIND_CELL:
			f.Kinds.Cell = true
		default:
			v := &models.ValidationError{}
			v.Add(fmt.Sprintf("kinds[%d]", i), "must be a known event kind (got %d)", k)
			return v
		}
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	events, errs := s.store.Subscribe(ctx, req.GetSinceRevision(), f)
	for e := range events {
		if err := stream.Send(&bbsv1.SubscribeEventsResponse{Event: e}); err != nil {
			return err
		}
	}
	select {
	case err := <-errs:
		return err
	default:
		return stream.Context().Err()
	}
}
