package workers

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// idleWorker hands task straight to an idle worker; false when none is
// idle (then nothing runs).
func idleWorker(w *Pool, task func()) bool {
	select {
	case w.tasks <- task:
		return true
	default:
		return false
	}
}

// A task after another one finished runs on the same, idle worker.
func TestWorkersReuseAnIdleWorker(t *testing.T) {
	w := New(time.Minute)
	var ran atomic.Int32
	done := make(chan struct{}, 1)
	task := func() { ran.Add(1); done <- struct{}{} }
	w.Go(task)
	<-done
	for range 20 {
		require.Eventually(t, func() bool { return idleWorker(w, task) }, 5*time.Second, time.Millisecond,
			"the worker that ran the last task waits for the next")
		<-done
	}
	require.EqualValues(t, 21, ran.Load())
	require.EqualValues(t, 1, w.live.Load(), "one worker ran them all")
}

// Tasks that block do not hold up others: there is no cap.
func TestWorkersRunBlockedTasksSideBySide(t *testing.T) {
	w := New(time.Minute)
	release := make(chan struct{})
	var running atomic.Int32
	for range 50 {
		w.Go(func() { running.Add(1); <-release })
	}
	require.Eventually(t, func() bool { return running.Load() == 50 }, 5*time.Second, time.Millisecond)
	require.EqualValues(t, 50, w.live.Load())
	close(release)
}

// A worker without a task for its idle time exits.
func TestWorkersExitWhenIdle(t *testing.T) {
	w := New(20 * time.Millisecond)
	done := make(chan struct{})
	w.Go(func() { close(done) })
	<-done
	require.Eventually(t, func() bool { return w.live.Load() == 0 }, 5*time.Second, time.Millisecond,
		"no worker left waiting")
}
