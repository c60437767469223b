package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/models"
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
// whole or not at all. Both are etcd's own request messages, so a commit
// sends them as they are (clientv3's Op would copy every key and value, and
// build the messages again, on each transaction).
type mutation struct {
	cmps []*pb.Compare
	ops  []*pb.RequestOp
	// keys are the keys ops write; guarded are the keys cmps read. etcd
	// evaluates every compare of a transaction, nested ones included, against
	// the state before it, so a mutation never shares a transaction with
	// another that writes a key it reads or writes.
	keys    []string
	guarded []string
	// bytes estimates the mutation's encoded size (see putOverhead).
	bytes int
	// alone keeps the mutation out of shared transactions (a prefix guard
	// cannot be checked against the other mutations' keys).
	alone bool
	// written are the models of the actual-LRP rows the mutation puts
	// (putRow): once it commits, the cache takes them instead of decoding
	// the values.
	written []written
	done    chan commitResult
}

type commitResult struct {
	ok  bool  // the guards held and the ops were applied
	rev int64 // the store revision after the transaction
	err error // etcd failed; nothing is known to be applied
}

// Encoded-size estimates, in bytes, of the parts of a transaction beyond
// their keys and values (field tags, lengths, a lease id, a revision). They
// err on the large side so that a transaction sized by them fits etcd's
// --max-request-bytes.
const (
	putOverhead    = 32
	delOverhead    = 16
	cmpOverhead    = 32
	nestedOverhead = 16
	// txnHeadroom is left free in every transaction for the raft request's
	// own header.
	txnHeadroom = 1024
)

// putOp is a put request with its wrappers, allocated together.
type putOp struct {
	op   pb.RequestOp
	wrap pb.RequestOp_RequestPut
	req  pb.PutRequest
}

// deleteOp is a delete request with its wrappers, allocated together.
type deleteOp struct {
	op   pb.RequestOp
	wrap pb.RequestOp_RequestDeleteRange
	req  pb.DeleteRangeRequest
}

// txnOp is a nested transaction with its wrappers, allocated together.
type txnOp struct {
	op   pb.RequestOp
	wrap pb.RequestOp_RequestTxn
	req  pb.TxnRequest
}

// put adds a put of val under key; val is sent as it is, not copied, so
// the caller must not change it afterwards.
func (m *mutation) put(key string, val []byte) {
	p := &putOp{req: pb.PutRequest{Key: []byte(key), Value: val}}
	p.wrap.RequestPut = &p.req
	p.op.Request = &p.wrap
	m.ops = append(m.ops, &p.op)
	m.keys = append(m.keys, key)
	m.bytes += putCost(key, len(val))
}

func putCost(key string, valLen int) int { return len(key) + valLen + putOverhead }

func (m *mutation) del(key string) {
	d := &deleteOp{req: pb.DeleteRangeRequest{Key: []byte(key)}}
	d.wrap.RequestDeleteRange = &d.req
	d.op.Request = &d.wrap
	m.ops = append(m.ops, &d.op)
	m.keys = append(m.keys, key)
	m.bytes += len(key) + delOverhead
}

// nested is m as one operation of a larger transaction.
func (m *mutation) nested() *pb.RequestOp {
	t := &txnOp{req: pb.TxnRequest{Compare: m.cmps, Success: m.ops}}
	t.wrap.RequestTxn = &t.req
	t.op.Request = &t.wrap
	return &t.op
}

// compare adds cmp to m's guards.
func (m *mutation) compare(cmp clientv3.Cmp) { m.cmps = append(m.cmps, (*pb.Compare)(&cmp)) }

// guard requires key to be at mod revision rev (0: absent).
func (m *mutation) guard(key string, rev int64) {
	m.compare(clientv3.Compare(clientv3.ModRevision(key), "=", rev))
	m.guarded = append(m.guarded, key)
	m.bytes += len(key) + cmpOverhead
}

// guardPrefix requires every key under prefix to have a mod revision of at
// most rev: nothing under it changed after rev (keys deleted since are not
// seen). A mutation with a prefix guard is committed alone.
func (m *mutation) guardPrefix(prefix string, rev int64) {
	m.compare(clientv3.Compare(clientv3.ModRevision(prefix), "<", rev+1).WithPrefix())
	m.guarded = append(m.guarded, prefix)
	m.alone = true
	m.bytes += 2*len(prefix) + cmpOverhead
}

// width is what etcd counts against --max-txn-ops for this mutation.
func (m *mutation) width() int { return max(len(m.cmps), len(m.ops)) }

// CommitterOptions sizes the group commit.
type CommitterOptions struct {
	// MaxOps is the most requests packed in one transaction (default 128).
	// Whatever its value, a transaction never exceeds EtcdMaxTxnOps.
	MaxOps int
	// MaxBytes bounds a transaction's estimated size (default
	// DefaultCommitMaxBytes; upper bound: EtcdMaxRequestBytes less a
	// headroom). etcd applies a transaction in one step of its single apply
	// loop, and lease keep-alives wait behind it: small transactions keep
	// every lease renewal prompt however much is being written.
	MaxBytes int
	// EtcdMaxTxnOps is the cluster's --max-txn-ops (default 128). etcd
	// counts a transaction of N nested transactions as N plus the widest
	// nested one, and the committer packs by that rule.
	EtcdMaxTxnOps int
	// EtcdMaxRequestBytes is the cluster's --max-request-bytes (default
	// 1.5 MiB, etcd's own default).
	EtcdMaxRequestBytes int
	// Workers is how many transactions may be in flight at once.
	Workers int
}

// DefaultCommitMaxBytes is the default bound of one transaction's estimated
// size: a few hundred records, which etcd applies in milliseconds, so lease
// keep-alives (locks, cell presences) are never queued behind a long apply.
const DefaultCommitMaxBytes = 64 << 10

// Defaults of etcd's own transaction limits, as an external etcd has them.
const (
	DefaultEtcdMaxTxnOps       = 128
	DefaultEtcdMaxRequestBytes = 3 << 19 // 1.5 MiB
)

func (o CommitterOptions) withDefaults() CommitterOptions {
	if o.MaxOps <= 0 {
		o.MaxOps = 128
	}
	if o.EtcdMaxTxnOps <= 0 {
		o.EtcdMaxTxnOps = DefaultEtcdMaxTxnOps
	}
	if o.EtcdMaxRequestBytes <= 0 {
		o.EtcdMaxRequestBytes = DefaultEtcdMaxRequestBytes
	}
	budget := o.requestBudget()
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultCommitMaxBytes
	}
	if o.MaxBytes > budget {
		o.MaxBytes = budget
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	return o
}

// requestBudget is the largest estimated transaction etcd accepts: its
// --max-request-bytes less a headroom. A single mutation larger than MaxBytes
// but within it is committed alone.
func (o CommitterOptions) requestBudget() int {
	return max(o.EtcdMaxRequestBytes-txnHeadroom, o.EtcdMaxRequestBytes/2)
}

// tooLarge says why a mutation can never be committed, or nil if it fits
// in one transaction of its own.
func (c *Committer) tooLarge(m *mutation) error {
	if w := m.width(); w > c.opts.EtcdMaxTxnOps {
		return fmt.Errorf("%w: one write needs %d operations in a transaction and etcd's --max-txn-ops is %d", models.ErrTooLarge, w, c.opts.EtcdMaxTxnOps)
	}
	if m.bytes > c.opts.requestBudget() {
		return fmt.Errorf("%w: one write is about %d bytes and etcd's --max-request-bytes is %d", models.ErrTooLarge, m.bytes, c.opts.EtcdMaxRequestBytes)
	}
	return nil
}

// Committer packs concurrent mutations into multi-operation etcd
// transactions: each mutation is a nested transaction with its own guards, so
// a lost compare fails only its own request. Safe for concurrent use.
type Committer struct {
	kv pb.KVClient
	// callOpts are clientv3's own for a transaction: wait for a connection
	// rather than fail at once while etcd restarts, and leave the size
	// limits to etcd (--max-request-bytes), whose refusal classify knows.
	callOpts []grpc.CallOption
	opts     CommitterOptions
	queue    chan *mutation

	txns      atomic.Int64
	mutations atomic.Int64
	observe   func(batch int, d time.Duration)
	// answers keeps the one-result channels of mutations whose result was
	// taken, for reuse (one channel per write was ~4 % of the BBS's CPU,
	// nearly all allocation and the collection it causes).
	answers sync.Pool
}

// NewCommitter returns a committer that sends its transactions to kv (see
// [Options.KV]); Run must be running for Commit to proceed.
func NewCommitter(kv pb.KVClient, opts CommitterOptions, observe func(batch int, d time.Duration)) *Committer {
	opts = opts.withDefaults()
	if observe == nil {
		observe = func(int, time.Duration) {}
	}
	c := &Committer{
		kv:       kv,
		callOpts: []grpc.CallOption{grpc.WaitForReady(true), grpc.MaxCallSendMsgSize(math.MaxInt32), grpc.MaxCallRecvMsgSize(math.MaxInt32)},
		opts:     opts, queue: make(chan *mutation, 4*opts.MaxOps), observe: observe,
	}
	c.answers.New = func() any { return make(chan commitResult, 1) }
	return c
}

// Stats returns how many transactions and mutations were committed.
func (c *Committer) Stats() (txns, mutations int64) { return c.txns.Load(), c.mutations.Load() }

// Options returns the committer's options, defaults applied.
func (c *Committer) Options() CommitterOptions { return c.opts }

// Commit writes m and reports whether its guards held. It blocks until the
// transaction finished or ctx ended. A mutation too large for any
// transaction fails at once with models.ErrTooLarge.
func (c *Committer) Commit(ctx context.Context, m *mutation) commitResult {
	if err := c.enqueue(ctx, m); err != nil {
		return commitResult{err: err}
	}
	return c.wait(ctx, m)
}

// enqueue hands m to the workers without waiting for its transaction; wait
// then takes its result. A caller with many mutations enqueues them all
// first, so they can share transactions.
func (c *Committer) enqueue(ctx context.Context, m *mutation) error {
	if err := c.tooLarge(m); err != nil {
		return err
	}
	m.done = c.answers.Get().(chan commitResult)
	select {
	case c.queue <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait is the result of an enqueued mutation. Once taken, the mutation's
// channel goes back for reuse: the workers send on it exactly once.
func (c *Committer) wait(ctx context.Context, m *mutation) commitResult {
	select {
	case r := <-m.done:
		c.answers.Put(m.done)
		m.done = nil
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
		ops, bytes, widest := 0, 0, 0
		fits := func(m *mutation) bool {
			if len(batch) == 0 {
				return true
			}
			if m.alone || batch[0].alone {
				return false
			}
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
			// Nested, the batch costs etcd one operation per mutation plus
			// the widest mutation, and a little framing per mutation.
			n := len(batch) + 1
			if n > c.opts.MaxOps || n+max(widest, m.width()) > c.opts.EtcdMaxTxnOps {
				return false
			}
			return bytes+m.bytes+n*nestedOverhead <= c.opts.MaxBytes
		}
		take := func(m *mutation) {
			batch = append(batch, m)
			ops++
			bytes += m.bytes
			widest = max(widest, m.width())
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
		resp, err := c.txn(tctx, &pb.TxnRequest{Compare: m.cmps, Success: m.ops})
		if err != nil {
			m.done <- commitResult{err: fmt.Errorf("etcd txn: %w", classify(err))}
			return
		}
		m.done <- commitResult{ok: resp.Succeeded, rev: resp.Header.Revision}
		c.observe(1, time.Since(start))
		return
	}
	nested := make([]*pb.RequestOp, len(batch))
	for i, m := range batch {
		nested[i] = m.nested()
	}
	resp, err := c.txn(tctx, &pb.TxnRequest{Success: nested})
	if err != nil && errors.Is(classify(err), models.ErrTooLarge) {
		// The estimates packed too much: no mutation is to blame for the
		// batch, so each is committed alone (where only one too large by
		// itself fails).
		cancel()
		for _, m := range batch {
			c.commit(ctx, []*mutation{m})
		}
		return
	}
	if err != nil {
		for _, m := range batch {
			m.done <- commitResult{err: fmt.Errorf("etcd txn of %d requests: %w", len(batch), classify(err))}
		}
		return
	}
	for i, m := range batch {
		ok := resp.Responses[i].GetResponseTxn().GetSucceeded()
		m.done <- commitResult{ok: ok, rev: resp.Header.Revision}
	}
	c.observe(len(batch), time.Since(start))
}

// txn sends one transaction. A refusal comes back as etcd's error value
// (rpctypes), as clientv3 would return it.
func (c *Committer) txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, err := c.kv.Txn(ctx, r, c.callOpts...)
	if err != nil {
		return nil, rpctypes.Error(err)
	}
	return resp, nil
}

// classify marks the etcd errors that no retry can cure (the request
// exceeds --max-txn-ops or --max-request-bytes, or a gRPC message limit)
// with models.ErrTooLarge and a full database (NOSPACE) with
// models.ErrResourceExhausted; any other error is models.ErrUnavailable.
func classify(err error) error {
	if err == nil || errors.Is(err, models.ErrTooLarge) || errors.Is(err, models.ErrUnavailable) || errors.Is(err, models.ErrResourceExhausted) {
		return err
	}
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrGRPCTooManyOps):
		return fmt.Errorf("%w: etcd refused the transaction (--max-txn-ops): %v", models.ErrTooLarge, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrGRPCRequestTooLarge):
		return fmt.Errorf("%w: etcd refused the request (--max-request-bytes): %v", models.ErrTooLarge, err)
	case errors.Is(err, rpctypes.ErrNoSpace), errors.Is(err, rpctypes.ErrGRPCNoSpace):
		// No retry cures it: the operator compacts, defragments and
		// disarms the NOSPACE alarm (see the README's HA section).
		return fmt.Errorf("%w: etcd's database reached its quota (--quota-backend-bytes, NOSPACE alarm): %v", models.ErrResourceExhausted, err)
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "larger than max") {
		return fmt.Errorf("%w: the request exceeds a gRPC message limit: %v", models.ErrTooLarge, err)
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
		return fmt.Errorf("%w: etcd refused the request: %v", models.ErrInvalid, err)
	}
	return fmt.Errorf("%w: %v", models.ErrUnavailable, err)
}
