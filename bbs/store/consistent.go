package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/bbs/models"
)

// Consistent reads.
//
// Every replica answers reads from its watch cache, and a replica's cache
// follows etcd through a watch that may lag: a passive replica whose watch
// sits on a member that was paused, or a new lock holder whose cache has not
// yet seen the last writes of the old one. A client balancing over replicas
// would then read an LRP that a write it had already been told succeeded had
// removed. Sync closes that gap: it reads etcd's current revision with a
// linearizable request and waits until the cache reflects it, so a read that
// follows Sync sees every write acknowledged before the read began.

// syncFetchTimeout bounds one linearizable read of etcd's revision.
const syncFetchTimeout = 5 * time.Second

// watchStallTimeout is how long Sync waits for a cache that is behind etcd
// and applies nothing before it restarts the cache's watch (relisting), in
// case the watch's stream sits on a member that stopped sending.
const watchStallTimeout = 3 * time.Second

// revisionReader reads etcd's current revision for many callers at once: a
// caller joins the next read that starts after it arrived (never one already
// in flight, which might predate a write the caller saw acknowledged), so at
// most one read is in flight and one waits, however many callers there are.
type revisionReader struct {
	get func(ctx context.Context) (int64, error)

	mu      sync.Mutex
	running bool
	pending *revisionRead // the read that callers arriving now join
}

// revisionRead is one linearizable read shared by its callers.
type revisionRead struct {
	done chan struct{}
	rev  int64
	err  error
}

// read returns a revision at least as new as etcd's revision when read was
// called.
func (r *revisionReader) read(ctx context.Context) (int64, error) {
	r.mu.Lock()
	f := r.pending
	if f == nil {
		f = &revisionRead{done: make(chan struct{})}
		r.pending = f
		if !r.running {
			r.startLocked()
		}
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		return f.rev, f.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// startLocked starts the pending read; r.mu is held.
func (r *revisionReader) startLocked() {
	f := r.pending
	r.pending = nil
	r.running = true
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), syncFetchTimeout)
		f.rev, f.err = r.get(ctx)
		cancel()
		close(f.done)
		r.mu.Lock()
		r.running = false
		if r.pending != nil {
			r.startLocked()
		}
		r.mu.Unlock()
	}()
}

// etcdRevision reads etcd's current revision with a linearizable request
// (etcd's read index: the answering member has applied everything committed
// before the request).
func (c *Cache) etcdRevision(ctx context.Context) (int64, error) {
	resp, err := c.client.Get(clientv3.WithRequireLeader(ctx), c.keys.Prefix()+"consistent-read", clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// Sync blocks until the cache reflects every write etcd had committed when
// Sync was called, so that reads after it see them. It fails with
// models.ErrUnavailable when etcd cannot be read or the cache does not catch
// up before ctx ends. A cache that is behind but still applying events is
// waited for: relisting would cost far more than catching up, and under
// load every reader restarting it would keep it behind for good. Only a
// watch that applied nothing for a whole stall timeout is restarted.
func (c *Cache) Sync(ctx context.Context) error {
	rev, err := c.revisions.read(ctx)
	if err != nil {
		return fmt.Errorf("%w: read etcd's current revision for a consistent read: %v", models.ErrUnavailable, err)
	}
	for {
		from := c.Revision()
		wctx, cancel := context.WithTimeout(ctx, c.stallTimeout)
		err = c.WaitForRevision(wctx, rev)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		if c.Revision() > from {
			continue // behind, but catching up
		}
		c.logger.Info("watch-stalled", map[string]any{"cache_revision": c.Revision(), "etcd_revision": rev, "waited": c.stallTimeout.String()})
		c.restartWatch()
	}
	return fmt.Errorf("%w: the watch cache is behind etcd (at %d, etcd at %d): %v", models.ErrUnavailable, c.Revision(), rev, err)
}

// restartWatch ends the current watch, so Run relists and watches again. A
// watch younger than the stall timeout is left alone: many readers that
// found the cache stalled together restart it once, not once each.
func (c *Cache) restartWatch() {
	c.mu.Lock()
	cancel := c.cancelWatch
	young := time.Since(c.watchStarted) < c.stallTimeout
	c.mu.Unlock()
	if cancel != nil && !young {
		cancel()
	}
}

// Sync waits until the store's cache reflects every write etcd had
// committed when Sync was called (see Cache.Sync).
func (s *Store) Sync(ctx context.Context) error { return s.cache.Sync(ctx) }
