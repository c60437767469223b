package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/store"
	"github.com/gavelhq/gavel/internal/etcdtest"
)

// A lease held on its own connection (as the bbs lock and cell presences are)
// stays alive while the store writes large batches as fast as it can: the
// committer bounds every transaction by operations and bytes, so etcd's apply
// loop never holds a keep-alive back for long. The etcd allows transactions
// far larger than the store's bound, as the embedded etcd does.
func TestLeaseSurvivesLargeBatchedWrites(t *testing.T) {
	srv := etcdtest.StartWith(t, etcdtest.Options{MaxTxnOps: 4096, MaxRequestBytes: 8 << 20})
	bulk := etcdtest.Client(t, srv)
	leases := etcdtest.Client(t, srv)
	var worst atomic.Int64
	s := store.New(store.Options{
		Client: bulk, KeyPrefix: etcdtest.Prefix(t), Logger: lager.NewLogger("store"),
		MaxTxnOps: 4096, MaxRequestBytes: 8 << 20,
		Committer: store.CommitterOptions{MaxOps: 1024},
		ObserveCommit: func(_ int, d time.Duration) {
			for {
				w := worst.Load()
				if int64(d) <= w || worst.CompareAndSwap(w, int64(d)) {
					return
				}
			}
		},
	})
	opts := s.Committer().Options()
	require.Equal(t, store.DefaultCommitMaxBytes, opts.MaxBytes, "transactions are bounded by bytes by default")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	require.NoError(t, s.WaitSynced(wctx))
	wcancel()

	const ttl = 3 // seconds
	grant, err := leases.Grant(ctx, ttl)
	require.NoError(t, err)
	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	alive, err := leases.KeepAlive(kctx, grant.ID)
	require.NoError(t, err)
	lapsed := make(chan struct{})
	go func() {
		for range alive { // drain the renewals
		}
		if kctx.Err() == nil {
			close(lapsed)
		}
	}()

	// Writers: many desires of many instances at once, every one a large
	// write split into bounded transactions and packed with its neighbours.
	const writers, perWriter, instances = 8, 6, 400
	wctx, wstop := context.WithCancel(ctx)
	defer wstop()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter && wctx.Err() == nil; i++ {
				if _, err := s.DesireLRP(wctx, lrp(fmt.Sprintf("pg-%d-%d", w, i), instances)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()

	// Watch the lease from the bulk connection's side too: its remaining
	// TTL never reaches zero while the writes go on.
	minTTL := int64(ttl)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
watch:
	for {
		select {
		case <-writing:
			break watch
		case <-lapsed:
			t.Fatal("the lease's keep-alive stream ended: the lease was lost during bulk writes")
		case <-deadline:
			t.Fatal("the writes did not finish within 60s")
		case <-tick.C:
			r, err := leases.TimeToLive(ctx, grant.ID)
			require.NoError(t, err)
			require.Positive(t, r.TTL, "the lease expired during bulk writes")
			minTTL = min(minTTL, r.TTL)
		}
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	rs, _ := s.ListActualLRPs(store.ActualFilter{})
	rows := len(rs)
	require.Equal(t, writers*perWriter*instances, rows, "every instance row was written")
	r, err := leases.TimeToLive(ctx, grant.ID)
	require.NoError(t, err)
	require.Positive(t, r.TTL, "the lease is alive after the writes")
	select {
	case <-lapsed:
		t.Fatal("the lease's keep-alive stream ended")
	default:
	}
	t.Logf("%d rows; slowest transaction %s; lowest remaining TTL seen %ds of %ds", rows, time.Duration(worst.Load()), minTTL, ttl)
}
