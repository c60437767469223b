package executor

import "sync"

// Event is a lifecycle event of a container. The concrete types are
// ContainerReserved, ContainerRunning, ContainerRoutableChanged,
// ContainerCompleted and ContainerReservationExpired; each carries a snapshot
// of the container taken when the event happened.
type Event interface {
	// Snapshot returns the container as it was when the event happened.
	Snapshot() Container
	isEvent()
}

// ContainerReserved is emitted by Allocate for each reservation.
type ContainerReserved struct{ Container Container }

// ContainerRunning is emitted when a container becomes running; NetInfo and
// Routable are set.
type ContainerRunning struct{ Container Container }

// ContainerRoutableChanged is emitted when a running container's readiness flips.
type ContainerRoutableChanged struct{ Container Container }

// ContainerCompleted is emitted when a container completes; RunResult is set.
type ContainerCompleted struct{ Container Container }

// ContainerReservationExpired is emitted when a reservation that was never run
// is removed; its resources are back.
type ContainerReservationExpired struct{ Container Container }

// Snapshot returns the container.
func (e ContainerReserved) Snapshot() Container { return e.Container }

// Snapshot returns the container.
func (e ContainerRunning) Snapshot() Container { return e.Container }

// Snapshot returns the container.
func (e ContainerRoutableChanged) Snapshot() Container { return e.Container }

// Snapshot returns the container.
func (e ContainerCompleted) Snapshot() Container { return e.Container }

// Snapshot returns the container.
func (e ContainerReservationExpired) Snapshot() Container { return e.Container }

func (ContainerReserved) isEvent()           {}
func (ContainerRunning) isEvent()            {}
func (ContainerRoutableChanged) isEvent()    {}
func (ContainerCompleted) isEvent()          {}
func (ContainerReservationExpired) isEvent() {}

// Subscription receives every event emitted after Subscribe, in order. Its
// queue is unbounded, so a slow reader never blocks the executor nor loses
// events; it must Close the subscription when done.
type Subscription struct {
	hub *hub
	out chan Event

	mu     sync.Mutex
	queue  []Event
	signal chan struct{}
	closed chan struct{}
	once   sync.Once
}

// Events returns the channel of events; it is closed by Close.
func (s *Subscription) Events() <-chan Event { return s.out }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.hub.remove(s)
		close(s.closed)
	})
}

func (s *Subscription) push(e Event) {
	s.mu.Lock()
	s.queue = append(s.queue, e)
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *Subscription) pump() {
	defer close(s.out)
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, e := range batch {
			select {
			case s.out <- e:
			case <-s.closed:
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-s.signal:
		case <-s.closed:
			return
		}
	}
}

type hub struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

func newHub() *hub { return &hub{subs: map[*Subscription]struct{}{}} }

func (h *hub) subscribe() *Subscription {
	s := &Subscription{hub: h, out: make(chan Event), signal: make(chan struct{}, 1), closed: make(chan struct{})}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go s.pump()
	return s
}

func (h *hub) remove(s *Subscription) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

func (h *hub) emit(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.push(e)
	}
}
