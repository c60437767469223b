package harmonizer

import (
	"sync/atomic"
	"time"
)

// DefaultWorkerIdle is how long an idle worker waits for a task before it
// exits.
const DefaultWorkerIdle = 5 * time.Second

// Workers runs the harmonizer's short tasks (a container's operations, a
// batch's BBS calls) on reused goroutines: a task goes to an idle worker
// when there is one, else to a new goroutine, which then waits up to its
// idle time for the next task before it exits. A task started on a fresh
// goroutine grows its stack, by copying, on the way into a gRPC call (14 %
// of a simulated cell process's CPU at 100k instances); a reused worker
// keeps the stack it grew. There is no cap: a task waiting on the BBS never
// holds up another. One Workers is shared by the cells of a process.
type Workers struct {
	tasks chan func()
	idle  time.Duration
	live  atomic.Int64 // workers running or idle
}

// NewWorkers returns workers that exit after idle without a task
// (DefaultWorkerIdle when idle <= 0).
func NewWorkers(idle time.Duration) *Workers {
	if idle <= 0 {
		idle = DefaultWorkerIdle
	}
	return &Workers{tasks: make(chan func()), idle: idle}
}

// Go runs task on an idle worker or a new one; it never blocks.
func (w *Workers) Go(task func()) {
	select {
	case w.tasks <- task:
	default:
		w.live.Add(1)
		go w.work(task)
	}
}

func (w *Workers) work(task func()) {
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
