package harmonizer

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/gavelhq/gavel/internal/workers"
)

// queue runs operations keyed by container guid: at most one runs per key
// and at most one waits (a newer one replaces it), like Diego's sliding queue.
// An operation ends when it calls its done, on any goroutine: one that waits
// on a batched BBS call (see batcher.submit) holds no goroutine meanwhile, so
// the thousands of claims and starts a rep process has waiting during a
// large placement cost no stacks for the garbage collector to scan.
type queue struct {
	workers *workers.Pool
	mu      sync.Mutex
	slots   map[string]*slot
	wg      sync.WaitGroup
}

// asyncOp is a queued operation; it calls done exactly once, when it ends.
type asyncOp func(ctx context.Context, done func())

type slot struct{ next asyncOp }

func newQueue(w *workers.Pool) *queue { return &queue{workers: w, slots: map[string]*slot{}} }

// push queues op for key; it runs on a worker with ctx.
func (q *queue) push(ctx context.Context, key string, op func(context.Context)) {
	q.enqueue(ctx, key, syncOp(op), true)
}

// pushAsync queues op for key, which ends when it calls done.
func (q *queue) pushAsync(ctx context.Context, key string, op asyncOp) {
	q.enqueue(ctx, key, op, true)
}

// pushUnlessWaiting queues op for key unless an operation already waits
// for it (which then runs instead): an operation that does only part of what
// a waiting one does must not replace it.
func (q *queue) pushUnlessWaiting(ctx context.Context, key string, op func(context.Context)) {
	q.enqueue(ctx, key, syncOp(op), false)
}

// syncOp is an operation that ends when op returns.
func syncOp(op func(context.Context)) asyncOp {
	return func(ctx context.Context, done func()) {
		defer done()
		op(ctx)
	}
}

// enqueue runs op for key now, or after the running one; replace says
// whether it replaces an operation already waiting.
func (q *queue) enqueue(ctx context.Context, key string, op asyncOp, replace bool) {
	q.mu.Lock()
	if s, ok := q.slots[key]; ok {
		if replace || s.next == nil {
			s.next = op
		}
		q.mu.Unlock()
		return
	}
	s := &slot{}
	q.slots[key] = s
	q.wg.Add(1)
	q.mu.Unlock()
	q.workers.Go(func() { q.run(ctx, key, s, op) })
}

// run runs op, and after it the operation that waited meanwhile, if any.
func (q *queue) run(ctx context.Context, key string, s *slot, op asyncOp) {
	var ended atomic.Bool
	op(ctx, func() {
		if !ended.CompareAndSwap(false, true) {
			panic("harmonizer: an operation of " + key + " ended twice")
		}
		q.mu.Lock()
		next := s.next
		if next == nil || ctx.Err() != nil {
			delete(q.slots, key)
			q.mu.Unlock()
			q.wg.Done()
			return
		}
		s.next = nil
		q.mu.Unlock()
		q.workers.Go(func() { q.run(ctx, key, s, next) })
	})
}

// wait waits for every running operation.
func (q *queue) wait() { q.wg.Wait() }

// batcher groups concurrent calls into one: a call made while a flush has
// room (fewer than maxInFlight calls under way) goes as soon as the
// goroutines already runnable had their turn (the operations of the
// containers one Perform reserved, each in its own goroutine, then join it
// instead of following in a second call); calls made meanwhile wait and go
// together (up to max) when a call returns. No timers, so a lone call waits
// only for the scheduler. A call whose caller gave up (its ctx ended) before
// its batch left is not sent.
type batcher[R any] struct {
	call func(ctx context.Context, reqs []R) []error
	max  int
	// maxInFlight bounds the calls under way at once; 0 is 1.
	maxInFlight int
	ctx         func() context.Context
	// workers run the flushes.
	workers *workers.Pool
	// yield runs once before the first call of a flush; nil is
	// runtime.Gosched (tests pass their own).
	yield func()

	mu       sync.Mutex
	pending  []*batchItem[R]
	inFlight int // flushes under way
}

type batchItem[R any] struct {
	ctx   context.Context
	req   R
	done  func(error)
	ended atomic.Bool
	// stopCtxEnd unregisters the ending of the item when its ctx ends.
	stopCtxEnd func() bool
}

// end gives the item's result to its caller, unless its ctx's end did.
func (it *batchItem[R]) end(err error) {
	if it.ended.CompareAndSwap(false, true) {
		it.stopCtxEnd()
		it.done(err)
	}
}

// endWithCtx gives the item its ctx's error when ctx ends first.
func (it *batchItem[R]) endWithCtx() {
	if it.ended.CompareAndSwap(false, true) {
		it.done(it.ctx.Err())
	}
}

// do makes a call in the next batch and waits for its result, or for ctx.
func (b *batcher[R]) do(ctx context.Context, req R) error {
	result := make(chan error, 1)
	b.submit(ctx, req, func(err error) { result <- err })
	return <-result
}

// submit makes a call in the next batch without waiting: done gets its
// result on the flush's goroutine (so it must not block), or ctx's error as
// soon as ctx ends, even while its call is under way (a stopping harmonizer
// then does not wait for a shared call). done is called exactly once.
func (b *batcher[R]) submit(ctx context.Context, req R, done func(error)) {
	it := &batchItem[R]{ctx: ctx, req: req, done: done}
	it.stopCtxEnd = context.AfterFunc(ctx, it.endWithCtx)
	b.mu.Lock()
	b.pending = append(b.pending, it)
	if b.inFlight < max(b.maxInFlight, 1) {
		b.inFlight++
		b.workers.Go(b.flush)
	}
	b.mu.Unlock()
}

func (b *batcher[R]) flush() {
	if b.yield != nil {
		b.yield()
	} else {
		runtime.Gosched()
	}
	for {
		items := b.next()
		if items == nil {
			return
		}
		reqs := make([]R, len(items))
		for i, it := range items {
			reqs[i] = it.req
		}
		errs := b.call(b.ctx(), reqs)
		for i, it := range items {
			it.end(errs[i])
		}
	}
}

// next takes the next batch: up to max pending calls whose callers still
// wait (one whose ctx ended got its error then). It returns nil, ending the
// flush, when none is left.
func (b *batcher[R]) next() []*batchItem[R] {
	b.mu.Lock()
	defer b.mu.Unlock()
	var items []*batchItem[R]
	i := 0
	for ; i < len(b.pending) && len(items) < b.max; i++ {
		if it := b.pending[i]; it.ctx.Err() == nil {
			items = append(items, it)
		}
	}
	// Shift what is left to the front rather than copying it to a new slice.
	n := copy(b.pending, b.pending[i:])
	clear(b.pending[n:])
	b.pending = b.pending[:n]
	if len(items) == 0 { // then every pending call was looked at
		b.inFlight--
	}
	return items
}
