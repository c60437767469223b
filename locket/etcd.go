package locket

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdBackend is the etcd implementation of [Backend]: one etcd lease per
// record.
type EtcdBackend struct {
	client *clientv3.Client
	logger lager.Logger
	// wrapLeases, when set, wraps the lease API each lease renews through
	// (a test seam: streams that fail or go unanswered).
	wrapLeases func(pb.LeaseClient) pb.LeaseClient
}

var (
	_ Backend = (*EtcdBackend)(nil)
	_ Reader  = (*EtcdBackend)(nil)
)

// NewEtcdBackend returns a backend over client. logger may be nil.
func NewEtcdBackend(client *clientv3.Client, logger lager.Logger) *EtcdBackend {
	if logger == nil {
		logger = lager.NewLogger("locket")
	}
	return &EtcdBackend{client: client, logger: logger}
}

// ttlSeconds rounds ttl up to whole seconds, at least one.
func ttlSeconds(ttl time.Duration) int64 {
	s := int64((ttl + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// Acquire implements [Backend].
func (b *EtcdBackend) Acquire(ctx context.Context, req AcquireRequest) (Lease, error) {
	conn := b.client.ActiveConnection()
	if conn == nil {
		return nil, fmt.Errorf("locket: %s: the etcd client has no connection to keep a lease alive on (an in-process client); dial etcd", req.Key)
	}
	granting := time.Now()
	grant, err := b.client.Grant(ctx, ttlSeconds(req.TTL))
	if err != nil {
		return nil, fmt.Errorf("locket: granting a %s lease for %s: %w", req.TTL, req.Key, err)
	}
	id := grant.ID
	revoke := func() {
		// Best effort: an unused lease would expire by itself anyway.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = b.client.Revoke(rctx, id)
	}

	resp, err := b.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(req.Key), "=", 0)).
		Then(clientv3.OpPut(req.Key, string(req.Value), clientv3.WithLease(id))).
		Else(clientv3.OpGet(req.Key)).
		Commit()
	if err != nil {
		revoke()
		return nil, fmt.Errorf("locket: creating %s: %w", req.Key, err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 || req.CanReplace == nil || !req.CanReplace(kvs[0].Value) {
			revoke()
			return nil, fmt.Errorf("%w: %s", ErrHeld, req.Key)
		}
		// Our own record from an earlier run: replace it if unchanged.
		cur := kvs[0]
		resp, err = b.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(req.Key), "=", cur.ModRevision)).
			Then(clientv3.OpPut(req.Key, string(req.Value), clientv3.WithLease(id))).
			Commit()
		if err != nil {
			revoke()
			return nil, fmt.Errorf("locket: replacing %s: %w", req.Key, err)
		}
		if !resp.Succeeded {
			revoke()
			return nil, fmt.Errorf("%w: %s (changed while replacing)", ErrHeld, req.Key)
		}
		if cur.Lease != 0 {
			// The old lease holds only this key; let it go now rather than
			// at its expiry.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = b.client.Revoke(rctx, clientv3.LeaseID(cur.Lease))
			cancel()
		}
	}

	ttl := time.Duration(grant.TTL) * time.Second
	leases := pb.NewLeaseClient(conn)
	if b.wrapLeases != nil {
		leases = b.wrapLeases(leases)
	}
	l := &etcdLease{
		leaseState: newLeaseState(req.Key),
		client:     b.client,
		leases:     leases,
		id:         id,
		ttl:        ttl,
		done:       make(chan struct{}),
		logger:     b.logger.Session("lease", lager.Data{"key": req.Key, "lease": fmt.Sprintf("%x", int64(id))}),
	}
	kaCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	// The lease was granted after granting, so it lasts at least until
	// granting+TTL without a renewal.
	go l.monitor(kaCtx, granting.Add(ttl), resp.Header.Revision)
	return l, nil
}

// WaitReleased implements [Backend].
func (b *EtcdBackend) WaitReleased(ctx context.Context, key string) error {
	resp, err := b.client.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("locket: reading %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range b.client.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("locket: watching %s: %w", key, err)
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("locket: watch on %s ended", key)
}

// Get implements [Reader].
func (b *EtcdBackend) Get(ctx context.Context, key string) ([]byte, bool, error) {
	resp, err := b.client.Get(ctx, key)
	if err != nil {
		return nil, false, err
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	return resp.Kvs[0].Value, true, nil
}

// List implements [Reader].
func (b *EtcdBackend) List(ctx context.Context, prefix string) (map[string][]byte, error) {
	resp, err := b.client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefix)] = kv.Value
	}
	return out, nil
}

// etcdLease is a held record bound to an etcd lease.
type etcdLease struct {
	leaseState
	client *clientv3.Client
	// leases is etcd's lease API on the client's connection: each lease
	// keeps its own keep-alive stream on it (see keepAlive).
	leases pb.LeaseClient
	id     clientv3.LeaseID
	ttl    time.Duration // as granted
	logger lager.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed when monitor returns
}

var _ Lease = (*etcdLease)(nil)

// monitor keeps the lease alive and watches the key from rev+1; it marks the
// lease lost on the first sign of loss and returns. expires is when the lease
// ends unless a renewal is answered before then.
//
// A renewal goes a third of the TTL after the last answer (up to a tenth of
// the TTL sooner, at random), on the lease's own keep-alive stream: etcd
// answers a stream's renewals one at a time, each first waiting (up to 1 s)
// for its apply backlog, and ends the whole stream when that wait times out,
// so leases sharing a stream (a process's many cells, or a lock beside them)
// would be renewed late, and lost, together under a write load. A renewal unanswered for keepAliveAnswerWait, or a
// stream that fails, is retried on a new stream. The lease is lost when etcd
// answers that it expired, when no renewal was answered by expires (each
// answer extends it to its renewal's send time plus the TTL: etcd renewed the
// lease after that), or when the key is deleted or overwritten.
func (l *etcdLease) monitor(ctx context.Context, expires time.Time, rev int64) {
	defer close(l.done)
	defer l.cancel()

	ka := newKeepAlive(l.leases, int64(l.id))
	defer ka.reset()
	renew := time.NewTimer(time.Until(expires) / 3)
	defer renew.Stop()
	// next sets the timer to d from now, and never past expires, so a lease
	// that runs out is seen at once, not at the next renewal.
	next := func(d time.Duration) { renew.Reset(max(0, min(d, time.Until(expires)))) }
	var sentAt time.Time // the unanswered renewal's send time; zero when none waits
	// failed handles a failed stream; it reports whether to go on.
	failed := func() bool {
		ka.reset()
		sentAt = time.Time{}
		if ctx.Err() != nil {
			return false
		}
		if l.client.Ctx().Err() != nil {
			l.markLost("etcd client closed")
			return false
		}
		next(keepAliveRetry)
		return true
	}

	// One watch at a time; restart cancels the previous one.
	wcancel := context.CancelFunc(func() {})
	defer func() { wcancel() }()
	restart := func(from int64) clientv3.WatchChan {
		wcancel()
		var wctx context.Context
		wctx, wcancel = context.WithCancel(ctx)
		return l.client.Watch(wctx, l.key, clientv3.WithRev(from))
	}
	watch := restart(rev + 1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			now := time.Now()
			if !now.Before(expires) {
				l.markLost(fmt.Sprintf("not renewed within its TTL (%s)", l.ttl))
				return
			}
			if !sentAt.IsZero() {
				if waited := now.Sub(sentAt); waited < keepAliveAnswerWait {
					next(keepAliveAnswerWait - waited)
					continue
				}
				ka.reset() // unanswered: take the stream for dead
			}
			if err := ka.send(ctx); err != nil {
				if !failed() {
					return
				}
				continue
			}
			sentAt = now
			next(keepAliveAnswerWait)
		case a := <-ka.answers:
			switch {
			case !ka.current(a):
				// An answer of a stream given up: stale.
			case a.err != nil:
				if !failed() {
					return
				}
			case a.ttl <= 0:
				l.markLost("lease expired")
				return
			case !sentAt.IsZero():
				// A stream answers its renewals in order.
				expires = sentAt.Add(time.Duration(a.ttl) * time.Second)
				sentAt = time.Time{}
				// Up to a tenth of the TTL early, at random: leases granted
				// together (a rep process's cells) do not renew, and expire,
				// in lockstep.
				next(l.ttl/3 - rand.N(l.ttl/10+1))
			}
		case wr, ok := <-watch:
			if ctx.Err() != nil {
				return
			}
			if !ok || wr.Err() != nil {
				// Compaction or a broken watch: check the key directly and
				// watch again from now.
				from, reason := l.recheck(ctx)
				if reason != "" {
					l.markLost(reason)
					return
				}
				if from == 0 {
					return // ctx done
				}
				watch = restart(from)
				continue
			}
			for _, ev := range wr.Events {
				switch {
				case ev.Type == mvccpb.DELETE:
					l.markLost("key deleted")
					return
				case clientv3.LeaseID(ev.Kv.Lease) != l.id:
					l.markLost("key overwritten by another owner")
					return
				}
			}
		}
	}
}

// recheck reads the key after a watch failure. It returns the revision to
// watch from, or a non-empty reason when the record is no longer ours.
func (l *etcdLease) recheck(ctx context.Context) (int64, string) {
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := l.client.Get(rctx, l.key)
		cancel()
		if err == nil {
			if len(resp.Kvs) == 0 {
				return 0, "key deleted"
			}
			if clientv3.LeaseID(resp.Kvs[0].Lease) != l.id {
				return 0, "key overwritten by another owner"
			}
			return resp.Header.Revision + 1, ""
		}
		if ctx.Err() != nil {
			return 0, ""
		}
		if l.client.Ctx().Err() != nil {
			return 0, "etcd client closed"
		}
		l.logger.Error("recheck-failed", err)
		// The keep-alive still guards the TTL; try again shortly.
		select {
		case <-ctx.Done():
			return 0, ""
		case <-time.After(time.Second):
		}
	}
}

// Release implements [Lease]: it stops the keep-alive and revokes the lease,
// which deletes the key.
func (l *etcdLease) Release(ctx context.Context) error {
	if !l.markReleased() {
		return nil
	}
	l.cancel()
	<-l.done
	if _, err := l.client.Revoke(ctx, l.id); err != nil {
		if errors.Is(err, context.Canceled) || l.client.Ctx().Err() != nil {
			return fmt.Errorf("locket: releasing %s: %w", l.key, err)
		}
		// A lease already gone (expired or revoked) is released already.
		if isLeaseNotFound(err) {
			return nil
		}
		return fmt.Errorf("locket: releasing %s: %w", l.key, err)
	}
	return nil
}

// isLeaseNotFound reports whether err is etcd's "requested lease not found".
func isLeaseNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaseNotFound)
}
