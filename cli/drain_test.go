package cli

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/locket"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// exitingRep is a rep that, like an empty cell's, stops serving as soon as
// it has answered Drain.
type exitingRep struct {
	repv1.UnimplementedRepServiceServer
	drained chan struct{}
}

func (r *exitingRep) Drain(context.Context, *repv1.DrainRequest) (*repv1.DrainResponse, error) {
	defer close(r.drained)
	return &repv1.DrainResponse{Deadline: time.Now().Add(time.Minute).UnixNano()}, nil
}

// An empty cell's rep exits right after Drain and withdraws its presence a
// moment later; drain --wait must ride out that gap and end in success.
func TestDrainWaitOutlastsTheRepExitingBeforeItsPresenceGoes(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	b, _ := replica(t, prefix, "bbs", "127.0.0.1:0")
	require.Eventually(t, b.Held, 10*time.Second, 20*time.Millisecond)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	rep := &exitingRep{drained: make(chan struct{})}
	repv1.RegisterRepServiceServer(srv, rep)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	value, err := proto.Marshal(&modelsv1.CellPresence{CellId: "cell-e", RepAddress: lis.Addr().String(), Zone: "z1"})
	require.NoError(t, err)
	presence := ifrit.Background(locket.NewPresence(locket.PresenceOptions{
		Client: etcdtest.Shared(t), KeyPrefix: prefix, Name: "cell-e", Owner: "rep-cell-e",
		Value: value, TTL: 30 * time.Second,
	}))
	t.Cleanup(func() { presence.Signal(os.Interrupt); <-presence.Wait() })
	require.Eventually(t, func() bool {
		out, err := gavel(t, b.Addr(), "cells")
		return err == nil && strings.Contains(out, "cell-e")
	}, 10*time.Second, 50*time.Millisecond)

	go func() {
		<-rep.drained
		srv.GracefulStop() // the rep answers, then is gone ...
		time.Sleep(1500 * time.Millisecond)
		presence.Signal(os.Interrupt) // ... and its presence follows
	}()
	out, err := gavel(t, b.Addr(), "drain", "cell-e", "--wait", "--wait-timeout", "20s", "--timeout", "2s")
	require.NoError(t, err, out)
	require.Contains(t, out, "cell cell-e: its rep stopped answering")
	require.Contains(t, out, "cell cell-e is drained and gone")
}
