package locket

import (
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tedsuo/ifrit"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Record is the value of a lock: who holds it and what it advertises (the
// auctioneer puts its address here). It is stored as JSON.
type Record struct {
	// Owner identifies the holder (an instance id); a holder restarted with
	// the same owner takes its lock back at once.
	Owner string `json:"owner"`
	// Value is opaque to locket (JSON-encoded as base64).
	Value []byte `json:"value,omitempty"`
}

// LockOptions configure a [Lock].
type LockOptions struct {
	// Client is the etcd client; used when Backend is nil.
	Client *clientv3.Client
	// Backend overrides the etcd backend built from Client.
	Backend Backend
	// KeyPrefix is the key root; default DefaultKeyPrefix ("/gavel/v1/").
	KeyPrefix string
	// Name is the lock's name ("bbs", "auctioneer"); required.
	Name string
	// Owner identifies this holder; required.
	Owner string
	// Value is stored in the lock's Record.
	Value []byte
	// TTL is the lease time to live, rounded up to whole seconds; default 15 s.
	TTL time.Duration
	// RetryInterval is how often acquisition is retried when no release is
	// seen; default 5 s.
	RetryInterval time.Duration
	// Clock drives the retry interval; default the real clock.
	Clock clock.Clock
	// Logger; default a logger with no sinks.
	Logger lager.Logger
	// OnAcquired, if set, is called once the lock is held, before ready is
	// closed.
	OnAcquired func()
	// OnLost, if set, is called when a held lock is lost, before Run
	// returns ErrLockLost.
	OnLost func()
	// HeldGauge, if set, is 1 while the lock is held and 0 otherwise.
	HeldGauge prometheus.Gauge
}

// Lock is an ifrit runner holding a named lock; see the package doc.
type Lock struct {
	opts    LockOptions
	key     string
	backend Backend
	logger  lager.Logger
	held    atomic.Bool
}

var _ ifrit.Runner = (*Lock)(nil)

// NewLock returns a lock runner. It does no I/O; Run reports bad options.
func NewLock(opts LockOptions) *Lock {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = DefaultRetryInterval
	}
	if opts.Clock == nil {
		opts.Clock = clock.NewClock()
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("locket")
	}
	l := &Lock{
		opts:   opts,
		key:    LockKey(opts.KeyPrefix, opts.Name),
		logger: opts.Logger.Session("lock", lager.Data{"name": opts.Name, "owner": opts.Owner}),
	}
	l.backend = opts.Backend
	if l.backend == nil && opts.Client != nil {
		l.backend = NewEtcdBackend(opts.Client, l.logger)
	}
	return l
}

// Held reports whether the lock is currently held.
func (l *Lock) Held() bool { return l.held.Load() }

func (l *Lock) setHeld(v bool) {
	l.held.Store(v)
	if l.opts.HeldGauge != nil {
		if v {
			l.opts.HeldGauge.Set(1)
		} else {
			l.opts.HeldGauge.Set(0)
		}
	}
}

// Run blocks until the lock is acquired, closes ready and keeps it. It
// returns an error wrapping ErrLockLost when the lock is lost, and nil after
// releasing the lock on a signal (also when signalled before acquiring).
func (l *Lock) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if l.opts.Name == "" || l.opts.Owner == "" {
		return fmt.Errorf("locket: lock needs a name and an owner (name %q, owner %q)", l.opts.Name, l.opts.Owner)
	}
	if l.backend == nil {
		return fmt.Errorf("locket: lock %q has neither a client nor a backend", l.opts.Name)
	}
	value, err := json.Marshal(Record{Owner: l.opts.Owner, Value: l.opts.Value})
	if err != nil {
		return fmt.Errorf("locket: encoding lock %q: %w", l.opts.Name, err)
	}
	owner := l.opts.Owner
	a := &acquirer{
		backend: l.backend,
		req: AcquireRequest{
			Key:   l.key,
			Value: value,
			TTL:   l.opts.TTL,
			CanReplace: func(current []byte) bool {
				var r Record
				return json.Unmarshal(current, &r) == nil && r.Owner == owner
			},
		},
		clock:  l.opts.Clock,
		retry:  l.opts.RetryInterval,
		logger: l.logger,
	}

	ctx, cancel := signalContext(signals)
	defer cancel()
	l.setHeld(false)
	l.logger.Info("acquiring", lager.Data{"key": l.key, "ttl": l.opts.TTL.String()})
	lease := a.acquire(ctx)
	if lease == nil {
		l.logger.Info("signalled-before-acquiring")
		return nil
	}
	l.setHeld(true)
	l.logger.Info("acquired", lager.Data{"key": l.key})
	if l.opts.OnAcquired != nil {
		l.opts.OnAcquired()
	}
	close(ready)

	select {
	case <-lease.Lost():
		l.setHeld(false)
		err := lease.Err()
		l.logger.Error("lost", err)
		release(lease, l.logger)
		if l.opts.OnLost != nil {
			l.opts.OnLost()
		}
		return fmt.Errorf("%w: %q: %v", ErrLockLost, l.opts.Name, err)
	case <-ctx.Done():
		l.logger.Info("releasing")
		release(lease, l.logger)
		l.setHeld(false)
		l.logger.Info("released")
		return nil
	}
}
