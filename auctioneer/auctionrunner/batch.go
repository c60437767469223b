package auctionrunner

import (
	"sync"

	"github.com/gavelhq/gavel/auctioneer"
)

// lrpID identifies an LRP instance in a batch (Diego's "<guid>.<index>").
type lrpID struct {
	processGUID string
	index       int
}

// Batch collects the work of the next auction. It is safe for concurrent
// use; adds never block.
type Batch struct {
	mu       sync.Mutex
	lrps     []auctioneer.LRPStart
	tasks    []auctioneer.TaskStart
	lrpSeen  map[lrpID]struct{}
	taskSeen map[string]struct{}
	repairs  int // LRP instances with Repair set
	wake     chan struct{}
}

// NewBatch returns an empty batch.
func NewBatch() *Batch {
	return &Batch{
		lrpSeen:  map[lrpID]struct{}{},
		taskSeen: map[string]struct{}{},
		wake:     make(chan struct{}, 1),
	}
}

// AddLRPs adds LRP instances, dropping any already in the batch (the first
// occurrence wins), wakes the runner and returns how many were added.
func (b *Batch) AddLRPs(starts ...auctioneer.LRPStart) int {
	b.mu.Lock()
	added := 0
	for _, s := range starts {
		id := lrpID{s.ProcessGUID, s.Index}
		if _, dup := b.lrpSeen[id]; dup {
			continue
		}
		b.lrpSeen[id] = struct{}{}
		b.lrps = append(b.lrps, s)
		if s.Repair {
			b.repairs++
		}
		added++
	}
	if added > 0 {
		b.signal()
	}
	b.mu.Unlock()
	return added
}

// AddTasks adds tasks, dropping any already in the batch (the first
// occurrence wins), wakes the runner and returns how many were added.
func (b *Batch) AddTasks(starts ...auctioneer.TaskStart) int {
	b.mu.Lock()
	added := 0
	for _, s := range starts {
		if _, dup := b.taskSeen[s.TaskGUID]; dup {
			continue
		}
		b.taskSeen[s.TaskGUID] = struct{}{}
		b.tasks = append(b.tasks, s)
		added++
	}
	if added > 0 {
		b.signal()
	}
	b.mu.Unlock()
	return added
}

// Wake receives a value when work was added since the last Drain (or when
// the runner re-armed it). Many adds give one wake-up.
func (b *Batch) Wake() <-chan struct{} { return b.wake }

// Len returns the number of LRP instances and tasks waiting.
func (b *Batch) Len() (lrps, tasks int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lrps), len(b.tasks)
}

// Repairs returns the number of LRP instances waiting with Repair set.
func (b *Batch) Repairs() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.repairs
}

// Drain empties the batch, clears a pending wake-up and returns the work
// in the order it was added.
func (b *Batch) Drain() ([]auctioneer.LRPStart, []auctioneer.TaskStart) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lrps, tasks := b.lrps, b.tasks
	b.lrps, b.tasks = nil, nil
	b.repairs = 0
	clear(b.lrpSeen)
	clear(b.taskSeen)
	select {
	case <-b.wake:
	default:
	}
	return lrps, tasks
}

// rearm wakes the runner again for the work still in the batch.
func (b *Batch) rearm() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.signal()
}

// signal is a non-blocking send on the wake channel. Callers hold mu, so
// a Drain never leaves a wake-up behind for work it already took.
func (b *Batch) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}
