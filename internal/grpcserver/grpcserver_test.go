package grpcserver_test

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/internal/logging"
)

// testService is a hand-written service: Whoami returns the request id the
// handler saw, Panic panics, Block waits for release or cancellation, Sum
// streams a request id back.
type testService struct {
	release chan struct{}
	entered chan struct{}
}

func (ts *testService) desc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "gavel.test.Test",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Whoami", Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(emptypb.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, _ any) (any, error) {
					// The logger in the context must be the request logger.
					if logging.FromContext(ctx, nil) == nil {
						return nil, status.Error(codes.FailedPrecondition, "no logger in context")
					}
					return wrapperspb.String(logging.RequestID(ctx)), nil
				}
				return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/gavel.test.Test/Whoami"}, h)
			}},
			{MethodName: "Panic", Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(emptypb.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, _ any) (any, error) { panic("kaboom") }
				return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/gavel.test.Test/Panic"}, h)
			}},
			{MethodName: "Block", Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(emptypb.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, _ any) (any, error) {
					ts.entered <- struct{}{}
					select {
					case <-ts.release:
						return &emptypb.Empty{}, nil
					case <-ctx.Done():
						return nil, status.FromContextError(ctx.Err()).Err()
					}
				}
				return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/gavel.test.Test/Block"}, h)
			}},
		},
		Streams: []grpc.StreamDesc{
			{StreamName: "StreamPanic", ServerStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
				if logging.RequestID(stream.Context()) == "" {
					return status.Error(codes.FailedPrecondition, "no request id")
				}
				panic("stream kaboom")
			}},
		},
	}
}

// syncBuffer is a goroutine-safe log sink target.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type fixture struct {
	srv   *grpcserver.Server
	proc  ifrit.Process
	conn  *grpc.ClientConn
	logs  *syncBuffer
	svc   *testService
	calls []string
	mu    sync.Mutex
}

func start(t *testing.T, mod func(*grpcserver.Options)) *fixture {
	t.Helper()
	f := &fixture{logs: &syncBuffer{}, svc: &testService{release: make(chan struct{}), entered: make(chan struct{}, 1)}}
	logger := lager.NewLogger("test")
	logger.RegisterSink(lager.NewWriterSink(f.logs, lager.DEBUG))
	opts := grpcserver.Options{
		Addr:   "127.0.0.1:0",
		Logger: logger,
		Register: func(s grpc.ServiceRegistrar) {
			s.RegisterService(f.svc.desc(), f.svc)
		},
		UnaryInterceptors: []grpc.UnaryServerInterceptor{
			func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				f.mu.Lock()
				f.calls = append(f.calls, info.FullMethod+" id="+logging.RequestID(ctx))
				f.mu.Unlock()
				return h(ctx, req)
			},
		},
	}
	if mod != nil {
		mod(&opts)
	}
	f.srv = grpcserver.New(opts)
	assert.Empty(t, f.srv.Addr(), "no address before ready")
	f.proc = ifrit.Invoke(f.srv)
	t.Cleanup(func() {
		f.proc.Signal(syscall.SIGKILL)
		<-f.proc.Wait()
	})
	require.NotEmpty(t, f.srv.Addr())
	require.False(t, strings.HasSuffix(f.srv.Addr(), ":0"))

	conn, err := grpc.NewClient(f.srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	f.conn = conn
	return f
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestHealthAndReflection(t *testing.T) {
	f := start(t, nil)
	hc := healthpb.NewHealthClient(f.conn)

	resp, err := hc.Check(ctx(t), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.Status)

	f.srv.Health().SetServingStatus("gavel.test.Test", healthpb.HealthCheckResponse_NOT_SERVING)
	resp, err = hc.Check(ctx(t), &healthpb.HealthCheckRequest{Service: "gavel.test.Test"})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, resp.Status)

	rc, err := reflectionpb.NewServerReflectionClient(f.conn).ServerReflectionInfo(ctx(t))
	require.NoError(t, err)
	require.NoError(t, rc.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	}))
	rr, err := rc.Recv()
	require.NoError(t, err)
	var names []string
	for _, s := range rr.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	assert.Contains(t, names, "grpc.health.v1.Health")
	assert.Contains(t, names, "gavel.test.Test")
}

func TestRequestID(t *testing.T) {
	f := start(t, nil)

	t.Run("taken from metadata and echoed", func(t *testing.T) {
		out := new(wrapperspb.StringValue)
		var header metadata.MD
		c := metadata.AppendToOutgoingContext(ctx(t), "x-request-id", "req-42")
		require.NoError(t, f.conn.Invoke(c, "/gavel.test.Test/Whoami", &emptypb.Empty{}, out, grpc.Header(&header)))
		assert.Equal(t, "req-42", out.GetValue())
		assert.Equal(t, []string{"req-42"}, header.Get("x-request-id"))
		assert.Contains(t, f.logs.String(), `"request-id":"req-42"`)
	})

	t.Run("generated when absent", func(t *testing.T) {
		a, b := new(wrapperspb.StringValue), new(wrapperspb.StringValue)
		require.NoError(t, f.conn.Invoke(ctx(t), "/gavel.test.Test/Whoami", &emptypb.Empty{}, a))
		require.NoError(t, f.conn.Invoke(ctx(t), "/gavel.test.Test/Whoami", &emptypb.Empty{}, b))
		assert.Len(t, a.GetValue(), 36, "a UUID")
		assert.NotEqual(t, a.GetValue(), b.GetValue())
	})

	t.Run("user interceptors run inside and see the id", func(t *testing.T) {
		f.mu.Lock()
		defer f.mu.Unlock()
		assert.Contains(t, f.calls, "/gavel.test.Test/Whoami id=req-42")
	})
}

func TestPanicsBecomeInternal(t *testing.T) {
	f := start(t, nil)

	err := f.conn.Invoke(ctx(t), "/gavel.test.Test/Panic", &emptypb.Empty{}, &emptypb.Empty{})
	assert.Equal(t, codes.Internal, status.Code(err), "got %v", err)
	assert.Contains(t, f.logs.String(), "kaboom")

	desc := &grpc.StreamDesc{StreamName: "StreamPanic", ServerStreams: true}
	cs, err := f.conn.NewStream(ctx(t), desc, "/gavel.test.Test/StreamPanic")
	require.NoError(t, err)
	require.NoError(t, cs.SendMsg(&emptypb.Empty{}))
	require.NoError(t, cs.CloseSend())
	err = cs.RecvMsg(&emptypb.Empty{})
	assert.Equal(t, codes.Internal, status.Code(err), "got %v", err)
	assert.Contains(t, f.logs.String(), "stream kaboom")

	// The server is still alive.
	_, err = healthpb.NewHealthClient(f.conn).Check(ctx(t), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
}

func TestLargeMessagesAccepted(t *testing.T) {
	f := start(t, nil)
	// 8 MiB is over gRPC's 4 MiB default receive limit.
	big := &healthpb.HealthCheckRequest{Service: strings.Repeat("x", 8<<20)}
	_, err := healthpb.NewHealthClient(f.conn).Check(ctx(t), big, grpc.MaxCallSendMsgSize(16<<20))
	assert.Equal(t, codes.NotFound, status.Code(err), "the unknown service is reported, not the size: %v", err)
}

func TestGracefulStop(t *testing.T) {
	f := start(t, func(o *grpcserver.Options) { o.GracefulStopTimeout = 5 * time.Second })

	watch, err := healthpb.NewHealthClient(f.conn).Watch(ctx(t), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	first, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.Status)

	blockDone := make(chan error, 1)
	go func() {
		blockDone <- f.conn.Invoke(ctx(t), "/gavel.test.Test/Block", &emptypb.Empty{}, &emptypb.Empty{})
	}()
	<-f.svc.entered

	f.proc.Signal(syscall.SIGTERM)

	next, err := watch.Recv()
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, next.Status)

	select {
	case err := <-f.proc.Wait():
		t.Fatalf("server exited before the in-flight call finished: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(f.svc.release)
	require.NoError(t, <-blockDone, "the in-flight call completes during graceful stop")

	// The open Watch stream is ended by the stop, with Unavailable so that
	// its client reconnects; it does not hold GracefulStop to its bound.
	_, err = watch.Recv()
	assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	select {
	case err := <-f.proc.Wait():
		assert.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop")
	}
	assert.NotContains(t, f.logs.String(), "graceful-stop-timed-out")
}

func TestListenFailure(t *testing.T) {
	f := start(t, nil)
	proc := ifrit.Background(grpcserver.New(grpcserver.Options{Addr: f.srv.Addr()}))
	select {
	case err := <-proc.Wait():
		require.Error(t, err)
		assert.Contains(t, err.Error(), f.srv.Addr())
	case <-time.After(10 * time.Second):
		t.Fatal("second server on the same address did not fail")
	}
}

// goroutineID is the running goroutine's number, from its stack header.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}

func TestCallsRunOnKeptGoroutines(t *testing.T) {
	seen := map[string]int{}
	var mu sync.Mutex
	f := start(t, func(o *grpcserver.Options) {
		o.StreamWorkers = 2
		o.UnaryInterceptors = append(o.UnaryInterceptors, func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			mu.Lock()
			seen[goroutineID()]++
			mu.Unlock()
			return h(ctx, req)
		})
	})
	for range 40 {
		require.NoError(t, f.conn.Invoke(ctx(t), "/gavel.test.Test/Whoami", &emptypb.Empty{}, &wrapperspb.StringValue{}))
	}
	mu.Lock()
	defer mu.Unlock()
	// A goroutine per call would be 40; a call that finds both workers
	// busy (still finishing the previous response) gets its own.
	require.Less(t, len(seen), 20, "calls reuse the kept goroutines: %v", seen)
}

// Calls are logged at debug level when the logger writes it; at error level
// only a call that points at a server bug is, and the panic shows there.
func TestCallsAreLoggedAtTheLoggersLevel(t *testing.T) {
	for _, level := range []string{"debug", "error"} {
		t.Run(level, func(t *testing.T) {
			var logs syncBuffer
			logger, err := logging.NewWithWriter("test", level, &logs)
			require.NoError(t, err)
			f := start(t, func(o *grpcserver.Options) { o.Logger = logger })
			require.NoError(t, f.conn.Invoke(ctx(t), "/gavel.test.Test/Whoami", &emptypb.Empty{}, &wrapperspb.StringValue{}))
			err = f.conn.Invoke(ctx(t), "/gavel.test.Test/Panic", &emptypb.Empty{}, &emptypb.Empty{})
			require.Equal(t, codes.Internal, status.Code(err))
			assert.Contains(t, logs.String(), `"message":"test.request.failed"`)
			assert.Contains(t, logs.String(), "kaboom")
			assert.Equal(t, level == "debug", strings.Contains(logs.String(), `"message":"test.request.done"`))
		})
	}
}

func TestMetricsCountAndTimeCalls(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := start(t, func(o *grpcserver.Options) { o.Metrics = grpcserver.NewMetrics(reg) })

	for range 2 {
		require.NoError(t, f.conn.Invoke(ctx(t), "/gavel.test.Test/Whoami", &emptypb.Empty{}, &wrapperspb.StringValue{}))
	}
	err := f.conn.Invoke(ctx(t), "/gavel.test.Test/Panic", &emptypb.Empty{}, &emptypb.Empty{})
	require.Equal(t, codes.Internal, status.Code(err))
	cs, err := f.conn.NewStream(ctx(t), &grpc.StreamDesc{StreamName: "StreamPanic", ServerStreams: true}, "/gavel.test.Test/StreamPanic")
	require.NoError(t, err)
	require.NoError(t, cs.SendMsg(&emptypb.Empty{}))
	require.NoError(t, cs.CloseSend())
	require.Equal(t, codes.Internal, status.Code(cs.RecvMsg(&emptypb.Empty{})))

	// A blocked call is timed from its start to its end.
	done := make(chan error, 1)
	go func() { done <- f.conn.Invoke(ctx(t), "/gavel.test.Test/Block", &emptypb.Empty{}, &emptypb.Empty{}) }()
	<-f.svc.entered
	time.Sleep(60 * time.Millisecond)
	close(f.svc.release)
	require.NoError(t, <-done)

	// The stream's count lands once the server has finished it.
	require.Eventually(t, func() bool {
		return handled(t, reg, "/gavel.test.Test/StreamPanic", "Internal") == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 2.0, handled(t, reg, "/gavel.test.Test/Whoami", "OK"))
	require.Equal(t, 1.0, handled(t, reg, "/gavel.test.Test/Panic", "Internal"))
	require.Equal(t, 1.0, handled(t, reg, "/gavel.test.Test/Block", "OK"))

	families, err := reg.Gather()
	require.NoError(t, err)
	timed := map[string]*dto.Histogram{}
	for _, mf := range families {
		if mf.GetName() != "gavel_grpc_server_handling_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			timed[m.GetLabel()[0].GetValue()] = m.GetHistogram()
		}
	}
	require.EqualValues(t, 2, timed["/gavel.test.Test/Whoami"].GetSampleCount())
	require.EqualValues(t, 1, timed["/gavel.test.Test/Panic"].GetSampleCount())
	require.GreaterOrEqual(t, timed["/gavel.test.Test/Block"].GetSampleSum(), 0.06, "the blocked call's time")
	require.NotContains(t, timed, "/gavel.test.Test/StreamPanic", "streams are counted, not timed")
}

// handled reads the handled-calls counter of method and code from reg (0
// when it has no such series).
func handled(t *testing.T, reg *prometheus.Registry, method, code string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range families {
		if mf.GetName() != "gavel_grpc_server_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
