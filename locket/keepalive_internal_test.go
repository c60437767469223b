package locket

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/internal/etcdtest"
)

// TestEachLeaseKeepsItsOwnKeepAliveStream: two records held through one etcd
// client renew on separate keep-alive streams (etcd answers a stream's
// renewals one at a time, each waiting for its apply backlog), and releasing
// one leaves the other renewed past its TTL.
func TestEachLeaseKeepsItsOwnKeepAliveStream(t *testing.T) {
	client := etcdtest.Shared(t)
	b := NewEtcdBackend(client, nil)
	var streams atomic.Int32
	b.wrapLeases = func(lc pb.LeaseClient) pb.LeaseClient { return &countedLeases{LeaseClient: lc, opened: &streams} }
	prefix := etcdtest.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	la, err := b.Acquire(ctx, AcquireRequest{Key: prefix + "/a", Value: []byte("a"), TTL: 2 * time.Second})
	require.NoError(t, err)
	lb, err := b.Acquire(ctx, AcquireRequest{Key: prefix + "/b", Value: []byte("b"), TTL: 2 * time.Second})
	require.NoError(t, err)
	defer func() { _ = lb.Release(ctx) }()
	require.Eventually(t, func() bool { return streams.Load() == 2 }, 5*time.Second, 10*time.Millisecond,
		"each lease opens its own keep-alive stream")

	require.NoError(t, la.Release(ctx))
	time.Sleep(3 * time.Second) // past the TTL: only renewals keep b
	select {
	case <-lb.Lost():
		t.Fatalf("b was lost after a was released: %v", lb.Err())
	default:
	}
	resp, err := client.Get(ctx, prefix+"/b")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "b is still held")
	require.Equal(t, int32(2), streams.Load(), "a stream that works is kept, not reopened")
}

// A keep-alive stream that ends after each answer is replaced, and the lease
// stays held through many TTLs of such streams.
func TestLeaseRenewsThroughBrokenStreams(t *testing.T) {
	client := etcdtest.Shared(t)
	b := NewEtcdBackend(client, nil)
	var streams atomic.Int32
	b.wrapLeases = func(lc pb.LeaseClient) pb.LeaseClient {
		return &countedLeases{LeaseClient: lc, opened: &streams, answersPerStream: 1}
	}
	key := etcdtest.Prefix(t) + "/flaky"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := b.Acquire(ctx, AcquireRequest{Key: key, Value: []byte("v"), TTL: 2 * time.Second})
	require.NoError(t, err)
	defer func() { _ = l.Release(ctx) }()

	time.Sleep(6 * time.Second) // three TTLs
	select {
	case <-l.Lost():
		t.Fatalf("lost while its streams kept breaking: %v", l.Err())
	default:
	}
	resp, err := client.Get(ctx, key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "still held")
	require.GreaterOrEqual(t, streams.Load(), int32(4), "each broken stream was replaced")
}

// Renewals that reach etcd but whose answers never come back lose the lease
// once its TTL has passed, although etcd still holds it: the holder cannot
// know it does, so a lock's holder stops before another could take it.
func TestLeaseLostWhenRenewalsGoUnanswered(t *testing.T) {
	client := etcdtest.Shared(t)
	b := NewEtcdBackend(client, nil)
	b.wrapLeases = func(lc pb.LeaseClient) pb.LeaseClient { return &countedLeases{LeaseClient: lc, mute: true} }
	key := etcdtest.Prefix(t) + "/mute"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	l, err := b.Acquire(ctx, AcquireRequest{Key: key, Value: []byte("v"), TTL: 2 * time.Second})
	require.NoError(t, err)
	defer func() { _ = l.Release(ctx) }()

	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("not lost although no renewal was answered")
	}
	require.ErrorIs(t, l.Err(), ErrLeaseLost)
	require.Contains(t, l.Err().Error(), "not renewed within its TTL")
	require.GreaterOrEqual(t, time.Since(start), 2*time.Second, "not lost before its TTL")
	resp, err := client.Get(ctx, key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "etcd itself still held the lease: the renewals reached it")
}

// countedLeases wraps etcd's lease API: it counts the keep-alive streams
// opened, and can end each stream after answersPerStream answers, or keep
// every answer from its reader (mute).
type countedLeases struct {
	pb.LeaseClient
	opened           *atomic.Int32
	answersPerStream int
	mute             bool
}

func (c *countedLeases) LeaseKeepAlive(ctx context.Context, opts ...grpc.CallOption) (pb.Lease_LeaseKeepAliveClient, error) {
	s, err := c.LeaseClient.LeaseKeepAlive(ctx, opts...)
	if err != nil {
		return nil, err
	}
	if c.opened != nil {
		c.opened.Add(1)
	}
	return &limitedStream{Lease_LeaseKeepAliveClient: s, ctx: ctx, left: c.answersPerStream, mute: c.mute}, nil
}

type limitedStream struct {
	pb.Lease_LeaseKeepAliveClient
	ctx  context.Context
	left int // answers before the stream fails; 0: no limit
	mute bool
}

func (s *limitedStream) Recv() (*pb.LeaseKeepAliveResponse, error) {
	if s.mute {
		for {
			if _, err := s.Lease_LeaseKeepAliveClient.Recv(); err != nil {
				return nil, err
			}
		}
	}
	resp, err := s.Lease_LeaseKeepAliveClient.Recv()
	if err == nil && s.left > 0 {
		s.left--
		if s.left == 0 {
			s.left = -1 // the next Recv fails
		}
		return resp, nil
	}
	if err == nil && s.left < 0 {
		return nil, context.Canceled // the stream "breaks"
	}
	return resp, err
}
