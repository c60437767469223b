package grpcserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// registerAll registers every Gavel service, unimplemented: a call that
// passes authorization answers Unimplemented.
func registerAll(s grpc.ServiceRegistrar) {
	bbsv1.RegisterBBSServiceServer(s, bbsv1.UnimplementedBBSServiceServer{})
	repv1.RegisterRepServiceServer(s, repv1.UnimplementedRepServiceServer{})
	auctioneerv1.RegisterAuctioneerServiceServer(s, auctioneerv1.UnimplementedAuctioneerServiceServer{})
}

// succeeding is desc with every RPC answering success at once (an empty
// response; a stream that ends OK) after the interceptors: a call that
// passes authorization succeeds.
func succeeding(desc grpc.ServiceDesc) *grpc.ServiceDesc {
	d := desc
	d.HandlerType = (*any)(nil)
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		full := "/" + desc.ServiceName + "/" + m.MethodName
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := &emptypb.Empty{}
			if err := dec(in); err != nil {
				return nil, err
			}
			ok := func(context.Context, any) (any, error) { return &emptypb.Empty{}, nil }
			if ic == nil {
				return ok(ctx, in)
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, ok)
		}
		d.Methods[i] = m
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, sd := range desc.Streams {
		sd.Handler = func(any, grpc.ServerStream) error { return nil }
		d.Streams[i] = sd
	}
	return &d
}

// registerSucceeding registers every Gavel service answering success.
func registerSucceeding(s grpc.ServiceRegistrar) {
	for _, desc := range []grpc.ServiceDesc{bbsv1.BBSService_ServiceDesc, repv1.RepService_ServiceDesc, auctioneerv1.AuctioneerService_ServiceDesc} {
		s.RegisterService(succeeding(desc), struct{}{})
	}
}

// call makes one call of any RPC with an empty message (which decodes as any
// request) and returns its error; a stream is sent one message and read once.
func call(ctx context.Context, conn *grpc.ClientConn, method string, stream bool) error {
	if !stream {
		return conn.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	// A refused stream may end before the message is sent (io.EOF); its
	// status comes from RecvMsg.
	var req proto.Message = &emptypb.Empty{}
	if strings.Contains(method, "ServerReflection") {
		// Reflection answers an empty request InvalidArgument: ask for something.
		req = &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}}
	}
	if err := s.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_ = s.CloseSend()
	if err := s.RecvMsg(&emptypb.Empty{}); !errors.Is(err, io.EOF) {
		return err // nil for a message, or the status the stream ended with
	}
	return nil // the stream ended OK
}

// Every RPC of every service a Gavel server registers (the BBS, rep and
// auctioneer services, health, reflection), called over real mTLS by a
// certificate of every role and by one without a role: the calls the table
// allows succeed (every handler here answers success), every other is
// refused with PermissionDenied naming the role and the RPC, and no
// registered RPC is missing from the table.
func TestEveryRPCByEveryRoleOverMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "gavel")
	serverTLS, err := ca.IssueFor(t, authz.Identity{Role: authz.BBS}).Server()
	require.NoError(t, err)
	srv := grpcserver.New(grpcserver.Options{Addr: "127.0.0.1:0", TLS: serverTLS, Register: registerSucceeding})
	proc := ifrit.Invoke(srv)
	t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })

	type caller struct {
		name string
		id   *authz.Identity // nil: a certificate without a role
		conn *grpc.ClientConn
	}
	dial := func(files tlsconfig.Files) *grpc.ClientConn {
		conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(tlstest.Creds(t, files, "localhost")))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	var callers []caller
	for _, role := range authz.Roles() {
		id := authz.Identity{Role: role}
		if role == authz.Rep {
			id.CellID = "cell-a"
		}
		callers = append(callers, caller{name: id.String(), id: &id, conn: dial(ca.IssueFor(t, id))})
	}
	callers = append(callers, caller{name: "no role", conn: dial(ca.Issue(t, "legacy"))})

	methods := 0
	for svc, info := range srv.GRPC().GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			rule, ok := authz.Lookup(full)
			require.True(t, ok, "%s is served but has no rule in internal/authz/table.go", full)
			methods++
			for _, c := range callers {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := call(ctx, c.conn, full, m.IsClientStream || m.IsServerStream)
				cancel()
				allowed := rule.AnyPeer || (c.id != nil && rule.Allows(c.id.Role))
				msg := status.Convert(err).Message()
				if allowed {
					require.NoError(t, err, "%s calling %s", c.name, full)
					continue
				}
				require.Equal(t, codes.PermissionDenied, status.Code(err), "%s calling %s must be refused: %v", c.name, full, err)
				require.Contains(t, msg, full, "the refusal names the RPC")
				if c.id != nil {
					require.Contains(t, msg, fmt.Sprintf("role %s may not call", c.id.Role), "the refusal names the role")
				} else {
					require.Contains(t, msg, "reissue it with gavel certs")
				}
			}
		}
	}
	require.Equal(t, len(authz.Methods()), methods, "the table has no entry for an RPC no server serves")
}

// A client with no certificate reaches only the health service.
func TestNoClientCertificateOnlyHealth(t *testing.T) {
	ca := tlstest.NewCA(t, "gavel")
	serverTLS, err := ca.IssueFor(t, authz.Identity{Role: authz.BBS}).Server()
	require.NoError(t, err)
	serverTLS.ClientAuth = 0 // tls.NoClientCert: a server that does not ask for one
	srv := grpcserver.New(grpcserver.Options{Addr: "127.0.0.1:0", TLS: serverTLS, Register: registerAll})
	proc := ifrit.Invoke(srv)
	t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(tlstest.Creds(t, tlsconfig.Files{CAFile: ca.File}, "localhost")))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, call(ctx, conn, "/grpc.health.v1.Health/Check", false))
	err = call(ctx, conn, bbsv1.BBSService_Ping_FullMethodName, false)
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.True(t, strings.Contains(err.Error(), "no verified client certificate"), err.Error())
}

// Without TLS there are no identities: every call passes, and the server
// listens only on loopback.
func TestPlaintextAllowsEverythingOnLoopbackOnly(t *testing.T) {
	srv := grpcserver.New(grpcserver.Options{Addr: "127.0.0.1:0", Register: registerAll})
	proc := ifrit.Invoke(srv)
	t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.Equal(t, codes.Unimplemented, status.Code(call(ctx, conn, bbsv1.BBSService_DesireLRP_FullMethodName, false)))

	for _, addr := range []string{"0.0.0.0:0", ":0", "10.1.2.3:8889", "bbs.example:8889"} {
		err := grpcserver.CheckPlaintextAddr(addr)
		require.ErrorContains(t, err, "listens only on a loopback address", addr)
		p := ifrit.Invoke(grpcserver.New(grpcserver.Options{Addr: addr, Register: registerAll}))
		require.ErrorContains(t, <-p.Wait(), "insecure_plaintext", addr)
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0", "127.0.0.5:1"} {
		require.NoError(t, grpcserver.CheckPlaintextAddr(addr), addr)
	}
}
