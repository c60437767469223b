package client_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/grpcserver"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// refuser answers every DesireLRP with one error and counts the calls.
type refuser struct {
	bbsv1.UnimplementedBBSServiceServer
	err   error
	calls atomic.Int32
}

func (r *refuser) DesireLRP(context.Context, *bbsv1.DesireLRPRequest) (*bbsv1.DesireLRPResponse, error) {
	r.calls.Add(1)
	return nil, models.ToStatus(r.err)
}

// The client retries Unavailable, and nothing that can never succeed: a
// write too large for etcd is answered after one call.
func TestRetriesOnlyUnavailable(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		code     codes.Code
		sentinel error
		calls    int32
	}{
		{"too large for etcd", fmt.Errorf("desired LRP pg: %w: one write is about 2000000 bytes and etcd's --max-request-bytes is 1572864", models.ErrTooLarge), codes.InvalidArgument, models.ErrTooLarge, 1},
		{"invalid", fmt.Errorf("%w: bad", models.ErrInvalid), codes.InvalidArgument, models.ErrInvalid, 1},
		{"unavailable", fmt.Errorf("%w: etcd down", models.ErrUnavailable), codes.Unavailable, models.ErrUnavailable, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &refuser{err: tc.err}
			srv := grpcserver.New(grpcserver.Options{
				Addr:     "127.0.0.1:0",
				Register: func(s grpc.ServiceRegistrar) { bbsv1.RegisterBBSServiceServer(s, r) },
			})
			proc := ifrit.Invoke(srv)
			t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })
			c, err := client.New(client.Config{Addresses: []string{srv.Addr()}, Retries: 3, RetryDelay: time.Millisecond})
			require.NoError(t, err)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{})
			require.Equal(t, tc.code, status.Code(err))
			require.ErrorIs(t, err, tc.sentinel)
			require.Equal(t, tc.calls, r.calls.Load())
		})
	}
}

// A validation error crosses gRPC as google.rpc.BadRequest field
// violations and comes back as the *models.ValidationError it was.
func TestValidationErrorsTravelAsStatusDetails(t *testing.T) {
	v := &models.ValidationError{}
	v.Add("desired_lrp.instances", "must be >= 0 (got %d)", -1)
	v.Add("desired_lrp.process_guid", "required")
	r := &refuser{err: fmt.Errorf("desire lrp: %w", v)}
	srv := grpcserver.New(grpcserver.Options{
		Addr:     "127.0.0.1:0",
		Register: func(s grpc.ServiceRegistrar) { bbsv1.RegisterBBSServiceServer(s, r) },
	})
	proc := ifrit.Invoke(srv)
	t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })
	c, err := client.New(client.Config{Addresses: []string{srv.Addr()}})
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.ErrorIs(t, err, models.ErrInvalid)
	var got *models.ValidationError
	require.ErrorAs(t, err, &got)
	require.Equal(t, v.Errors, got.Errors)
	// A client in any language reads the same fields from the details.
	var br *errdetails.BadRequest
	for _, d := range status.Convert(err).Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	require.NotNil(t, br)
	require.Equal(t, "desired_lrp.instances", br.GetFieldViolations()[0].GetField())
	require.Equal(t, "must be >= 0 (got -1)", br.GetFieldViolations()[0].GetDescription())
}
