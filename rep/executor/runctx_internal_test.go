package executor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// closedWithin fails t unless ch is closed within a few seconds.
func closedWithin(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not done 5 s after the run context ended", what)
	}
}

// TestRunContextEndsAsACancelledContext: a container's run context ends as
// a cancelled context.WithCancel would, and so do the contexts and
// callbacks package context derives from it.
func TestRunContextEndsAsACancelledContext(t *testing.T) {
	c := &runContext{}
	require.NoError(t, c.Err())
	early := c.Done()
	select {
	case <-early:
		t.Fatal("Done is closed before the context ended")
	default:
	}
	child, cancelChild := context.WithCancel(c)
	defer cancelChild()
	timeout, cancelTimeout := context.WithTimeout(c, time.Hour)
	defer cancelTimeout()
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	direct := make(chan struct{})
	c.AfterFunc(func() { close(direct) })
	require.NoError(t, child.Err())

	c.end()
	closedWithin(t, early, "Done asked for before the end")
	closedWithin(t, c.Done(), "Done asked for after the end")
	require.ErrorIs(t, c.Err(), context.Canceled)
	require.ErrorIs(t, context.Cause(c), context.Canceled)
	closedWithin(t, child.Done(), "a context.WithCancel child")
	require.ErrorIs(t, child.Err(), context.Canceled)
	closedWithin(t, timeout.Done(), "a context.WithTimeout child")
	require.ErrorIs(t, timeout.Err(), context.Canceled, "the child ended by its parent, not its deadline")
	closedWithin(t, ran, "a context.AfterFunc callback")
	closedWithin(t, direct, "an AfterFunc callback")
	c.end() // a second end changes nothing
	require.ErrorIs(t, c.Err(), context.Canceled)
}

// TestRunContextAfterFuncStop: stop keeps a callback from running and says
// so, as context.AfterFunc's stop does; a callback registered after the end
// runs at once.
func TestRunContextAfterFuncStop(t *testing.T) {
	c := &runContext{}
	stopped := make(chan struct{}, 1)
	stop := c.AfterFunc(func() { stopped <- struct{}{} })
	kept := make(chan struct{})
	stopKept := c.AfterFunc(func() { close(kept) })
	require.True(t, stop(), "stop before the end stops the callback")
	require.False(t, stop(), "a second stop has nothing left to stop")

	c.end()
	closedWithin(t, kept, "the callback not stopped")
	require.False(t, stopKept(), "stop after the end: the callback ran")
	select {
	case <-stopped:
		t.Fatal("a stopped callback ran")
	case <-time.After(50 * time.Millisecond):
	}

	late := make(chan struct{})
	stopLate := c.AfterFunc(func() { close(late) })
	closedWithin(t, late, "a callback registered after the end")
	require.False(t, stopLate())
}

// TestRunContextForgetsEndedChildren: a child context cancelled on its own
// (a health check's probe, a codependent step's group) leaves no callback
// behind, so a long-running container does not collect them.
func TestRunContextForgetsEndedChildren(t *testing.T) {
	c := &runContext{}
	for range 100 {
		child, cancel := context.WithTimeout(c, time.Hour)
		require.NoError(t, child.Err())
		cancel()
	}
	stop := context.AfterFunc(c, func() {})
	stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.funcs)
}
