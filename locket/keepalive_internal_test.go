package locket

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
)

// TestEachLeaseRenewsOnItsOwn: two records held through one etcd client
// renew apart (each renewal is a stream of its own: etcd answers a stream's
// renewals one at a time, each waiting for its apply backlog), and releasing
// one leaves the other renewed past its TTL.
func TestEachLeaseRenewsOnItsOwn(t *testing.T) {
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

	require.NoError(t, la.Release(ctx))
	time.Sleep(5 * time.Second) // past twice the TTL: only renewals keep b
	select {
	case <-lb.Lost():
		t.Fatalf("b was lost after a was released: %v", lb.Err())
	default:
	}
	resp, err := client.Get(ctx, prefix+"/b")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "b is still held")
	ttl, err := client.TimeToLive(ctx, lb.(*etcdLease).id)
	require.NoError(t, err)
	require.Greater(t, ttl.TTL, int64(0), "b's lease is alive")
}

// TestHeldLeasesCostNoKeepAliveGoroutines: a held record costs its monitor
// and its key's watch, not clientv3's three keep-alive goroutines per lease
// (two of which wake twice a second): a rep process of simulated cells
// holds hundreds of presences.
func TestHeldLeasesCostNoKeepAliveGoroutines(t *testing.T) {
	const n = 40
	client := etcdtest.Shared(t)
	b := NewEtcdBackend(client, nil)
	prefix := etcdtest.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := runtime.NumGoroutine()
	leases := make([]Lease, n)
	for i := range leases {
		l, err := b.Acquire(ctx, AcquireRequest{Key: fmt.Sprintf("%s/%d", prefix, i), Value: []byte("v"), TTL: 3 * time.Second})
		require.NoError(t, err)
		leases[i] = l
	}
	defer func() {
		for _, l := range leases {
			_ = l.Release(ctx)
		}
	}()
	time.Sleep(2 * time.Second) // renewals under way or done
	grown := runtime.NumGoroutine() - before
	require.Less(t, grown, 3*n, "%d held leases grew the goroutines by %d", n, grown)
	for i, l := range leases {
		select {
		case <-l.Lost():
			t.Fatalf("lease %d lost: %v", i, l.Err())
		default:
		}
	}
}
