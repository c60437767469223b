package locket_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/locket"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

const (
	ttl = 2 * time.Second
	// eventually bounds waits for things that must happen within a TTL or
	// on a watch event; generous so a loaded machine does not flake.
	eventually = 20 * time.Second
	tick       = 20 * time.Millisecond
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), eventually)
	t.Cleanup(cancel)
	return c
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, g.Write(&m))
	return m.GetGauge().GetValue()
}

func isReady(p ifrit.Process) bool {
	select {
	case <-p.Ready():
		return true
	default:
		return false
	}
}

func waitExit(t *testing.T, p ifrit.Process) error {
	t.Helper()
	select {
	case err := <-p.Wait():
		return err
	case <-time.After(eventually):
		t.Fatal("runner did not exit")
		return nil
	}
}

func stop(t *testing.T, p ifrit.Process) error {
	t.Helper()
	p.Signal(syscall.SIGTERM)
	return waitExit(t, p)
}

func lockOpts(t *testing.T, client *clientv3.Client, prefix, owner string) locket.LockOptions {
	return locket.LockOptions{
		Client:        client,
		KeyPrefix:     prefix,
		Name:          "bbs",
		Owner:         owner,
		Value:         []byte("addr-of-" + owner),
		TTL:           ttl,
		RetryInterval: 500 * time.Millisecond,
		Logger:        lager.NewLogger(owner),
	}
}

// startBackground runs r and stops it (if still running) at cleanup.
func startBackground(t *testing.T, r ifrit.Runner) ifrit.Process {
	p := ifrit.Background(r)
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		select {
		case <-p.Wait():
		case <-time.After(eventually):
		}
	})
	return p
}

func TestKeys(t *testing.T) {
	assert.Equal(t, "/gavel/v1/locks/bbs", locket.LockKey("", "bbs"))
	assert.Equal(t, "/gavel/v1/cells/cell-1", locket.PresenceKey("", "cell-1"))
	assert.Equal(t, "/gavel/v1/cells/", locket.PresencePrefix(""))
	assert.Equal(t, "/t/locks/auctioneer", locket.LockKey("/t", "auctioneer"))
	assert.Equal(t, "/t/cells/c", locket.PresenceKey("/t/", "c"))
}

func TestLockTwoContenders(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	gaugeA := prometheus.NewGauge(prometheus.GaugeOpts{Name: "a"})
	gaugeB := prometheus.NewGauge(prometheus.GaugeOpts{Name: "b"})

	var acquiredA, acquiredB atomic.Int32
	optsA := lockOpts(t, etcdtest.Shared(t), prefix, "a")
	optsA.HeldGauge = gaugeA
	optsA.OnAcquired = func() { acquiredA.Add(1) }
	optsB := lockOpts(t, etcdtest.Shared(t), prefix, "b")
	optsB.HeldGauge = gaugeB
	optsB.OnAcquired = func() { acquiredB.Add(1) }

	lockA := locket.NewLock(optsA)
	procA := startBackground(t, lockA)
	select {
	case <-procA.Ready():
	case <-time.After(eventually):
		t.Fatal("a never acquired a free lock")
	}
	lockB := locket.NewLock(optsB)
	procB := startBackground(t, lockB)

	// b keeps waiting through several retry intervals and a TTL.
	time.Sleep(ttl + time.Second)
	assert.False(t, isReady(procB), "b must not acquire a held lock")
	assert.True(t, lockA.Held())
	assert.False(t, lockB.Held())
	assert.Equal(t, 1.0, gaugeValue(t, gaugeA))
	assert.Equal(t, 0.0, gaugeValue(t, gaugeB))
	assert.EqualValues(t, 1, acquiredA.Load())
	assert.EqualValues(t, 0, acquiredB.Load())

	rec, err := locket.FetchLock(ctx(t), etcdtest.Shared(t), prefix, "bbs")
	require.NoError(t, err)
	assert.Equal(t, locket.Record{Owner: "a", Value: []byte("addr-of-a")}, rec)

	// The holder stops: it releases, and b takes over.
	require.NoError(t, stop(t, procA))
	assert.False(t, lockA.Held())
	assert.Equal(t, 0.0, gaugeValue(t, gaugeA))
	select {
	case <-procB.Ready():
	case err := <-procB.Wait():
		t.Fatalf("b exited: %v", err)
	case <-time.After(eventually):
		t.Fatal("b did not acquire the released lock")
	}
	assert.True(t, lockB.Held())
	assert.Equal(t, 1.0, gaugeValue(t, gaugeB))
	rec, err = locket.FetchLock(ctx(t), etcdtest.Shared(t), prefix, "bbs")
	require.NoError(t, err)
	assert.Equal(t, "b", rec.Owner)

	require.NoError(t, stop(t, procB))
	_, err = locket.FetchLock(ctx(t), etcdtest.Shared(t), prefix, "bbs")
	assert.ErrorIs(t, err, locket.ErrNotFound, "a released lock is gone at once")
}

func TestLockLost(t *testing.T) {
	cases := []struct {
		name string
		// steal makes the holder lose the lock from outside.
		steal func(t *testing.T, c *clientv3.Client, key string, kv *clientv3.GetResponse)
	}{
		{"lease revoked", func(t *testing.T, c *clientv3.Client, _ string, kv *clientv3.GetResponse) {
			_, err := c.Revoke(ctx(t), clientv3.LeaseID(kv.Kvs[0].Lease))
			require.NoError(t, err)
		}},
		{"key deleted", func(t *testing.T, c *clientv3.Client, key string, _ *clientv3.GetResponse) {
			_, err := c.Delete(ctx(t), key)
			require.NoError(t, err)
		}},
		{"key overwritten", func(t *testing.T, c *clientv3.Client, key string, _ *clientv3.GetResponse) {
			_, err := c.Put(ctx(t), key, `{"owner":"intruder"}`)
			require.NoError(t, err)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := etcdtest.Prefix(t)
			admin := etcdtest.Shared(t)
			var lost atomic.Int32
			gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "held"})
			opts := lockOpts(t, etcdtest.Shared(t), prefix, "a")
			opts.OnLost = func() { lost.Add(1) }
			opts.HeldGauge = gauge
			lock := locket.NewLock(opts)
			proc := startBackground(t, lock)
			select {
			case <-proc.Ready():
			case <-time.After(eventually):
				t.Fatal("not acquired")
			}

			key := locket.LockKey(prefix, "bbs")
			kv, err := admin.Get(ctx(t), key)
			require.NoError(t, err)
			require.Len(t, kv.Kvs, 1)
			require.NotZero(t, kv.Kvs[0].Lease, "a lock is bound to a lease")

			tc.steal(t, admin, key, kv)

			err = waitExit(t, proc)
			require.ErrorIs(t, err, locket.ErrLockLost)
			assert.Contains(t, err.Error(), `"bbs"`)
			assert.EqualValues(t, 1, lost.Load())
			assert.False(t, lock.Held())
			assert.Equal(t, 0.0, gaugeValue(t, gauge))
		})
	}
}

func TestLockSameOwnerTakesBackItsLock(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	admin := etcdtest.Shared(t)
	// A previous run of owner "a" left its lock behind on a long lease.
	lease, err := admin.Grant(ctx(t), 600)
	require.NoError(t, err)
	_, err = admin.Put(ctx(t), locket.LockKey(prefix, "bbs"), `{"owner":"a"}`, clientv3.WithLease(lease.ID))
	require.NoError(t, err)

	proc := startBackground(t, locket.NewLock(lockOpts(t, etcdtest.Shared(t), prefix, "a")))
	select {
	case <-proc.Ready():
	case <-time.After(eventually):
		t.Fatal("the same owner did not take its lock back")
	}
	rec, err := locket.FetchLock(ctx(t), admin, prefix, "bbs")
	require.NoError(t, err)
	assert.Equal(t, []byte("addr-of-a"), rec.Value)

	// Another owner in the same situation waits.
	old, err := admin.Get(ctx(t), locket.LockKey(prefix, "bbs"))
	require.NoError(t, err)
	assert.NotEqual(t, lease.ID, clientv3.LeaseID(old.Kvs[0].Lease), "the lock is on a new lease")
	ttlResp, err := admin.TimeToLive(ctx(t), lease.ID)
	require.NoError(t, err)
	assert.EqualValues(t, -1, ttlResp.TTL, "the stale lease was revoked")

	prefix2 := etcdtest.Prefix(t)
	lease2, err := admin.Grant(ctx(t), 600)
	require.NoError(t, err)
	_, err = admin.Put(ctx(t), locket.LockKey(prefix2, "bbs"), `{"owner":"x"}`, clientv3.WithLease(lease2.ID))
	require.NoError(t, err)
	proc2 := startBackground(t, locket.NewLock(lockOpts(t, etcdtest.Shared(t), prefix2, "a")))
	time.Sleep(time.Second)
	assert.False(t, isReady(proc2))
	require.NoError(t, stop(t, proc2), "signalled while waiting: returns nil")
}

func TestFetchLockNotFound(t *testing.T) {
	_, err := locket.FetchLock(ctx(t), etcdtest.Shared(t), etcdtest.Prefix(t), "nobody")
	assert.ErrorIs(t, err, locket.ErrNotFound)
}

func TestLockRunRefusesBadOptions(t *testing.T) {
	err := locket.NewLock(locket.LockOptions{Client: etcdtest.Shared(t), Name: "bbs"}).Run(nil, make(chan struct{}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "owner")
}

func presenceOpts(client *clientv3.Client, prefix, cell, owner string) locket.PresenceOptions {
	return locket.PresenceOptions{
		Client:        client,
		KeyPrefix:     prefix,
		Name:          cell,
		Owner:         owner,
		Value:         []byte("presence-of-" + cell),
		TTL:           ttl,
		RetryInterval: 500 * time.Millisecond,
		Logger:        lager.NewLogger(owner),
	}
}

func TestPresenceRegistersAndDeregisters(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	admin := etcdtest.Shared(t)
	p1 := locket.NewPresence(presenceOpts(etcdtest.Shared(t), prefix, "cell-1", "o1"))
	p2 := locket.NewPresence(presenceOpts(etcdtest.Shared(t), prefix, "cell-2", "o2"))
	proc1, proc2 := startBackground(t, p1), startBackground(t, p2)
	for _, p := range []ifrit.Process{proc1, proc2} {
		select {
		case <-p.Ready():
		case <-time.After(eventually):
			t.Fatal("presence not registered")
		}
	}
	assert.True(t, p1.Registered())

	got, err := locket.FetchPresences(ctx(t), admin, prefix)
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{
		"cell-1": []byte("presence-of-cell-1"),
		"cell-2": []byte("presence-of-cell-2"),
	}, got)
	one, err := locket.FetchPresence(ctx(t), admin, prefix, "cell-1")
	require.NoError(t, err)
	assert.Equal(t, []byte("presence-of-cell-1"), one)

	require.NoError(t, stop(t, proc1))
	assert.False(t, p1.Registered())
	_, err = locket.FetchPresence(ctx(t), admin, prefix, "cell-1")
	assert.ErrorIs(t, err, locket.ErrNotFound, "a stopped presence deregisters at once")
}

func TestPresenceExpiresWhenTheProcessDies(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	admin := etcdtest.Shared(t)
	srv := etcdtest.SharedServer(t)
	client, err := srv.NewClient() // closed below to simulate a crash
	require.NoError(t, err)

	p := locket.NewPresence(presenceOpts(client, prefix, "cell-1", "o1"))
	proc := startBackground(t, p)
	select {
	case <-proc.Ready():
	case <-time.After(eventually):
		t.Fatal("presence not registered")
	}

	// The process stops renewing: the record must go away by itself.
	require.NoError(t, client.Close())
	require.Eventually(t, func() bool {
		got, err := locket.FetchPresences(ctx(t), admin, prefix)
		return err == nil && len(got) == 0
	}, eventually, tick, "presence must expire after its TTL")

	// A presence runner never gives up on its own.
	select {
	case err := <-proc.Wait():
		t.Fatalf("presence runner exited: %v", err)
	default:
	}
	assert.Eventually(t, func() bool { return !p.Registered() }, eventually, tick)
	require.NoError(t, stop(t, proc))
}

func TestPresenceReRegistersAfterLoss(t *testing.T) {
	cases := []struct {
		name  string
		steal func(t *testing.T, c *clientv3.Client, key string, lease clientv3.LeaseID)
	}{
		{"key deleted", func(t *testing.T, c *clientv3.Client, key string, _ clientv3.LeaseID) {
			_, err := c.Delete(ctx(t), key)
			require.NoError(t, err)
		}},
		{"lease revoked", func(t *testing.T, c *clientv3.Client, _ string, lease clientv3.LeaseID) {
			_, err := c.Revoke(ctx(t), lease)
			require.NoError(t, err)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := etcdtest.Prefix(t)
			admin := etcdtest.Shared(t)
			proc := startBackground(t, locket.NewPresence(presenceOpts(etcdtest.Shared(t), prefix, "cell-1", "o1")))
			select {
			case <-proc.Ready():
			case <-time.After(eventually):
				t.Fatal("presence not registered")
			}
			key := locket.PresenceKey(prefix, "cell-1")
			before, err := admin.Get(ctx(t), key)
			require.NoError(t, err)
			require.Len(t, before.Kvs, 1)
			oldLease := clientv3.LeaseID(before.Kvs[0].Lease)

			tc.steal(t, admin, key, oldLease)

			require.Eventually(t, func() bool {
				now, err := admin.Get(ctx(t), key)
				return err == nil && len(now.Kvs) == 1 &&
					clientv3.LeaseID(now.Kvs[0].Lease) != oldLease &&
					string(now.Kvs[0].Value) == "presence-of-cell-1"
			}, eventually, tick, "presence must register again on a new lease")
			require.NoError(t, stop(t, proc))
		})
	}
}

func TestPresenceWaitsForAnotherOwner(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	admin := etcdtest.Shared(t)
	// Another rep holds cell-1 on a lease nobody renews.
	lease, err := admin.Grant(ctx(t), 2)
	require.NoError(t, err)
	_, err = admin.Put(ctx(t), locket.PresenceKey(prefix, "cell-1"), "other", clientv3.WithLease(lease.ID))
	require.NoError(t, err)

	p := locket.NewPresence(presenceOpts(etcdtest.Shared(t), prefix, "cell-1", "o1"))
	proc := startBackground(t, p)
	got, err := locket.FetchPresence(ctx(t), admin, prefix, "cell-1")
	require.NoError(t, err)
	assert.Equal(t, "other", string(got))
	assert.False(t, p.Registered())

	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		t.Fatalf("presence exited: %v", err)
	case <-time.After(eventually):
		t.Fatal("presence did not register once the other owner's lease expired")
	}
	got, err = locket.FetchPresence(ctx(t), admin, prefix, "cell-1")
	require.NoError(t, err)
	assert.Equal(t, "presence-of-cell-1", string(got))
	require.NoError(t, stop(t, proc))
}

// flakyBackend fails every Acquire until allowed, recording attempts; it
// shows the runners work with any Backend and honour the injected clock.
type flakyBackend struct {
	mu       sync.Mutex
	attempts int
	allow    bool
	lease    *fakeLease
}

func (b *flakyBackend) Acquire(ctx context.Context, req locket.AcquireRequest) (locket.Lease, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts++
	if !b.allow {
		return nil, errors.New("backend unavailable")
	}
	b.lease = &fakeLease{lost: make(chan struct{})}
	return b.lease, nil
}

func (b *flakyBackend) WaitReleased(ctx context.Context, key string) error {
	<-ctx.Done()
	return ctx.Err()
}

func (b *flakyBackend) Attempts() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts
}

type fakeLease struct {
	lost     chan struct{}
	released atomic.Bool
}

func (l *fakeLease) Lost() <-chan struct{} { return l.lost }
func (l *fakeLease) Err() error            { return locket.ErrLeaseLost }
func (l *fakeLease) Release(context.Context) error {
	l.released.Store(true)
	return nil
}

func TestRetryIntervalUsesTheClock(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(0, 0))
	backend := &flakyBackend{}
	lock := locket.NewLock(locket.LockOptions{
		Backend: backend, Name: "bbs", Owner: "a",
		RetryInterval: 7 * time.Second, Clock: clk,
	})
	proc := startBackground(t, lock)

	require.Eventually(t, func() bool { return backend.Attempts() == 1 }, eventually, tick)
	clk.WaitForWatcherAndIncrement(6 * time.Second)
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, 1, backend.Attempts(), "no retry before the interval")
	clk.Increment(time.Second)
	require.Eventually(t, func() bool { return backend.Attempts() == 2 }, eventually, tick)

	backend.mu.Lock()
	backend.allow = true
	backend.mu.Unlock()
	clk.WaitForWatcherAndIncrement(7 * time.Second)
	select {
	case <-proc.Ready():
	case <-time.After(eventually):
		t.Fatal("not acquired once the backend recovered")
	}

	// Losing the lease ends the lock runner with ErrLockLost.
	close(backend.lease.lost)
	require.ErrorIs(t, waitExit(t, proc), locket.ErrLockLost)
	assert.True(t, backend.lease.released.Load())
}
