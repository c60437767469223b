package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	retryDelay    = time.Second
	progressRetry = 500 * time.Millisecond
)

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// mutation is one request's write: its guards and its operations. It commits
// whole or not at all.
type mutation struct {
	cmps []clientv3.Cmp
	ops  []clientv3.Op
	// keys are the keys ops write; guarded are the keys cmps read. etcd
	// evaluates every compare of a transaction, nested ones included, against
	// the state before it, so a mutation never shares a transaction with
	// another that writes a key it reads or writes.
	keys    []string
	guarded []string
	bytes   int
	done    chan commitResult
}

type commitResult struct {
	ok  bool  // the guards held and the ops were applied
	rev int64 // the store revision after the transaction
	err error // etcd failed; nothing is known to be applied
}

func (m *mutation) put(key string, val []byte, opts ...clientv3.OpOption) {
	m.ops = append(m.ops, clientv3.OpPut(key, string(val), opts...))
	m.keys = append(m.keys, key)
	m.bytes += len(key) + len(val)
}

func (m *mutation) del(key string) {
	m.ops = append(m.ops, clientv3.OpDelete(key))
	m.keys = append(m.keys, key)
	m.bytes += len(key)
}

// guard requires key to be at mod revision rev (0: absent).
func (m *mutation) guard(key string, rev int64) {
	m.cmps = append(m.cmps, clientv3.Compare(clientv3.ModRevision(key), "=", rev))
	m.guarded = append(m.guarded, key)
	m.bytes += len(key) + 16
}

// CommitterOptions sizes the group commit.
type CommitterOptions struct {
	// MaxOps is the most requests packed in one transaction; it must not exceed
	// etcd's --max-txn-ops (128 by default; Gavel's embedded etcd allows more).
	MaxOps int
	// MaxBytes bounds a transaction's size below etcd's --max-request-bytes.
	MaxBytes int
	// Workers is how many transactions may be in flight at once.
	Workers int
}

// Committer packs concurrent mutations into multi-operation etcd
// transactions: each mutation is a nested transaction with its own guards, so
// a lost compare fails only its own request. Safe for concurrent use.
type Committer struct {
	client *clientv3.Client
	opts   CommitterOptions
	queue  chan *mutation

	txns      atomic.Int64
	mutations atomic.Int64
	observe   func(batch int, d time.Duration)
}

// NewCommitter returns a committer; Run must be running for Commit to proceed.
func NewCommitter(client *clientv3.Client, opts CommitterOptions, observe func(batch int, d time.Duration)) *Committer {
	if opts.MaxOps <= 0 {
		opts.MaxOps = 128
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 20
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if observe == nil {
		observe = func(int, time.Duration) {}
	}
	return &Committer{client: client, opts: opts, queue: make(chan *mutation, 4*opts.MaxOps), observe: observe}
}

// Stats returns how many transactions and mutations were committed.
func (c *Committer) Stats() (txns, mutations int64) { return c.txns.Load(), c.mutations.Load() }

// Commit writes m and reports whether its guards held. It blocks until the
// transaction finished or ctx ended.
func (c *Committer) Commit(ctx context.Context, m *mutation) commitResult {
	m.done = make(chan commitResult, 1)
	select {
	case c.queue <- m:
	case <-ctx.Done():
		return commitResult{err: ctx.Err()}
	}
	select {
	case r := <-m.done:
		return r
	case <-ctx.Done():
		return commitResult{err: fmt.Errorf("commit: %w (the write may still apply)", ctx.Err())}
	}
}

// Run commits batches until ctx ends.
func (c *Committer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := 0; i < c.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.work(ctx)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func (c *Committer) work(ctx context.Context) {
	var carry []*mutation
	for {
		batch := make([]*mutation, 0, 8)
		written, guarded := map[string]struct{}{}, map[string]struct{}{}
		ops, bytes := 0, 0
		fits := func(m *mutation) bool {
			for _, k := range m.keys {
				_, w := written[k]
				_, g := guarded[k]
				if w || g {
					return false
				}
			}
			for _, k := range m.guarded {
				if _, w := written[k]; w {
					return false
				}
			}
			if len(batch) > 0 && (ops+1 > c.opts.MaxOps || bytes+m.bytes > c.opts.MaxBytes || len(m.ops) > c.opts.MaxOps) {
				return false
			}
			return true
		}
		take := func(m *mutation) {
			batch = append(batch, m)
			ops++
			bytes += m.bytes
			for _, k := range m.keys {
				written[k] = struct{}{}
			}
			for _, k := range m.guarded {
				guarded[k] = struct{}{}
			}
		}
		var rest []*mutation
		for _, m := range carry {
			if fits(m) {
				take(m)
			} else {
				rest = append(rest, m)
			}
		}
		carry = rest
		if len(batch) == 0 {
			select {
			case m := <-c.queue:
				take(m)
			case <-ctx.Done():
				return
			}
		}
	fill:
		for len(carry) == 0 {
			select {
			case m := <-c.queue:
				if fits(m) {
					take(m)
				} else {
					carry = append(carry, m)
				}
			default:
				break fill
			}
		}
		c.commit(ctx, batch)
	}
}

func (c *Committer) commit(ctx context.Context, batch []*mutation) {
	start := time.Now()
	tctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 30*time.Second)
	defer cancel()
	c.txns.Add(1)
	c.mutations.Add(int64(len(batch)))
	if len(batch) == 1 {
		m := batch[0]
		resp, err := c.client.Txn(tctx).If(m.cmps...).Then(m.ops...).Commit()
		if err != nil {
			m.done <- commitResult{err: fmt.Errorf("etcd txn: %w", err)}
			return
		}
		m.done <- commitResult{ok: resp.Succeeded, rev: resp.Header.Revision}
		c.observe(1, time.Since(start))
		return
	}
	nested := make([]clientv3.Op, len(batch))
	for i, m := range batch {
		nested[i] = clientv3.OpTxn(m.cmps, m.ops, nil)
	}
	resp, err := c.client.Txn(tctx).Then(nested...).Commit()
	if err != nil {
		for _, m := range batch {
			m.done <- commitResult{err: fmt.Errorf("etcd txn of %d requests: %w", len(batch), err)}
		}
		return
	}
	for i, m := range batch {
		ok := resp.Responses[i].GetResponseTxn().GetSucceeded()
		m.done <- commitResult{ok: ok, rev: resp.Header.Revision}
	}
	c.observe(len(batch), time.Since(start))
}
