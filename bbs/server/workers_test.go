package server

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBatchWorkersRunEveryItemAndKeepAtMostMax(t *testing.T) {
	w := newBatchWorkers(4, time.Minute)
	s := &Server{workers: w}
	// More items than kept workers, all blocked together: an item never
	// waits for a free worker (the store groups concurrent writes, so a
	// batch whose items ran one after another would never commit).
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(16)
	var results []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		res := s.batch(16, func(i int) error {
			started.Done()
			<-release
			if i%2 == 1 {
				return errors.New("odd")
			}
			return nil
		})
		for _, r := range res {
			if r.GetCode() != 0 {
				results = append(results, errors.New(r.GetMessage()))
			} else {
				results = append(results, nil)
			}
		}
	}()
	started.Wait() // all 16 run at once
	require.Equal(t, int32(4), w.kept.Load(), "only max goroutines are kept")
	close(release)
	<-done
	require.Len(t, results, 16)
	for i, err := range results {
		if i%2 == 1 {
			require.EqualError(t, err, "odd", "item %d", i)
		} else {
			require.NoError(t, err, "item %d", i)
		}
	}
}

func TestBatchWorkersReuseIdleGoroutinesThenExit(t *testing.T) {
	w := newBatchWorkers(8, time.Second)
	s := &Server{workers: w}
	var started sync.WaitGroup
	started.Add(8)
	s.batch(8, func(int) error { started.Done(); started.Wait(); return nil }) // 8 at once
	require.Equal(t, int32(8), w.kept.Load())

	spawned := w.spawned.Load()
	var ran atomic.Int32
	for range 20 {
		s.batch(4, func(int) error { ran.Add(1); return nil })
	}
	require.Equal(t, int32(80), ran.Load())
	require.Equal(t, spawned, w.spawned.Load(), "every item ran on a kept goroutine")

	require.Eventually(t, func() bool { return w.kept.Load() == 0 }, 10*time.Second, 10*time.Millisecond,
		"idle workers exit")
}
