package server

import (
	"sync/atomic"
	"time"
)

// Defaults of the batch workers.
const (
	// DefaultMaxBatchWorkers is the most goroutines kept for batch items.
	DefaultMaxBatchWorkers = 1024
	// batchWorkerIdle is how long a kept goroutine waits for an item
	// before it exits.
	batchWorkerIdle = 10 * time.Second
)

// batchWorkers runs the items of batch calls on goroutines it keeps for a
// while, so the stack each grows on the store's deep write path is used
// again instead of being grown anew for every item (stack growth was about
// 6 % of the BBS's CPU placing 100k instances). When no kept goroutine is
// idle an item gets a new one, kept too up to max, so an item never waits
// for a worker. A worker idle for a while (batchWorkerIdle) exits; no Close needed.
type batchWorkers struct {
	max   int32
	idle  time.Duration
	items chan func()
	kept  atomic.Int32
	// spawned counts the goroutines started, kept or not.
	spawned atomic.Int64
}

func newBatchWorkers(max int, idle time.Duration) *batchWorkers {
	if max <= 0 {
		max = DefaultMaxBatchWorkers
	}
	if idle <= 0 {
		idle = batchWorkerIdle
	}
	return &batchWorkers{max: int32(max), idle: idle, items: make(chan func())}
}

// run runs f on an idle kept goroutine, or on a new one.
func (w *batchWorkers) run(f func()) {
	select {
	case w.items <- f:
		return
	default:
	}
	w.spawned.Add(1)
	if w.kept.Add(1) <= w.max {
		go w.work(f)
		return
	}
	w.kept.Add(-1)
	go f()
}

// work runs f, then the items handed to it, until it has been idle for
// w.idle.
func (w *batchWorkers) work(f func()) {
	defer w.kept.Add(-1)
	f()
	idle := time.NewTimer(w.idle)
	defer idle.Stop()
	for {
		select {
		case f := <-w.items:
			f()
			idle.Reset(w.idle)
		case <-idle.C:
			return
		}
	}
}
