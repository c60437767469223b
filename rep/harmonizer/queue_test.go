package harmonizer

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/workers"
	"github.com/gavelhq/gavel/rep/executor"
)

// Operations on one key never overlap, and only the newest waiting one runs.
func TestQueueSerialisesPerKey(t *testing.T) {
	q := newQueue(workers.New(0))
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan struct{})
	var running, overlaps atomic.Int32
	var ran []int
	var mu sync.Mutex
	op := func(n int) func(context.Context) {
		return func(context.Context) {
			if running.Add(1) > 1 {
				overlaps.Add(1)
			}
			if n == 0 {
				close(started)
				<-release
			}
			mu.Lock()
			ran = append(ran, n)
			mu.Unlock()
			running.Add(-1)
		}
	}
	q.push(ctx, "a", op(0))
	<-started
	for i := 1; i <= 5; i++ {
		q.push(ctx, "a", op(i))
	}
	close(release)
	q.wait()
	require.Zero(t, overlaps.Load())
	require.Equal(t, []int{0, 5}, ran, "the first, then only the newest waiting operation")
}

// pushUnlessWaiting queues behind a running operation but never replaces
// one already waiting, and runs at once on an idle key.
func TestQueuePushUnlessWaitingKeepsTheWaitingOperation(t *testing.T) {
	q := newQueue(workers.New(0))
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan struct{})
	var mu sync.Mutex
	var ran []string
	op := func(name string) func(context.Context) {
		return func(context.Context) {
			if name == "running" {
				close(started)
				<-release
			}
			mu.Lock()
			ran = append(ran, name)
			mu.Unlock()
		}
	}
	q.push(ctx, "a", op("running"))
	<-started
	q.pushUnlessWaiting(ctx, "a", op("partial-1")) // waits: nothing else did
	q.push(ctx, "a", op("full"))                   // replaces it, as push does
	q.pushUnlessWaiting(ctx, "a", op("partial-2")) // does not replace full
	q.pushUnlessWaiting(ctx, "b", op("idle"))      // runs at once
	close(release)
	q.wait()
	require.ElementsMatch(t, []string{"running", "full", "idle"}, ran)
	require.NotContains(t, ran, "partial-2")
}

// Calls made while one is in flight go together in the next call.
func TestBatcherGroupsConcurrentCalls(t *testing.T) {
	release := make(chan struct{})
	var wg sync.WaitGroup
	b, sent := firstCallHeldBatcher(t, release, &wg)
	for i := 1; i <= 50; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, b.do(context.Background(), i)) }()
	}
	require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.pending) == 50 }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	var sizes []int
	for _, call := range sent() {
		sizes = append(sizes, len(call))
	}
	require.Equal(t, []int{1, 50}, sizes)
}

// firstCallHeldBatcher is a batcher whose first call, of item 0 and made
// before it returns (wg counts it), waits for release to close; sent returns
// the items of each call made so far.
func firstCallHeldBatcher(t *testing.T, release <-chan struct{}, wg *sync.WaitGroup) (b *batcher[int], sent func() [][]int) {
	t.Helper()
	var mu sync.Mutex
	var calls [][]int
	b = &batcher[int]{max: 100, ctx: context.Background, workers: workers.New(0), call: func(_ context.Context, reqs []int) []error {
		mu.Lock()
		calls = append(calls, append([]int(nil), reqs...))
		first := len(calls) == 1
		mu.Unlock()
		if first {
			<-release
		}
		return make([]error, len(reqs))
	}}
	sent = func() [][]int {
		mu.Lock()
		defer mu.Unlock()
		return append([][]int(nil), calls...)
	}
	wg.Add(1)
	go func() { defer wg.Done(); require.NoError(t, b.do(context.Background(), 0)) }()
	require.Eventually(t, func() bool { return len(sent()) == 1 }, 5*time.Second, time.Millisecond, "the first call is under way")
	return b, sent
}

// Calls made while the flush that a first call started yields (the other
// containers' operations of one Perform) go with it in one call.
func TestBatcherTakesCallsMadeWhileItYields(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	others := make(chan struct{})
	b := &batcher[int]{max: 100, ctx: context.Background, workers: workers.New(0), call: func(_ context.Context, reqs []int) []error {
		mu.Lock()
		sizes = append(sizes, len(reqs))
		mu.Unlock()
		return make([]error, len(reqs))
	}}
	b.yield = func() {
		close(others) // the flush yields: the other callers run now
		require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.pending) == 20 }, 5*time.Second, time.Millisecond)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); require.NoError(t, b.do(context.Background(), 0)) }()
	select {
	case <-others:
	case <-time.After(5 * time.Second):
		t.Fatal("the flush never yielded")
	}
	for i := 1; i < 20; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, b.do(context.Background(), i)) }()
	}
	wg.Wait()
	require.Equal(t, []int{20}, sizes, "one call for the first caller and those that ran while it yielded")
}

func TestCrashReasonNamesTheExitStatus(t *testing.T) {
	cases := []struct {
		name   string
		reason string
		status int
		want   string
	}{
		{"already named", "APP: Exited with status 137", 137, "APP: Exited with status 137"},
		{"health check", "Instance became unhealthy: refused", 143, "Instance became unhealthy: refused (exit status 143)"},
		{"clean exit", "", 0, "Exited cleanly (status 0)"},
		{"no reason", "", 3, "Exited with status 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, crashReason(executorResult(tc.reason, tc.status)))
		})
	}
}

func executorResult(reason string, status int) executor.RunResult {
	return executor.RunResult{Failed: reason != "", FailureReason: reason, ExitStatus: status}
}

// A batcher with maxInFlight 2 has a second call under way while the first
// is; a third waits for one of them.
func TestBatcherKeepsUpToMaxInFlightCalls(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	b := &batcher[int]{max: 100, maxInFlight: 2, ctx: context.Background, workers: workers.New(0), call: func(_ context.Context, reqs []int) []error {
		mu.Lock()
		sizes = append(sizes, len(reqs))
		mu.Unlock()
		<-release
		return make([]error, len(reqs))
	}}
	calls := func() int { mu.Lock(); defer mu.Unlock(); return len(sizes) }
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, b.do(context.Background(), i)) }()
		require.Eventually(t, func() bool { return calls() == i+1 }, 5*time.Second, time.Millisecond, "call %d under way at once", i+1)
	}
	for i := 2; i < 12; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, b.do(context.Background(), i)) }()
	}
	require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.pending) == 10 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 2, calls(), "no third call while two are under way")
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 12, sum(sizes))
	require.Equal(t, []int{1, 1}, sizes[:2])
	require.Equal(t, 10, sizes[2], "the ten that waited go in the next call")
	// A caller gets its result before the flush that carried it looks for
	// more and ends.
	require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.inFlight == 0 }, 5*time.Second, time.Millisecond, "every flush ended")
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// A call whose caller gave up before its batch left is not sent; the
// others of the batch are.
func TestBatcherDropsCallsWhoseCallerGaveUp(t *testing.T) {
	release := make(chan struct{})
	var wg sync.WaitGroup
	b, sent := firstCallHeldBatcher(t, release, &wg)

	gaveUp, giveUp := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() { gone <- b.do(gaveUp, 1) }()
	wg.Add(1)
	go func() { defer wg.Done(); require.NoError(t, b.do(context.Background(), 2)) }()
	require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.pending) == 2 }, 5*time.Second, time.Millisecond)
	giveUp()
	require.ErrorIs(t, <-gone, context.Canceled)
	close(release)
	wg.Wait()
	require.Equal(t, [][]int{{0}, {2}}, sent())
	// A caller gets its result before the flush that carried it looks for
	// more, drops the given-up call and ends.
	require.Eventually(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.inFlight == 0 && len(b.pending) == 0 }, 5*time.Second, time.Millisecond,
		"the flush ended, leaving nothing pending")
}
