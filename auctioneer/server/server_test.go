package server_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/auctioneer/auctionrunner"
	"github.com/gavelhq/gavel/auctioneer/server"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
)

type leader struct{ held atomic.Bool }

func (l *leader) Held() bool { return l.held.Load() }

// start serves the API over loopback and returns a client, the batch and
// the leader switch (held).
func start(t *testing.T) (auctioneerv1.AuctioneerServiceClient, *auctionrunner.Batch, *leader) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	batch := auctionrunner.NewBatch()
	l := &leader{}
	l.held.Store(true)
	srv := grpc.NewServer()
	auctioneerv1.RegisterAuctioneerServiceServer(srv, server.New(batch, l))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return auctioneerv1.NewAuctioneerServiceClient(conn), batch, l
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func goodLRP(guid string, indices ...int32) *auctioneerv1.LRPStartRequest {
	return &auctioneerv1.LRPStartRequest{
		ProcessGuid: guid, Domain: "d", Indices: indices,
		Resource:            &auctioneerv1.Resource{MemoryMb: 128, DiskMb: 256},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
	}
}

func goodTask(guid string) *auctioneerv1.TaskStartRequest {
	return &auctioneerv1.TaskStartRequest{
		TaskGuid: guid, Domain: "d",
		Resource:            &auctioneerv1.Resource{MemoryMb: 128, DiskMb: 256},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
	}
}

func TestRequestsJoinTheBatchDeduplicated(t *testing.T) {
	c, batch, _ := start(t)
	_, err := c.RequestLRPAuctions(ctx(t), &auctioneerv1.RequestLRPAuctionsRequest{Starts: []*auctioneerv1.LRPStartRequest{
		goodLRP("pg", 0, 1, 2), goodLRP("pg", 1),
	}})
	require.NoError(t, err)
	_, err = c.RequestLRPAuctions(ctx(t), &auctioneerv1.RequestLRPAuctionsRequest{Starts: []*auctioneerv1.LRPStartRequest{goodLRP("pg", 2, 3)}})
	require.NoError(t, err)
	_, err = c.RequestTaskAuctions(ctx(t), &auctioneerv1.RequestTaskAuctionsRequest{Starts: []*auctioneerv1.TaskStartRequest{goodTask("t1"), goodTask("t1"), goodTask("t2")}})
	require.NoError(t, err)

	select {
	case <-batch.Wake():
	default:
		t.Fatal("the runner was not woken")
	}
	lrps, tasks := batch.Drain()
	var ids []int
	for _, l := range lrps {
		require.Equal(t, "pg", l.ProcessGUID)
		require.Equal(t, 128, l.MemoryMB)
		require.Equal(t, "preloaded:cflinuxfs4", l.RootFS)
		ids = append(ids, l.Index)
	}
	require.Equal(t, []int{0, 1, 2, 3}, ids)
	require.Len(t, tasks, 2)
	require.Equal(t, "t1", tasks[0].TaskGUID)
	require.Equal(t, "t2", tasks[1].TaskGUID)
}

func TestPassiveAuctioneerAnswersUnavailable(t *testing.T) {
	c, batch, l := start(t)
	l.held.Store(false)
	_, err := c.RequestLRPAuctions(ctx(t), &auctioneerv1.RequestLRPAuctionsRequest{Starts: []*auctioneerv1.LRPStartRequest{goodLRP("pg", 0)}})
	require.Equal(t, codes.Unavailable, status.Code(err))
	_, err = c.RequestTaskAuctions(ctx(t), &auctioneerv1.RequestTaskAuctionsRequest{Starts: []*auctioneerv1.TaskStartRequest{goodTask("t")}})
	require.Equal(t, codes.Unavailable, status.Code(err))
	n, m := batch.Len()
	require.Zero(t, n+m)

	l.held.Store(true)
	_, err = c.RequestLRPAuctions(ctx(t), &auctioneerv1.RequestLRPAuctionsRequest{Starts: []*auctioneerv1.LRPStartRequest{goodLRP("pg", 0)}})
	require.NoError(t, err)
}

func TestBadRequestsNameTheField(t *testing.T) {
	lrpCases := []struct {
		name   string
		mutate func(*auctioneerv1.LRPStartRequest)
		field  string
	}{
		{"no process guid", func(r *auctioneerv1.LRPStartRequest) { r.ProcessGuid = "" }, "starts[1].process_guid: is required"},
		{"no domain", func(r *auctioneerv1.LRPStartRequest) { r.Domain = "" }, "starts[1].domain: is required"},
		{"no indices", func(r *auctioneerv1.LRPStartRequest) { r.Indices = nil }, "starts[1].indices"},
		{"negative index", func(r *auctioneerv1.LRPStartRequest) { r.Indices = []int32{0, -1} }, "starts[1].indices[1]: must be >= 0"},
		{"negative memory", func(r *auctioneerv1.LRPStartRequest) { r.Resource.MemoryMb = -1 }, "starts[1].resource.memory_mb"},
		{"negative disk", func(r *auctioneerv1.LRPStartRequest) { r.Resource.DiskMb = -1 }, "starts[1].resource.disk_mb"},
		{"negative pids", func(r *auctioneerv1.LRPStartRequest) { r.Resource.MaxPids = -1 }, "starts[1].resource.max_pids"},
		{"no rootfs", func(r *auctioneerv1.LRPStartRequest) { r.PlacementConstraint = nil }, "starts[1].placement_constraint.root_fs: is required"},
		{"negative run info revision", func(r *auctioneerv1.LRPStartRequest) { r.DesiredEpoch, r.RunInfoRevision = "e", -1 }, "starts[1].run_info_revision: must be >= 0"},
		{"a run info revision without its epoch", func(r *auctioneerv1.LRPStartRequest) { r.RunInfoRevision = 3 }, "starts[1].desired_epoch: is required with a run_info_revision"},
		{"a 300-byte desired epoch", func(r *auctioneerv1.LRPStartRequest) { r.DesiredEpoch, r.RunInfoRevision = strings.Repeat("e", 300), 3 }, "starts[1].desired_epoch: must be at most 256 bytes"},
	}
	c, batch, _ := start(t)
	for _, tc := range lrpCases {
		t.Run("lrp "+tc.name, func(t *testing.T) {
			bad := goodLRP("bad", 0)
			tc.mutate(bad)
			_, err := c.RequestLRPAuctions(ctx(t), &auctioneerv1.RequestLRPAuctionsRequest{Starts: []*auctioneerv1.LRPStartRequest{goodLRP("ok", 0), bad}})
			require.Equal(t, codes.InvalidArgument, status.Code(err))
			require.Contains(t, status.Convert(err).Message(), tc.field)
			n, m := batch.Len()
			require.Zero(t, n+m, "a bad request adds nothing")
		})
	}
	taskCases := []struct {
		name   string
		mutate func(*auctioneerv1.TaskStartRequest)
		field  string
	}{
		{"no task guid", func(r *auctioneerv1.TaskStartRequest) { r.TaskGuid = "" }, "starts[1].task_guid: is required"},
		{"negative memory", func(r *auctioneerv1.TaskStartRequest) { r.Resource.MemoryMb = -5 }, "starts[1].resource.memory_mb: must be >= 0 (got -5)"},
		{"no rootfs", func(r *auctioneerv1.TaskStartRequest) { r.PlacementConstraint.RootFs = "" }, "starts[1].placement_constraint.root_fs: is required"},
	}
	for _, tc := range taskCases {
		t.Run("task "+tc.name, func(t *testing.T) {
			bad := goodTask("bad")
			tc.mutate(bad)
			_, err := c.RequestTaskAuctions(ctx(t), &auctioneerv1.RequestTaskAuctionsRequest{Starts: []*auctioneerv1.TaskStartRequest{goodTask("ok"), bad}})
			require.Equal(t, codes.InvalidArgument, status.Code(err))
			require.Contains(t, status.Convert(err).Message(), tc.field)
			n, m := batch.Len()
			require.Zero(t, n+m)
		})
	}
	t.Run("every bad field is named", func(t *testing.T) {
		err := server.ValidateLRPStarts([]*auctioneerv1.LRPStartRequest{{}, nil})
		require.Error(t, err)
		for _, f := range []string{"starts[0].process_guid", "starts[0].domain", "starts[0].indices", "starts[0].placement_constraint.root_fs", "starts[1]: is required"} {
			require.Contains(t, err.Error(), f)
		}
	})
}
