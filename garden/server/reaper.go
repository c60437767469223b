package server

import (
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
)

// reaper destroys containers idle past their grace time (upstream's
// "bomberman"). Requests naming a container pause its timer; the last one
// to end restarts it from the full grace time.
type reaper struct {
	clock   clock.Clock
	destroy func(handle string)

	mu      sync.Mutex
	entries map[string]*reapEntry
	stopped bool
}

type reapEntry struct {
	grace  time.Duration
	uses   int
	timer  clock.Timer   // the running timer; nil when none
	cancel chan struct{} // closes to end the running timer's goroutine
}

func newReaper(c clock.Clock, destroy func(string)) *reaper {
	return &reaper{clock: c, destroy: destroy, entries: map[string]*reapEntry{}}
}

// arm sets a container's grace time (0: never reap) and restarts its timer
// unless the container is in use.
func (r *reaper) arm(handle string, grace time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[handle]
	if e == nil {
		e = &reapEntry{}
		r.entries[handle] = e
	}
	r.stopTimerLocked(e)
	e.grace = grace
	if e.uses == 0 {
		r.startTimerLocked(handle, e)
	}
}

// pause stops a container's timer until the matching resume.
func (r *reaper) pause(handle string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[handle]; e != nil {
		e.uses++
		r.stopTimerLocked(e)
	}
}

// resume restarts the timer when the last user is done.
func (r *reaper) resume(handle string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[handle]
	if e == nil || e.uses == 0 {
		return
	}
	e.uses--
	if e.uses == 0 {
		r.startTimerLocked(handle, e)
	}
}

// forget drops a destroyed container.
func (r *reaper) forget(handle string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[handle]; e != nil {
		r.stopTimerLocked(e)
		delete(r.entries, handle)
	}
}

// stopAll stops every timer; arming after it does nothing.
func (r *reaper) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	for _, e := range r.entries {
		r.stopTimerLocked(e)
	}
}

func (r *reaper) stopTimerLocked(e *reapEntry) {
	if e.timer != nil {
		e.timer.Stop()
		close(e.cancel)
		e.timer, e.cancel = nil, nil
	}
}

func (r *reaper) startTimerLocked(handle string, e *reapEntry) {
	if e.grace <= 0 || r.stopped {
		return
	}
	cancel := make(chan struct{})
	t := r.clock.NewTimer(e.grace)
	e.timer, e.cancel = t, cancel
	go func() {
		select {
		case <-cancel:
			return
		case <-t.C():
		}
		r.mu.Lock()
		current := r.entries[handle] == e && e.cancel == cancel
		if current {
			e.timer, e.cancel = nil, nil
			delete(r.entries, handle)
		}
		r.mu.Unlock()
		if current {
			r.destroy(handle)
		}
	}()
}
