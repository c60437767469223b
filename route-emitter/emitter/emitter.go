package emitter

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/route-emitter/routingtable"
)

// Subjects gorouter listens on.
const (
	RegisterSubject   = "router.register"
	UnregisterSubject = "router.unregister"
)

// Defaults of the unregistration re-sends, as Diego's.
const (
	DefaultUnregisterInterval = 30 * time.Second
	DefaultUnregisterCount    = 20
)

// Publisher sends one NATS message; *nats.Conn is one. Publish must not
// block for long (nats.Conn buffers while reconnecting) and be safe for
// concurrent use.
type Publisher interface {
	Publish(subject string, data []byte) error
}

// Options configure an [Emitter].
type Options struct {
	// Publisher sends the messages; required.
	Publisher Publisher
	// Metrics; default unregistered metrics.
	Metrics *Metrics
	// Logger; default a logger with no sinks.
	Logger lager.Logger
	// Clock drives the re-sends; default the real clock.
	Clock clock.Clock
	// UnregisterInterval is the time between re-sends of an unregister (default 30 s).
	UnregisterInterval time.Duration
	// UnregisterCount is how many times in all an unregister is sent (default 20).
	UnregisterCount int
}

// Emitter publishes registry messages. Safe for concurrent use; its Run
// re-sends cached unregisters.
type Emitter struct {
	opts   Options
	logger lager.Logger

	mu      sync.Mutex
	pending map[routingtable.MessageKey]*pendingUnregister
}

type pendingUnregister struct {
	data []byte
	sent int
}

var _ ifrit.Runner = (*Emitter)(nil)

// New returns an emitter.
func New(opts Options) *Emitter {
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("emitter")
	}
	if opts.Clock == nil {
		opts.Clock = clock.NewClock()
	}
	if opts.UnregisterInterval <= 0 {
		opts.UnregisterInterval = DefaultUnregisterInterval
	}
	if opts.UnregisterCount <= 0 {
		opts.UnregisterCount = DefaultUnregisterCount
	}
	return &Emitter{opts: opts, logger: opts.Logger.Session("nats-emitter"), pending: make(map[routingtable.MessageKey]*pendingUnregister)}
}

// Emit publishes a table change: unregistrations first (each remembered for
// re-sending), then registrations (each cancelling a pending re-send of the
// same URI and address). It publishes every message even when some fail and
// returns the failures joined.
func (e *Emitter) Emit(msgs routingtable.Messages) error {
	var errs []error
	for i := range msgs.Unregistrations {
		m := &msgs.Unregistrations[i]
		data, err := json.Marshal(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("encoding unregister %v: %w", m.Key(), err))
			continue
		}
		e.mu.Lock()
		e.pending[m.Key()] = &pendingUnregister{data: data, sent: 1}
		e.mu.Unlock()
		errs = append(errs, e.publish(UnregisterSubject, data))
	}
	e.opts.Metrics.RoutesUnregistered.Add(float64(len(msgs.Unregistrations)))
	errs = append(errs, e.register(msgs.Registrations, e.opts.Metrics.RoutesRegistered))
	return errors.Join(errs...)
}

// Broadcast re-publishes registrations (the periodic heartbeat that keeps
// gorouter's TTLs fresh).
func (e *Emitter) Broadcast(regs []routingtable.RegistryMessage) error {
	return e.register(regs, e.opts.Metrics.RoutesSynced)
}

func (e *Emitter) register(regs []routingtable.RegistryMessage, counter interface{ Add(float64) }) error {
	var errs []error
	e.mu.Lock()
	if len(e.pending) > 0 {
		for i := range regs {
			delete(e.pending, regs[i].Key())
		}
	}
	e.mu.Unlock()
	for i := range regs {
		data, err := json.Marshal(&regs[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("encoding register %v: %w", regs[i].Key(), err))
			continue
		}
		if err := e.publish(RegisterSubject, data); err != nil {
			errs = append(errs, err)
			if len(errs) > 10 {
				errs = append(errs, fmt.Errorf("giving up after %d of %d registrations", i+1, len(regs)))
				break
			}
		}
	}
	counter.Add(float64(len(regs)))
	return errors.Join(errs...)
}

func (e *Emitter) publish(subject string, data []byte) error {
	if err := e.opts.Publisher.Publish(subject, data); err != nil {
		return fmt.Errorf("publishing to %s: %w", subject, err)
	}
	e.opts.Metrics.MessagesEmitted.WithLabelValues(subject).Inc()
	return nil
}

// PendingUnregisters is how many unregisters wait for a re-send.
func (e *Emitter) PendingUnregisters() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pending)
}

// ResendUnregisters sends every pending unregister once more and forgets
// those sent UnregisterCount times. Run calls it every UnregisterInterval.
func (e *Emitter) ResendUnregisters() error {
	e.mu.Lock()
	batch := make([][]byte, 0, len(e.pending))
	for k, p := range e.pending {
		batch = append(batch, p.data)
		p.sent++
		if p.sent >= e.opts.UnregisterCount {
			delete(e.pending, k)
		}
	}
	e.mu.Unlock()
	var errs []error
	for _, data := range batch {
		if err := e.publish(UnregisterSubject, data); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run re-sends pending unregisters every UnregisterInterval until signalled.
func (e *Emitter) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ticker := e.opts.Clock.NewTicker(e.opts.UnregisterInterval)
	defer ticker.Stop()
	close(ready)
	for {
		select {
		case <-signals:
			return nil
		case <-ticker.C():
			if err := e.ResendUnregisters(); err != nil {
				e.logger.Error("resending-unregisters", err)
			}
		}
	}
}
