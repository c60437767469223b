package locket

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
)

// TestEachLeaseKeepsItsOwnKeepAliveStream: two records held through one etcd
// client renew on separate keep-alive streams (etcd answers a stream's
// renewals one at a time, each waiting for its apply backlog), and releasing
// one leaves the other renewed past its TTL.
func TestEachLeaseKeepsItsOwnKeepAliveStream(t *testing.T) {
	client := etcdtest.Shared(t)
	b := NewEtcdBackend(client, nil)
	prefix := etcdtest.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	la, err := b.Acquire(ctx, AcquireRequest{Key: prefix + "/a", Value: []byte("a"), TTL: 2 * time.Second})
	require.NoError(t, err)
	lb, err := b.Acquire(ctx, AcquireRequest{Key: prefix + "/b", Value: []byte("b"), TTL: 2 * time.Second})
	require.NoError(t, err)
	defer func() { _ = lb.Release(ctx) }()
	require.True(t, la.(*etcdLease).keeper != lb.(*etcdLease).keeper, "each lease has its own keep-alive stream")

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
}
