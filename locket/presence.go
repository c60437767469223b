package locket

import (
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

// PresenceOptions configure a [Presence].
type PresenceOptions struct {
	// Client is the etcd client; used when Backend is nil.
	Client *clientv3.Client
	// Backend overrides the etcd backend built from Client.
	Backend Backend
	// KeyPrefix is the key root; default DefaultKeyPrefix ("/gavel/v1/").
	KeyPrefix string
	// Name is the cell id; required.
	Name string
	// Owner identifies this registration in logs (a random id per start,
	// as in Diego); required.
	Owner string
	// Value is stored as is (the rep stores a protobuf CellPresence).
	Value []byte
	// TTL is the lease time to live, rounded up to whole seconds; default 15 s.
	TTL time.Duration
	// RetryInterval is how often registration is retried; default 5 s.
	RetryInterval time.Duration
	// Clock drives the retry interval; default the real clock.
	Clock clock.Clock
	// Logger; default a logger with no sinks.
	Logger lager.Logger
	// HeldGauge, if set, is 1 while the presence is registered, else 0.
	HeldGauge prometheus.Gauge
}

// Presence is an ifrit runner keeping a cell's presence registered; see the
// package doc.
type Presence struct {
	opts       PresenceOptions
	key        string
	backend    Backend
	logger     lager.Logger
	registered atomic.Bool
}

var _ ifrit.Runner = (*Presence)(nil)

// NewPresence returns a presence runner. It does no I/O; Run reports bad
// options.
func NewPresence(opts PresenceOptions) *Presence {
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
	p := &Presence{
		opts:   opts,
		key:    PresenceKey(opts.KeyPrefix, opts.Name),
		logger: opts.Logger.Session("presence", lager.Data{"cell-id": opts.Name, "owner": opts.Owner}),
	}
	p.backend = opts.Backend
	if p.backend == nil && opts.Client != nil {
		p.backend = NewEtcdBackend(opts.Client, p.logger)
	}
	return p
}

// Registered reports whether the presence is currently registered.
func (p *Presence) Registered() bool { return p.registered.Load() }

func (p *Presence) setRegistered(v bool) {
	p.registered.Store(v)
	if p.opts.HeldGauge != nil {
		if v {
			p.opts.HeldGauge.Set(1)
		} else {
			p.opts.HeldGauge.Set(0)
		}
	}
}

// Run registers the presence, closes ready after the first registration,
// and keeps it registered: when it is lost it registers again, retrying
// every RetryInterval (also while another owner holds the cell id). On a
// signal it deregisters and returns nil.
func (p *Presence) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if p.opts.Name == "" || p.opts.Owner == "" {
		return fmt.Errorf("locket: presence needs a cell id and an owner (cell id %q, owner %q)", p.opts.Name, p.opts.Owner)
	}
	if p.backend == nil {
		return fmt.Errorf("locket: presence %q has neither a client nor a backend", p.opts.Name)
	}
	a := &acquirer{
		backend: p.backend,
		req:     AcquireRequest{Key: p.key, Value: p.opts.Value, TTL: p.opts.TTL},
		clock:   p.opts.Clock,
		retry:   p.opts.RetryInterval,
		logger:  p.logger,
	}
	ctx, cancel := signalContext(signals)
	defer cancel()

	p.setRegistered(false)
	p.logger.Info("registering", lager.Data{"key": p.key, "ttl": p.opts.TTL.String()})
	first := true
	for {
		lease := a.acquire(ctx)
		if lease == nil {
			p.logger.Info("signalled-before-registering")
			return nil
		}
		p.setRegistered(true)
		p.logger.Info("registered")
		if first {
			close(ready)
			first = false
		}
		select {
		case <-lease.Lost():
			p.setRegistered(false)
			p.logger.Error("lost", lease.Err())
			release(lease, p.logger)
		case <-ctx.Done():
			p.logger.Info("deregistering")
			release(lease, p.logger)
			p.setRegistered(false)
			p.logger.Info("deregistered")
			return nil
		}
	}
}
