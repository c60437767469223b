package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/logging"
)

const (
	// DefaultMaxRecvMsgSize is the largest message the server accepts.
	DefaultMaxRecvMsgSize = 64 << 20
	// DefaultGracefulStopTimeout bounds GracefulStop before a hard Stop.
	DefaultGracefulStopTimeout = 10 * time.Second
	// DefaultStreamWorkers is the goroutines kept to serve calls (gRPC's
	// NumStreamWorkers): a call runs on one whose stack has grown already
	// instead of a new goroutine growing its stack again (stack growth was
	// about 5 % of the BBS's CPU under load). A call that finds none idle
	// still gets a goroutine of its own, so this never limits concurrency.
	DefaultStreamWorkers = 64
	// streamEndDelay is how long after a stop signal open streams end.
	streamEndDelay = 250 * time.Millisecond
	// RequestIDHeader is the metadata key carrying the request id, both in
	// incoming metadata and in the response header.
	RequestIDHeader = "x-request-id"
)

// Options configure a [Server].
type Options struct {
	// Addr is the listen address, e.g. "127.0.0.1:8889"; port 0 picks a free
	// port, see [Server.Addr].
	Addr string
	// TLS, when non-nil, serves TLS with this config (see
	// internal/tlsconfig for mTLS), and every call is authorized by
	// internal/authz: the caller's role, from its verified client
	// certificate, must be allowed the RPC (PermissionDenied otherwise).
	// Without TLS there are no identities and every call is allowed, so a
	// plaintext server listens only on a loopback address (unless it serves
	// health checks alone: no Register).
	TLS *tls.Config
	// Logger is the base logger; request loggers are sessions of it.
	Logger lager.Logger
	// Register registers the daemon's services on the server. A request
	// that does not decode is answered InvalidArgument (grpc-go answers
	// Internal), so register through the registrar given, not GRPC().
	Register func(grpc.ServiceRegistrar)
	// UnaryInterceptors and StreamInterceptors run after the built-in
	// request-id/logging/recovery interceptor, in order.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
	// ServerOptions are appended after the defaults, so they can override
	// them (for example grpc.MaxRecvMsgSize).
	ServerOptions []grpc.ServerOption
	// GracefulStopTimeout bounds the graceful stop; default 10 s.
	GracefulStopTimeout time.Duration
	// StreamWorkers is the goroutines kept to serve calls; default
	// DefaultStreamWorkers.
	StreamWorkers uint32
	// Metrics, when non-nil, counts and times the calls (see NewMetrics).
	Metrics *Metrics
}

// Server is a gRPC server run as an [ifrit.Runner].
type Server struct {
	opts   Options
	logger lager.Logger
	grpc   *grpc.Server
	health *health.Server

	// stopping is cancelled when Run is signalled: open streams end then
	// (Unavailable) instead of holding the graceful stop to its timeout.
	stopping    context.Context
	stopStreams context.CancelFunc

	// ids makes the request ids of calls that bring none.
	ids *requestIDs

	mu   sync.Mutex
	addr string
}

var _ ifrit.Runner = (*Server)(nil)

// New builds the gRPC server and registers all services. It does not listen
// until run.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("grpc")
	}
	if opts.GracefulStopTimeout <= 0 {
		opts.GracefulStopTimeout = DefaultGracefulStopTimeout
	}
	if opts.StreamWorkers == 0 {
		opts.StreamWorkers = DefaultStreamWorkers
	}
	s := &Server{opts: opts, logger: opts.Logger.Session("grpc-server"), ids: newRequestIDs()}
	s.stopping, s.stopStreams = context.WithCancel(context.Background())

	unary := append([]grpc.UnaryServerInterceptor{s.unaryInterceptor}, opts.UnaryInterceptors...)
	stream := append([]grpc.StreamServerInterceptor{s.streamInterceptor}, opts.StreamInterceptors...)
	codec := newDecodeCodec()
	serverOpts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(codec),
		grpc.MaxRecvMsgSize(DefaultMaxRecvMsgSize),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.NumStreamWorkers(opts.StreamWorkers),
	}
	if opts.TLS != nil {
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	serverOpts = append(serverOpts, opts.ServerOptions...)

	s.grpc = grpc.NewServer(serverOpts...)
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	reg := registrar{s: s.grpc, codec: codec}
	healthpb.RegisterHealthServer(reg, s.health)
	reflection.Register(reg)
	if opts.Register != nil {
		opts.Register(reg)
	}
	return s
}

// Health returns the health service, so a daemon can set per-service status.
// The overall status "" is managed by the server itself.
func (s *Server) Health() *health.Server { return s.health }

// GRPC returns the underlying grpc.Server.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Addr returns the bound listen address (port 0 resolved). It is valid once
// the runner is ready and "" before.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run listens, serves, and closes ready. On a signal it marks the server
// NOT_SERVING, ends open streams with Unavailable (so their clients
// reconnect, to another replica if there is one, instead of holding the stop),
// stops gracefully within the timeout (then hard) and returns nil. It returns an error if it cannot listen or if serving fails.
func (s *Server) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if s.opts.TLS == nil && s.opts.Register != nil {
		// A server of health checks alone (no Register) may listen anywhere.
		if err := CheckPlaintextAddr(s.opts.Addr); err != nil {
			return err
		}
	}
	lis, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("grpcserver: listening on %q: %w", s.opts.Addr, err)
	}
	s.mu.Lock()
	s.addr = lis.Addr().String()
	s.mu.Unlock()

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.grpc.Serve(lis) }()

	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.logger.Info("started", lager.Data{"addr": s.Addr(), "tls": s.opts.TLS != nil})
	close(ready)

	select {
	case err := <-serveErr:
		s.health.Shutdown()
		if err == nil {
			err = errors.New("server stopped unexpectedly")
		}
		return fmt.Errorf("grpcserver: serving on %s: %w", s.Addr(), err)
	case sig := <-signals:
		s.logger.Info("stopping", lager.Data{"signal": sig.String()})
	}

	// Shutdown sets every status, including "", to NOT_SERVING and ignores
	// later updates.
	s.health.Shutdown()
	// Streams get a moment to deliver what is already sent their way (the
	// NOT_SERVING above to health watchers), then end.
	endStreams := time.AfterFunc(streamEndDelay, s.stopStreams)
	defer func() { endStreams.Stop(); s.stopStreams() }()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.opts.GracefulStopTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.logger.Info("graceful-stop-timed-out", lager.Data{"timeout": s.opts.GracefulStopTimeout.String()})
		s.grpc.Stop()
		<-stopped
	}
	<-serveErr
	s.logger.Info("stopped")
	return nil
}

// requestLogger returns ctx with a request id and a request logger, and the
// logger itself.
func (s *Server) requestContext(ctx context.Context, method string) (context.Context, lager.Logger, string) {
	id := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDHeader); len(v) > 0 && v[0] != "" && len(v[0]) <= 128 {
			id = v[0]
		}
	}
	if id == "" {
		id = s.ids.next()
	}
	logger := newRequestLogger(s.opts.Logger, method, id)
	ctx = logging.WithRequestID(ctx, id)
	ctx = logging.NewContext(ctx, logger)
	return ctx, logger, id
}

// logResult logs a finished call: failures that point at a server bug at
// error level, everything else at debug.
func logResult(logger lager.Logger, err error, start time.Time) {
	code := status.Code(err)
	bug := code == codes.Internal || code == codes.Unknown || code == codes.DataLoss
	if !bug && !logging.Enabled(logger, lager.DEBUG) {
		return // nothing to write: spare every call the formatting
	}
	data := lager.Data{"duration": time.Since(start).String()}
	if err == nil {
		logger.Debug("done", data)
		return
	}
	data["code"] = code.String()
	if bug {
		logger.Error("failed", err, data)
		return
	}
	data["error"] = err.Error()
	logger.Debug("failed", data)
}

// panicError logs a recovered panic and returns the status the client sees.
func panicError(logger lager.Logger, r any) error {
	logger.Error("panic", fmt.Errorf("%v", r), lager.Data{"stack": string(debug.Stack())})
	return status.Error(codes.Internal, "internal error: the server recovered from a panic (see server logs)")
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	ctx, logger, id := s.requestContext(ctx, info.FullMethod)
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, panicError(logger, r)
		}
		logResult(logger, err, start)
		s.opts.Metrics.observe(info.FullMethod, err, start, true)
	}()
	if ctx, err = s.authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// authorize checks the caller's role against internal/authz's table when the
// server has TLS, and returns ctx carrying the caller's identity.
func (s *Server) authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	if s.opts.TLS == nil {
		return ctx, nil
	}
	return authz.AuthorizeContext(ctx, fullMethod)
}

// CheckPlaintextAddr refuses a listen address that is not loopback for a
// server without TLS: such a server has no identities and allows every call
// to anyone who reaches it. A host name other than localhost is refused too
// (it may resolve to anything).
func CheckPlaintextAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("grpcserver: listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("grpcserver: listen address %q: without TLS (insecure_plaintext) a server allows every call to anyone, so it listens only on a loopback address (127.0.0.1, ::1, localhost); configure TLS to listen on %q", addr, host)
}

// contextStream overrides the context of a server stream.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *contextStream) Context() context.Context { return c.ctx }

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	ctx, logger, id := s.requestContext(ss.Context(), info.FullMethod)
	_ = ss.SetHeader(metadata.Pairs(RequestIDHeader, id))
	defer func() {
		if r := recover(); r != nil {
			err = panicError(logger, r)
		}
		logResult(logger, err, start)
		s.opts.Metrics.observe(info.FullMethod, err, start, false)
	}()
	if ctx, err = s.authorize(ctx, info.FullMethod); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()
	err = handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	if err != nil && s.stopping.Err() != nil && ss.Context().Err() == nil &&
		(errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled) {
		// Ended by the stop, not by the client: tell it to reconnect.
		err = status.Error(codes.Unavailable, "server stopping: reconnect, to another replica if there is one")
	}
	return err
}
