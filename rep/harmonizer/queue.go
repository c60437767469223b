package harmonizer

import (
	"context"
	"runtime"
	"sync"

	"github.com/gavelhq/gavel/internal/workers"
)

// queue runs operations keyed by container guid: at most one runs per key
// and at most one waits (a newer one replaces it), like Diego's sliding queue.
type queue struct {
	workers *workers.Pool
	mu      sync.Mutex
	slots   map[string]*slot
	wg      sync.WaitGroup
}

type slot struct{ next func(context.Context) }

func newQueue(w *workers.Pool) *queue { return &queue{workers: w, slots: map[string]*slot{}} }

// push queues op for key; it runs on a worker of its own with ctx.
func (q *queue) push(ctx context.Context, key string, op func(context.Context)) {
	q.enqueue(ctx, key, op, true)
}

// pushUnlessWaiting queues op for key unless an operation already waits
// for it (which then runs instead): an operation that does only part of what
// a waiting one does must not replace it.
func (q *queue) pushUnlessWaiting(ctx context.Context, key string, op func(context.Context)) {
	q.enqueue(ctx, key, op, false)
}

// enqueue runs op for key now, or after the running one; replace says
// whether it replaces an operation already waiting.
func (q *queue) enqueue(ctx context.Context, key string, op func(context.Context), replace bool) {
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
	q.workers.Go(func() {
		defer q.wg.Done()
		for {
			op(ctx)
			q.mu.Lock()
			if s.next == nil || ctx.Err() != nil {
				delete(q.slots, key)
				q.mu.Unlock()
				return
			}
			op, s.next = s.next, nil
			q.mu.Unlock()
		}
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
	ctx  context.Context
	req  R
	done chan error
}

func (b *batcher[R]) do(ctx context.Context, req R) error {
	it := &batchItem[R]{ctx: ctx, req: req, done: make(chan error, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, it)
	if b.inFlight < max(b.maxInFlight, 1) {
		b.inFlight++
		b.workers.Go(b.flush)
	}
	b.mu.Unlock()
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
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
			it.done <- errs[i]
		}
	}
}

// next takes the next batch: up to max pending calls whose callers still
// wait. It returns nil, ending the flush, when none is left.
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
	b.pending = append([]*batchItem[R](nil), b.pending[i:]...)
	if len(items) == 0 { // then every pending call was looked at
		b.inFlight--
	}
	return items
}
