package executor

import (
	"context"
	"sync"
	"time"
)

// runContext is the context a container's work runs under. It ends when the
// container is stopped or its work ends, and when the executor closes or
// detaches (endRuns). A cell holds one per running container for the
// container's whole life, so it is leaner than a context.WithCancel child of
// the executor's context:
//   - it joins no parent's map of children (the executor ends its runs itself);
//   - it makes its Done channel only when someone asks for it;
//   - it keeps AfterFunc callbacks in a slice, so context.AfterFunc and the
//     children context.WithCancel makes of it cost an entry each, not a child
//     context with its own map and channel (see the afterFuncer interface of
//     package context).
//
// It carries no values and no deadline: the executor's context has none.
type runContext struct {
	mu     sync.Mutex
	done   chan struct{} // made by Done, closed by end
	err    error
	nextID uint64
	funcs  []runCallback
}

// runCallback is a function to run when a runContext ends.
type runCallback struct {
	id uint64
	f  func()
}

var _ context.Context = (*runContext)(nil)

// Deadline reports no deadline.
func (c *runContext) Deadline() (time.Time, bool) { return time.Time{}, false }

// Value is nil for every key.
func (c *runContext) Value(any) any { return nil }

// Err is context.Canceled once c has ended, else nil.
func (c *runContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed once c has ended.
func (c *runContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

// String names the context in panics and logs.
func (c *runContext) String() string { return "executor.runContext" }

// AfterFunc arranges for f to run in its own goroutine once c ends (at once
// when it has ended). stop unregisters f; it reports whether it stopped f
// from being run, as context.AfterFunc's does.
func (c *runContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.nextID++
	id := c.nextID
	c.funcs = append(c.funcs, runCallback{id: id, f: f})
	c.mu.Unlock()
	return func() bool { return c.unregister(id) }
}

// unregister removes callback id; false when c has ended (the callback ran
// or is running) or id was removed before.
func (c *runContext) unregister(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, cb := range c.funcs {
		if cb.id == id {
			last := len(c.funcs) - 1
			c.funcs[i] = c.funcs[last]
			c.funcs[last] = runCallback{}
			c.funcs = c.funcs[:last]
			return true
		}
	}
	return false
}

// end ends c: Err becomes context.Canceled, Done is closed and every
// callback starts. Ending an ended context does nothing.
func (c *runContext) end() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
	funcs := c.funcs
	c.funcs = nil
	c.mu.Unlock()
	for _, cb := range funcs {
		go cb.f()
	}
}
