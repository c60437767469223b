package locket

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/hashicorp/consul/api"
)

// Consul defaults.
const (
	// DefaultConsulLockDelay is the lock-delay of a record's session: after
	// the session is invalidated (expired or destroyed) Consul refuses to
	// let another session acquire its keys for this long. 0 disables it.
	DefaultConsulLockDelay = 0
	// DefaultConsulWaitTime bounds one blocking query on a key.
	DefaultConsulWaitTime = 30 * time.Second
	// consulRetry is the pause after a failed blocking query.
	consulRetry = 500 * time.Millisecond
)

// ConsulOptions configure a [ConsulBackend].
type ConsulOptions struct {
	// LockDelay is each session's lock-delay; default DefaultConsulLockDelay
	// (none).
	LockDelay time.Duration
	// WaitTime bounds one blocking query; default DefaultConsulWaitTime.
	WaitTime time.Duration
	// Logger; default a logger with no sinks.
	Logger lager.Logger
}

// ConsulBackend is the Consul implementation of [Backend] and [Reader]:
// one Consul session per record.
//
// A record is a session created with the TTL (rounded up to whole seconds),
// behavior "delete" (the key goes when the session is invalidated) and the
// configured lock-delay, and a KV acquire of the key with that session and
// the value. The session is renewed every TTL/3. The lease is lost when a
// renewal answers that the session is gone, when no renewal succeeded for a
// whole TTL, or when a blocking query on the key sees it deleted or held by
// another session. Release releases the key, deletes it if it is still
// unheld, and destroys the session.
//
// Consul refuses session TTLs under 10 s (and above 24 h): Acquire then
// fails with Consul's error; Gavel's default TTL is 15 s.
//
// Keys: Consul KV keys have no leading '/', so the logical keys of keys.go
// are stored without it ("/gavel/v1/cells/c1" is "gavel/v1/cells/c1").
type ConsulBackend struct {
	client    *api.Client
	lockDelay time.Duration
	waitTime  time.Duration
	logger    lager.Logger
}

var (
	_ Backend = (*ConsulBackend)(nil)
	_ Reader  = (*ConsulBackend)(nil)
)

// NewConsulBackend returns a backend over client.
func NewConsulBackend(client *api.Client, opts ConsulOptions) *ConsulBackend {
	if opts.WaitTime <= 0 {
		opts.WaitTime = DefaultConsulWaitTime
	}
	if opts.LockDelay < 0 {
		opts.LockDelay = 0
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("locket")
	}
	return &ConsulBackend{client: client, lockDelay: opts.LockDelay, waitTime: opts.WaitTime, logger: opts.Logger}
}

// ConsulKey maps a logical key of keys.go to its Consul KV key (no leading
// '/').
func ConsulKey(key string) string { return strings.TrimLeft(key, "/") }

func writeOpts(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

// Acquire implements [Backend]. While a lock-delay keeps an absent key from
// being acquired it waits once (the configured lock-delay, or half a second
// when that is 0) and tries again before answering ErrHeld.
func (b *ConsulBackend) Acquire(ctx context.Context, req AcquireRequest) (Lease, error) {
	key := ConsulKey(req.Key)
	ttl := time.Duration(ttlSeconds(req.TTL)) * time.Second
	// The session is created through Raw so that a lock-delay of 0 is sent
	// (the typed client omits it, and Consul then applies its 15 s default),
	// with no health checks: only the TTL keeps it alive.
	var created struct{ ID string }
	_, err := b.client.Raw().Write("/v1/session/create", map[string]any{
		"Name":       "locket " + key,
		"TTL":        ttl.String(),
		"Behavior":   api.SessionBehaviorDelete,
		"LockDelay":  fmt.Sprintf("%dms", b.lockDelay.Milliseconds()),
		"NodeChecks": []string{},
	}, &created, writeOpts(ctx))
	if err != nil {
		return nil, fmt.Errorf("locket: creating a %s session for %s: %w", ttl, key, err)
	}
	id := created.ID
	if id == "" {
		return nil, fmt.Errorf("locket: creating a %s session for %s: no session id in the answer", ttl, key)
	}
	destroy := func() {
		// Best effort: an unused session expires by itself anyway.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = b.client.Session().Destroy(id, writeOpts(dctx))
	}

	ok, err := b.acquireKey(ctx, key, id, req)
	if err != nil {
		destroy()
		return nil, err
	}
	if !ok {
		destroy()
		return nil, fmt.Errorf("%w: %s", ErrHeld, key)
	}

	lctx, cancel := context.WithCancel(context.Background())
	l := &consulLease{
		leaseState: newLeaseState(key),
		backend:    b,
		id:         id,
		ttl:        ttl,
		cancel:     cancel,
		logger:     b.logger.Session("lease", lager.Data{"key": key, "session": id}),
	}
	l.wg.Add(2)
	go l.renew(lctx)
	go l.watch(lctx)
	return l, nil
}

// acquireKey tries to acquire key for session id; it replaces a record
// CanReplace accepts and waits out one lock-delay.
func (b *ConsulBackend) acquireKey(ctx context.Context, key, id string, req AcquireRequest) (bool, error) {
	kv := b.client.KV()
	pair := &api.KVPair{Key: key, Value: req.Value, Session: id}
	delayed := false
	for {
		ok, _, err := kv.Acquire(pair, writeOpts(ctx))
		if err != nil {
			return false, fmt.Errorf("locket: acquiring %s: %w", key, err)
		}
		if ok {
			return true, nil
		}
		cur, _, err := kv.Get(key, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return false, fmt.Errorf("locket: reading %s: %w", key, err)
		}
		switch {
		case cur != nil && cur.Session != "" && cur.Session != id:
			if req.CanReplace == nil || !req.CanReplace(cur.Value) {
				return false, nil
			}
			// Our own record from an earlier run: release it from its old
			// session (no lock-delay, unlike destroying it), take it, and
			// let the old session go.
			if _, _, err := kv.Release(&api.KVPair{Key: key, Session: cur.Session}, writeOpts(ctx)); err != nil {
				return false, fmt.Errorf("locket: releasing %s from its old session: %w", key, err)
			}
			ok, _, err := kv.Acquire(pair, writeOpts(ctx))
			if err != nil {
				return false, fmt.Errorf("locket: replacing %s: %w", key, err)
			}
			if ok {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				_, _ = b.client.Session().Destroy(cur.Session, writeOpts(dctx))
				cancel()
			}
			return ok, nil
		case delayed:
			return false, nil
		default:
			// Absent or unheld but refused: a lock-delay is running (ours,
			// or a longer one set by the last holder's session). Wait once
			// rather than have the caller retry at once.
			delayed = true
			wait := b.lockDelay
			if wait <= 0 {
				wait = consulRetry
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return false, ctx.Err()
			case <-t.C:
			}
		}
	}
}

// WaitReleased implements [Backend] with blocking queries on the key. A key
// present but held by no session counts as released.
func (b *ConsulBackend) WaitReleased(ctx context.Context, key string) error {
	key = ConsulKey(key)
	var index uint64
	for {
		pair, meta, err := b.client.KV().Get(key, (&api.QueryOptions{WaitIndex: index, WaitTime: b.waitTime}).WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("locket: watching %s: %w", key, err)
		}
		if pair == nil || pair.Session == "" {
			return nil
		}
		index = nextIndex(index, meta.LastIndex)
	}
}

// nextIndex returns the index for the next blocking query: Consul's advice
// is to start again from 0 when the index goes backwards.
func nextIndex(prev, last uint64) uint64 {
	if last < prev {
		return 0
	}
	return last
}

// Get implements [Reader]: only a key held by a session is a record.
func (b *ConsulBackend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	pair, _, err := b.client.KV().Get(ConsulKey(key), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, false, err
	}
	if pair == nil || pair.Session == "" {
		return nil, false, nil
	}
	return pair.Value, true, nil
}

// List implements [Reader]: it returns the held keys under prefix, keyed by
// the rest of the key after prefix.
func (b *ConsulBackend) List(ctx context.Context, prefix string) (map[string][]byte, error) {
	p := ConsulKey(prefix)
	pairs, _, err := b.client.KV().List(p, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(pairs))
	for _, pair := range pairs {
		if pair.Session == "" {
			continue
		}
		out[strings.TrimPrefix(pair.Key, p)] = pair.Value
	}
	return out, nil
}

// consulLease is a held record bound to a Consul session.
type consulLease struct {
	leaseState
	backend *ConsulBackend
	id      string
	ttl     time.Duration
	logger  lager.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

var _ Lease = (*consulLease)(nil)

// markLost records why the lease was lost, closes Lost and stops the
// renewal and the watch, unless the lease was released on purpose.
func (l *consulLease) markLost(reason string) {
	if l.leaseState.markLost(reason) {
		l.cancel()
	}
}

// renew renews the session every TTL/3 until ctx is done or the session is
// gone or not renewed for a whole TTL.
func (l *consulLease) renew(ctx context.Context) {
	defer l.wg.Done()
	interval := l.ttl / 3
	lastOK := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, interval)
		entry, _, err := l.backend.client.Session().Renew(l.id, writeOpts(rctx))
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.logger.Error("renew-failed", err)
			if time.Since(lastOK) >= l.ttl {
				l.markLost(fmt.Sprintf("session not renewed within its TTL (%s): %v", l.ttl, err))
				return
			}
		case entry == nil:
			l.markLost("session invalidated")
			return
		default:
			lastOK = time.Now()
		}
	}
}

// watch follows the key with blocking queries until ctx is done or the key
// is deleted or held by another session.
func (l *consulLease) watch(ctx context.Context) {
	defer l.wg.Done()
	var index uint64
	for {
		pair, meta, err := l.backend.client.KV().Get(l.key, (&api.QueryOptions{WaitIndex: index, WaitTime: l.backend.waitTime}).WithContext(ctx))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// The renewal still guards the TTL; query again shortly.
			l.logger.Error("watch-failed", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(consulRetry):
			}
			index = 0
			continue
		}
		switch {
		case pair == nil:
			l.markLost("key deleted")
			return
		case pair.Session != l.id:
			l.markLost("key no longer held by this session")
			return
		}
		index = nextIndex(index, meta.LastIndex)
	}
}

// Release implements [Lease]: it stops the renewal and the watch, releases
// the key, deletes it if nobody acquired it meanwhile, and destroys the
// session. Releasing first spares the next holder the lock-delay.
func (l *consulLease) Release(ctx context.Context) error {
	if !l.markReleased() {
		return nil
	}
	l.cancel()
	l.wg.Wait()
	kv := l.backend.client.KV()
	var errs []error
	if _, _, err := kv.Release(&api.KVPair{Key: l.key, Session: l.id}, writeOpts(ctx)); err != nil {
		errs = append(errs, fmt.Errorf("releasing the key: %w", err))
	} else if cur, _, err := kv.Get(l.key, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		errs = append(errs, fmt.Errorf("reading the key: %w", err))
	} else if cur != nil && cur.Session == "" {
		if _, _, err := kv.DeleteCAS(cur, writeOpts(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("deleting the key: %w", err))
		}
	}
	// Destroying the session deletes the key too (behavior "delete") when
	// the release above failed.
	if _, err := l.backend.client.Session().Destroy(l.id, writeOpts(ctx)); err != nil {
		errs = append(errs, fmt.Errorf("destroying session %s: %w", l.id, err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("locket: releasing %s: %w", l.key, err)
	}
	return nil
}
