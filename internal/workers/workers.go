// Package workers runs short tasks on reused goroutines, so a task's stack,
// grown once, is not grown again by copying for the next.
package workers

import (
	"sync/atomic"
	"time"
)

// DefaultIdle is how long an idle worker waits for a task before it
// exits.
const DefaultIdle = 5 * time.Second

// Pool runs short tasks (a harmonizer's container operations and batched
// BBS calls, an executor's container starts) on reused goroutines: a task goes to an idle worker
// when there is one, else to a new goroutine, which then waits up to its
// idle time for the next task before it exits. A task started on a fresh
// goroutine grows its stack, by copying, on the way into a gRPC call (14 %
// of a simulated cell process's CPU at 100k instances); a reused worker
// keeps the stack it grew. There is no cap: a task waiting on the BBS never
// holds up another. One Pool is shared by the cells of a rep process.
type Pool struct {
	tasks chan func()
	idle  time.Duration
	live  atomic.Int64 // workers running or idle
}

// New returns a pool whose workers exit after idle without a task
// (DefaultIdle when idle <= 0).
func New(idle time.Duration) *Pool {
	if idle <= 0 {
		idle = DefaultIdle
	}
	return &Pool{tasks: make(chan func()), idle: idle}
}

// Go runs task on an idle worker or a new one; it never blocks.
func (w *Pool) Go(task func()) {
	select {
	case w.tasks <- task:
	default:
		w.live.Add(1)
		go w.work(task)
	}
}

func (w *Pool) work(task func()) {
	defer w.live.Add(-1)
	timer := time.NewTimer(w.idle)
	defer timer.Stop()
	for {
		task()
		timer.Reset(w.idle)
		select {
		case task = <-w.tasks:
		case <-timer.C:
			return
		}
	}
}
