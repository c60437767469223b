package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/models"
)

// newReader returns a second store on f's prefix (another replica), whose
// watch runs hook before applying each response.
func newReader(t *testing.T, f *fixture, prefix string, hook func(ctx context.Context)) *Store {
	t.Helper()
	r := New(Options{Client: f.client, KeyPrefix: prefix, Logger: lager.NewLogger("reader")})
	r.cache.beforeApply = hook
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, r.WaitSynced(wctx))
	return r
}

func TestSyncMakesALaggingReplicaReadAcknowledgedWrites(t *testing.T) {
	f := newFixture(t)
	w, ctx, prefix := f.store, f.ctx, f.store.Keys().Prefix()
	var gated atomic.Bool
	gate := make(chan struct{})
	r := newReader(t, f, prefix, func(context.Context) {
		if gated.Load() {
			<-gate
		}
	})

	_, err := w.DesireLRP(ctx, desired("lagging", 2))
	require.NoError(t, err)
	require.NoError(t, r.Sync(ctx))
	_, err = r.GetDesiredLRP("lagging")
	require.NoError(t, err, "a synced replica reads a desire acknowledged before")

	// The reader's watch stops applying; the writer removes the LRP and is
	// acknowledged. Without Sync the reader still answers with the LRP.
	gated.Store(true)
	_, _, err = w.RemoveDesiredLRP(ctx, "lagging")
	require.NoError(t, err)
	_, err = r.GetDesiredLRP("lagging")
	require.NoError(t, err, "the reader's cache lags (the premise of this test)")

	synced := make(chan error, 1)
	go func() { synced <- r.Sync(ctx) }()
	select {
	case err := <-synced:
		t.Fatalf("Sync returned (%v) while the cache still lacked an acknowledged removal", err)
	case <-time.After(300 * time.Millisecond):
	}
	gated.Store(false)
	close(gate)
	select {
	case err := <-synced:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Sync did not return after the watch caught up")
	}
	_, err = r.GetDesiredLRP("lagging")
	require.ErrorIs(t, err, models.ErrNotFound, "after Sync the reader sees the acknowledged removal")
}

func TestSyncRestartsAStalledWatch(t *testing.T) {
	f := newFixture(t)
	prefix := f.store.Keys().Prefix()
	// The reader's first watch stalls for good (as a stream on a paused etcd
	// member would); only a restarted watch applies anything.
	var stalls atomic.Int32
	var first sync.Once
	var stalledCtx context.Context
	r := newReader(t, f, prefix, func(ctx context.Context) {
		first.Do(func() { stalledCtx = ctx })
		if ctx == stalledCtx {
			stalls.Add(1)
			<-ctx.Done()
		}
	})
	_, err := f.store.DesireLRP(f.ctx, desired("stalled", 1))
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(f.ctx, 15*time.Second)
	defer cancel()
	require.NoError(t, r.Sync(ctx), "Sync restarts the stalled watch and the relist catches up")
	require.GreaterOrEqual(t, stalls.Load(), int32(1), "the first watch did stall")
	_, err = r.GetDesiredLRP("stalled")
	require.NoError(t, err)
}

// A cache that is behind etcd but applying events is waited for, however
// long it takes, and never relisted: under load a relist costs far more than
// catching up, and readers restarting it kept a busy BBS behind for good.
func TestSyncWaitsForALaggingWatchThatMakesProgress(t *testing.T) {
	f := newFixture(t)
	w, prefix := f.store, f.store.Keys().Prefix()
	var gated atomic.Bool
	release := make(chan struct{})
	var applied atomic.Int32
	r := newReader(t, f, prefix, func(ctx context.Context) {
		if !gated.Load() {
			return
		}
		select {
		case <-release:
			applied.Add(1)
		case <-ctx.Done():
		}
	})
	r.cache.stallTimeout = 300 * time.Millisecond
	require.EqualValues(t, 1, r.cache.Relists())
	// A watch that has not caught up with etcd yet gets the writes made
	// meanwhile in one response; let it deliver one first, so each gated
	// write below comes as a response of its own.
	_, err := w.DesireLRP(f.ctx, desired("warm", 1))
	require.NoError(t, err)
	require.NoError(t, r.Sync(f.ctx))

	gated.Store(true)
	const writes = 6
	for i := range writes {
		_, err := w.DesireLRP(f.ctx, desired(fmt.Sprintf("slow-%d", i), 1))
		require.NoError(t, err)
	}
	// One response every 200 ms: the cache moves within every stall
	// timeout but needs several of them to catch up.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				select {
				case release <- struct{}{}:
				case <-stop:
					return
				}
			}
		}
	}()
	ctx, cancel := context.WithTimeout(f.ctx, 15*time.Second)
	defer cancel()
	require.NoError(t, r.Sync(ctx))
	require.EqualValues(t, 1, r.cache.Relists(), "a watch that makes progress is not restarted")
	require.GreaterOrEqual(t, applied.Load(), int32(3), "catching up took several responses, longer than one stall timeout (the premise)")
	gated.Store(false)
	_, err = r.GetDesiredLRP(fmt.Sprintf("slow-%d", writes-1))
	require.NoError(t, err)
}

func TestSyncFailsUnavailableWhenEtcdCannotBeRead(t *testing.T) {
	f := newFixture(t)
	f.store.cache.revisions.get = func(context.Context) (int64, error) { return 0, errors.New("no leader") }
	err := f.store.Sync(f.ctx)
	require.ErrorIs(t, err, models.ErrUnavailable)
	require.Contains(t, err.Error(), "consistent read")
}

func TestRevisionReadsAreSharedButNeverStartBeforeTheCaller(t *testing.T) {
	var started atomic.Int64
	var calls atomic.Int64
	r := &revisionReader{get: func(ctx context.Context) (int64, error) {
		calls.Add(1)
		n := started.Add(1) // the read's "revision" is its start order
		time.Sleep(50 * time.Millisecond)
		return n, nil
	}}
	const callers = 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			before := started.Load()
			rev, err := r.read(context.Background())
			if err != nil {
				errs <- err
				return
			}
			if rev <= before {
				errs <- errors.New("a caller was given a read that started before it arrived")
			}
		}()
		if i%50 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// 200 callers over ~80 ms of arrivals, each read taking 50 ms: a handful
	// of shared reads, not one per caller.
	require.LessOrEqual(t, calls.Load(), int64(8), "reads are shared")
}
