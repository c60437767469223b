// Package bbstest is test support for the BBS's neighbours: an auctioneer
// gRPC API that records the start requests it receives and holds the
// auctioneer lock with its address, as the real auctioneer does.
package bbstest

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/locket"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
)

// Auctioneer is the auctioneer's gRPC API recording what it is asked. Safe for concurrent use.
type Auctioneer struct {
	auctioneerv1.UnimplementedAuctioneerServiceServer
	mu    sync.Mutex
	lrps  []*auctioneerv1.LRPStartRequest
	tasks []*auctioneerv1.TaskStartRequest
}

// RequestLRPAuctions records LRP start requests.
func (a *Auctioneer) RequestLRPAuctions(_ context.Context, req *auctioneerv1.RequestLRPAuctionsRequest) (*auctioneerv1.RequestLRPAuctionsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lrps = append(a.lrps, req.GetStarts()...)
	return &auctioneerv1.RequestLRPAuctionsResponse{}, nil
}

// RequestTaskAuctions records task start requests.
func (a *Auctioneer) RequestTaskAuctions(_ context.Context, req *auctioneerv1.RequestTaskAuctionsRequest) (*auctioneerv1.RequestTaskAuctionsResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tasks = append(a.tasks, req.GetStarts()...)
	return &auctioneerv1.RequestTaskAuctionsResponse{}, nil
}

// Snapshot returns the requests received so far.
func (a *Auctioneer) Snapshot() ([]*auctioneerv1.LRPStartRequest, []*auctioneerv1.TaskStartRequest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*auctioneerv1.LRPStartRequest(nil), a.lrps...), append([]*auctioneerv1.TaskStartRequest(nil), a.tasks...)
}

// Asks counts the start requests received for one instance.
func (a *Auctioneer) Asks(guid string, index int32) int {
	lrps, _ := a.Snapshot()
	n := 0
	for _, l := range lrps {
		for _, i := range l.GetIndices() {
			if l.GetProcessGuid() == guid && i == index {
				n++
			}
		}
	}
	return n
}

// StartAuctioneer serves a recording auctioneer on loopback and takes the
// auctioneer lock under prefix (on the shared test etcd) with its address.
// Both stop when the test ends.
func StartAuctioneer(t testing.TB, prefix string) *Auctioneer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rec := &Auctioneer{}
	srv := grpc.NewServer()
	auctioneerv1.RegisterAuctioneerServiceServer(srv, rec)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	lock := locket.NewLock(locket.LockOptions{
		Client: etcdtest.Shared(t), KeyPrefix: prefix, Name: "auctioneer", Owner: "auctioneer-1",
		Value: []byte(lis.Addr().String()), TTL: 2 * time.Second,
	})
	proc := ifrit.Background(lock)
	t.Cleanup(func() { proc.Signal(os.Interrupt); <-proc.Wait() })
	<-proc.Ready()
	return rec
}
