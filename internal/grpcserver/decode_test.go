package grpcserver_test

import (
	"context"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/internal/grpcserver"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// rawCodec sends *[]byte as they are, so a test can send malformed protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// A request that is not valid protobuf is answered InvalidArgument, unary and
// streaming; one above the receive limit ResourceExhausted.
func TestMalformedAndOversizeRequests(t *testing.T) {
	srv := grpcserver.New(grpcserver.Options{
		Addr: "127.0.0.1:0", Register: registerAll,
		ServerOptions: []grpc.ServerOption{grpc.MaxRecvMsgSize(1024)},
	})
	proc := ifrit.Invoke(srv)
	t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	garbage := []byte{0xff, 0xff, 0xff, 0xff}
	var out []byte
	err = conn.Invoke(ctx, bbsv1.BBSService_DesireLRP_FullMethodName, &garbage, &out)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "malformed request")

	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, bbsv1.BBSService_SubscribeEvents_FullMethodName)
	require.NoError(t, err)
	if err := stream.SendMsg(&garbage); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	err = stream.RecvMsg(&out)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)

	big := make([]byte, 2048)
	big[0], big[1], big[2] = 0x0a, 0xfd, 0x0f // field 1, length 2045
	err = conn.Invoke(ctx, bbsv1.BBSService_DesireLRP_FullMethodName, &big, &out)
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
}
