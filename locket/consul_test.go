package locket_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/locket"
	"github.com/gavelhq/gavel/locket/consultest"
)

// consulTTL is short so that expiry tests run in seconds (the double does
// not enforce Consul's 10 s minimum).
const consulTTL = time.Second

func consulBackend(t *testing.T, d *consultest.Server, lockDelay time.Duration) *locket.ConsulBackend {
	t.Helper()
	client, err := api.NewClient(&api.Config{Address: d.Addr(), Scheme: "http"})
	require.NoError(t, err)
	return locket.NewConsulBackend(client, locket.ConsulOptions{
		LockDelay: lockDelay,
		WaitTime:  2 * time.Second,
		Logger:    lager.NewLogger("consul"),
	})
}

func consulLockOpts(b locket.Backend, owner string) locket.LockOptions {
	return locket.LockOptions{
		Backend:       b,
		Name:          "bbs",
		Owner:         owner,
		Value:         []byte("addr-of-" + owner),
		TTL:           consulTTL,
		RetryInterval: 500 * time.Millisecond,
		Logger:        lager.NewLogger(owner),
	}
}

func consulPresenceOpts(b locket.Backend, cell string) locket.PresenceOptions {
	return locket.PresenceOptions{
		Backend:       b,
		Name:          cell,
		Owner:         "owner-of-" + cell,
		Value:         []byte("presence-of-" + cell),
		TTL:           consulTTL,
		RetryInterval: 500 * time.Millisecond,
		Logger:        lager.NewLogger(cell),
	}
}

func waitReady(t *testing.T, p ifrit.Process, what string) {
	t.Helper()
	select {
	case <-p.Ready():
	case err := <-p.Wait():
		t.Fatalf("%s exited: %v", what, err)
	case <-time.After(eventually):
		t.Fatalf("%s never became ready", what)
	}
}

var lockKeyInConsul = locket.ConsulKey(locket.LockKey("", "bbs"))

func TestConsulKey(t *testing.T) {
	assert.Equal(t, "gavel/v1/locks/bbs", locket.ConsulKey(locket.LockKey("", "bbs")))
	assert.Equal(t, "gavel/v1/cells/", locket.ConsulKey(locket.PresencePrefix("")))
	assert.Equal(t, "t/cells/c", locket.ConsulKey(locket.PresenceKey("/t", "c")))
}

func TestConsulLockTwoContenders(t *testing.T) {
	d := consultest.New(t)
	b := consulBackend(t, d, 0)

	lockA := locket.NewLock(consulLockOpts(b, "a"))
	procA := startBackground(t, lockA)
	waitReady(t, procA, "a")
	lockB := locket.NewLock(consulLockOpts(consulBackend(t, d, 0), "b"))
	procB := startBackground(t, lockB)

	// b waits through several retry intervals and renewals of a's session.
	time.Sleep(2 * consulTTL)
	assert.False(t, isReady(procB), "b must not acquire a held lock")
	assert.True(t, lockA.Held())
	assert.False(t, lockB.Held())
	assert.Positive(t, d.RequestCount("PUT /v1/session/renew"), "a's session is renewed")

	rec, err := locket.FetchLockFrom(ctx(t), b, "", "bbs")
	require.NoError(t, err)
	assert.Equal(t, locket.Record{Owner: "a", Value: []byte("addr-of-a")}, rec)
	held, ok := d.Entry(lockKeyInConsul)
	require.True(t, ok, "the lock lives under its key without the leading slash")
	assert.NotEmpty(t, held.Session)

	// The holder stops: it releases, and b takes over.
	require.NoError(t, stop(t, procA))
	waitReady(t, procB, "b")
	rec, err = locket.FetchLockFrom(ctx(t), b, "", "bbs")
	require.NoError(t, err)
	assert.Equal(t, "b", rec.Owner)
	assert.Equal(t, 1, d.SessionCount(), "a's session is destroyed on release")

	require.NoError(t, stop(t, procB))
	_, err = locket.FetchLockFrom(ctx(t), b, "", "bbs")
	assert.ErrorIs(t, err, locket.ErrNotFound, "a released lock is gone at once")
	_, ok = d.Entry(lockKeyInConsul)
	assert.False(t, ok, "release deletes the key")
	assert.Equal(t, 0, d.SessionCount())
}

func TestConsulLockLost(t *testing.T) {
	cases := []struct {
		name string
		lose func(d *consultest.Server)
	}{
		// Renewals fail: the double invalidates the session after its TTL
		// and deletes the key (behavior "delete").
		{"session expires", func(d *consultest.Server) { d.RefuseRenewals(true) }},
		// The session is invalidated at once (an operator or Consul).
		{"session invalidated", func(d *consultest.Server) { d.Expire(lockKeyInConsul) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := consultest.New(t)
			b := consulBackend(t, d, 0)
			proc := startBackground(t, locket.NewLock(consulLockOpts(b, "a")))
			waitReady(t, proc, "a")

			start := time.Now()
			tc.lose(d)
			err := waitExit(t, proc)
			assert.ErrorIs(t, err, locket.ErrLockLost)
			assert.ErrorContains(t, err, "lease lost")
			assert.Less(t, time.Since(start), 3*consulTTL, "loss is noticed within about a TTL")
			_, err = locket.FetchLockFrom(ctx(t), b, "", "bbs")
			assert.ErrorIs(t, err, locket.ErrNotFound)
		})
	}
}

func TestConsulLockDelay(t *testing.T) {
	d := consultest.New(t)
	const delay = 1500 * time.Millisecond
	procA := startBackground(t, locket.NewLock(consulLockOpts(consulBackend(t, d, delay), "a")))
	waitReady(t, procA, "a")
	procB := startBackground(t, locket.NewLock(consulLockOpts(consulBackend(t, d, delay), "b")))

	// a's session is invalidated (not released): the key goes at once but
	// no other session may take it during a's lock-delay.
	invalidated := time.Now()
	d.Expire(lockKeyInConsul)
	assert.ErrorIs(t, waitExit(t, procA), locket.ErrLockLost)
	waitReady(t, procB, "b")
	assert.GreaterOrEqual(t, time.Since(invalidated), delay, "b must wait out a's lock-delay")
	require.NoError(t, stop(t, procB))
}

func TestConsulLockSameOwnerTakesBackItsLock(t *testing.T) {
	d := consultest.New(t)
	b := consulBackend(t, d, 0)
	// A record left by an earlier run of owner a, whose session still lives.
	value, err := json.Marshal(locket.Record{Owner: "a", Value: []byte("old")})
	require.NoError(t, err)
	stale, err := b.Acquire(ctx(t), locket.AcquireRequest{Key: locket.LockKey("", "bbs"), Value: value, TTL: time.Minute})
	require.NoError(t, err)
	before, _ := d.Entry(lockKeyInConsul)

	opts := consulLockOpts(b, "a")
	opts.RetryInterval = time.Minute // a wait would time the test out
	proc := startBackground(t, locket.NewLock(opts))
	waitReady(t, proc, "restarted a")
	after, ok := d.Entry(lockKeyInConsul)
	require.True(t, ok)
	assert.NotEqual(t, before.Session, after.Session, "the lock is held by the new session")
	rec, err := locket.FetchLockFrom(ctx(t), b, "", "bbs")
	require.NoError(t, err)
	assert.Equal(t, []byte("addr-of-a"), rec.Value)
	select {
	case <-stale.Lost():
	case <-time.After(eventually):
		t.Fatal("the replaced lease must see it lost its key")
	}
	assert.Equal(t, 1, d.SessionCount(), "the old session is destroyed")
	require.NoError(t, stale.Release(ctx(t)), "releasing a replaced lease is harmless")
	_, ok = d.Entry(lockKeyInConsul)
	assert.True(t, ok, "releasing the replaced lease leaves the new holder's key")
	require.NoError(t, stop(t, proc))
}

func TestConsulPresences(t *testing.T) {
	d := consultest.New(t)
	b := consulBackend(t, d, 0)
	p1 := locket.NewPresence(consulPresenceOpts(b, "cell-1"))
	p2 := locket.NewPresence(consulPresenceOpts(consulBackend(t, d, 0), "cell-2"))
	proc1, proc2 := startBackground(t, p1), startBackground(t, p2)
	waitReady(t, proc1, "cell-1")
	waitReady(t, proc2, "cell-2")

	// A key under the prefix that no session holds is not a presence.
	client, err := api.NewClient(&api.Config{Address: d.Addr(), Scheme: "http"})
	require.NoError(t, err)
	_, err = client.KV().Put(&api.KVPair{Key: locket.ConsulKey(locket.PresenceKey("", "stray")), Value: []byte("x")}, nil)
	require.NoError(t, err)

	got, err := locket.FetchPresencesFrom(ctx(t), b, "")
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{
		"cell-1": []byte("presence-of-cell-1"),
		"cell-2": []byte("presence-of-cell-2"),
	}, got)
	one, err := locket.FetchPresenceFrom(ctx(t), b, "", "cell-2")
	require.NoError(t, err)
	assert.Equal(t, []byte("presence-of-cell-2"), one)
	_, err = locket.FetchPresenceFrom(ctx(t), b, "", "stray")
	assert.ErrorIs(t, err, locket.ErrNotFound)

	require.NoError(t, stop(t, proc1))
	assert.False(t, p1.Registered())
	_, err = locket.FetchPresenceFrom(ctx(t), b, "", "cell-1")
	assert.ErrorIs(t, err, locket.ErrNotFound, "a stopped presence deregisters at once")
	require.NoError(t, stop(t, proc2))
	got, err = locket.FetchPresencesFrom(ctx(t), b, "")
	require.NoError(t, err)
	assert.Empty(t, got)
}

func TestConsulPresenceReRegistersAfterLoss(t *testing.T) {
	key := locket.ConsulKey(locket.PresenceKey("", "cell-1"))
	cases := []struct {
		name string
		lose func(d *consultest.Server)
	}{
		{"session invalidated", func(d *consultest.Server) { d.Expire(key) }},
		{"session expires", func(d *consultest.Server) {
			d.RefuseRenewals(true)
			go func() { time.Sleep(2 * consulTTL); d.RefuseRenewals(false) }()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := consultest.New(t)
			b := consulBackend(t, d, 0)
			p := locket.NewPresence(consulPresenceOpts(b, "cell-1"))
			proc := startBackground(t, p)
			waitReady(t, proc, "presence")
			before, ok := d.Entry(key)
			require.True(t, ok)

			tc.lose(d)
			require.Eventually(t, func() bool {
				now, ok := d.Entry(key)
				return ok && now.Session != "" && now.Session != before.Session &&
					string(now.Value) == "presence-of-cell-1"
			}, eventually, tick, "presence must register again with a new session")
			select {
			case err := <-proc.Wait():
				t.Fatalf("presence runner exited: %v", err)
			default:
			}
			require.Eventually(t, p.Registered, eventually, tick)
			require.NoError(t, stop(t, proc))
			assert.Equal(t, 0, d.SessionCount())
		})
	}
}

func TestConsulAcquireFailsWhenConsulIsDown(t *testing.T) {
	d := consultest.New(t)
	b := consulBackend(t, d, 0)
	d.Close()
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := b.Acquire(c, locket.AcquireRequest{Key: locket.LockKey("", "bbs"), Value: []byte("v"), TTL: consulTTL})
	require.Error(t, err)
	assert.NotErrorIs(t, err, locket.ErrHeld)
	assert.ErrorContains(t, err, "creating a 1s session for gavel/v1/locks/bbs")
}

func TestConsulAcquireOneHolderOnly(t *testing.T) {
	d := consultest.New(t)
	const contenders = 8
	type result struct {
		lease locket.Lease
		err   error
	}
	results := make(chan result, contenders)
	for i := 0; i < contenders; i++ {
		b := consulBackend(t, d, 0)
		go func() {
			l, err := b.Acquire(ctx(t), locket.AcquireRequest{Key: locket.LockKey("", "bbs"), Value: []byte("v"), TTL: consulTTL})
			results <- result{l, err}
		}()
	}
	var held []locket.Lease
	for i := 0; i < contenders; i++ {
		r := <-results
		if r.err != nil {
			assert.ErrorIs(t, r.err, locket.ErrHeld)
			continue
		}
		held = append(held, r.lease)
	}
	require.Len(t, held, 1, "exactly one contender holds the key")
	assert.Equal(t, 1, d.SessionCount(), "the losers destroy their sessions")
	require.NoError(t, held[0].Release(ctx(t)))
	assert.Equal(t, 0, d.SessionCount())
}
