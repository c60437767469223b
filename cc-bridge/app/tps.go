package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/cc-bridge/tps"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/grpcclient"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/locket"
)

// tps defaults.
const (
	DefaultTPSListenAddress  = "127.0.0.1:1518"
	DefaultTPSDebugAddress   = "127.0.0.1:17012"
	DefaultWatcherDebugAddr  = "127.0.0.1:17013"
	DefaultLockTTL           = 15 * time.Second
	DefaultLockRetryInterval = 5 * time.Second
	// WatcherLockName is the lock the active tps-watcher holds.
	WatcherLockName = "tps_watcher"
)

// TPSListenerConfig is tps-listener's JSON config file.
type TPSListenerConfig struct {
	Common
	BBSConn
	// RepClientTLS is the client certificate presented to the cells' reps
	// for stats, and the CA their certificates chain to; required unless
	// insecure_plaintext.
	RepClientTLS tlsconfig.Files `json:"rep_client_tls"`
	// MaxInFlightRequests bounds concurrent requests; more are 503 (default 200).
	MaxInFlightRequests int `json:"max_in_flight_requests"`
	// MaxBulkGuids bounds the guids of one bulk status request (default 5000).
	MaxBulkGuids int `json:"max_bulk_guids"`
	// CellTimeout bounds each stats call to a rep (default 5s).
	CellTimeout config.Duration `json:"cell_timeout"`
}

// DefaultTPSListenerConfig returns the defaults.
func DefaultTPSListenerConfig() TPSListenerConfig {
	return TPSListenerConfig{
		Common:              Common{ListenAddress: DefaultTPSListenAddress, DebugAddress: DefaultTPSDebugAddress, LogLevel: "info"},
		BBSConn:             BBSConn{BBSAddresses: []string{DefaultBBSAddress}},
		MaxInFlightRequests: tps.DefaultMaxInFlight,
		MaxBulkGuids:        tps.DefaultMaxBulkGuids,
		CellTimeout:         config.Duration(tps.DefaultCellTimeout),
	}
}

// Validate checks the config without side effects; errors name the field.
func (c TPSListenerConfig) Validate() error {
	var errs []error
	c.Common.validate(&errs)
	c.BBSConn.validate(&errs, tlsconfig.Hop{Field: "rep_client_tls", Files: c.RepClientTLS, Role: tlsconfig.Client})
	if c.MaxInFlightRequests < 1 {
		errs = append(errs, fmt.Errorf("max_in_flight_requests: must be >= 1 (got %d)", c.MaxInFlightRequests))
	}
	if c.MaxBulkGuids < 1 {
		errs = append(errs, fmt.Errorf("max_bulk_guids: must be >= 1 (got %d)", c.MaxBulkGuids))
	}
	positive(&errs, "cell_timeout", c.CellTimeout)
	return errors.Join(errs...)
}

// LoadTPSListener reads a config file over the defaults.
func LoadTPSListener(path string) (TPSListenerConfig, error) {
	cfg := DefaultTPSListenerConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// TPSListener is the tps-listener daemon.
type TPSListener struct {
	daemon
	cfg TPSListenerConfig
}

// NewTPSListener builds the daemon from a validated config.
func NewTPSListener(cfg TPSListenerConfig, logger lager.Logger) *TPSListener {
	return &TPSListener{daemon: newDaemon("tps-listener", cfg.Common, logger), cfg: cfg}
}

// Runner serves the tps API (after the debug server).
func (l *TPSListener) Runner() ifrit.Runner {
	var bbs *client.Client
	var pool *grpcclient.Pool
	api := l.serve(func() (http.Handler, error) {
		var err error
		if bbs, err = l.cfg.bbsClient(l.logger); err != nil {
			return nil, err
		}
		var repTLS *tls.Config
		if !l.cfg.InsecurePlaintext {
			if repTLS, err = l.cfg.RepClientTLS.Client(""); err != nil {
				return nil, fmt.Errorf("rep_client_tls: %w", err)
			}
		}
		pool = grpcclient.NewPool(repTLS)
		return tps.NewListener(tps.ListenerOptions{
			BBS: bbs, Cells: pool, MaxInFlight: l.cfg.MaxInFlightRequests, MaxBulkGuids: l.cfg.MaxBulkGuids,
			CellTimeout: l.cfg.CellTimeout.D(), Registry: l.registry, Logger: l.logger,
		}).Handler(), nil
	})
	closer := grouper.Member{Name: "clients", Runner: ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		close(ready)
		<-signals
		if pool != nil {
			pool.Close()
		}
		if bbs != nil {
			_ = bbs.Close()
		}
		return nil
	})}
	return l.members(closer, api)
}

// TPSWatcherConfig is tps-watcher's JSON config file.
type TPSWatcherConfig struct {
	BBSConn
	CCConn
	// Domain is the domain whose instances are reported (default cf-apps).
	Domain string `json:"domain"`
	// Workers is how many callbacks run at once (default 50).
	Workers int `json:"workers"`
	// QueueSize bounds the callbacks waiting for a worker (default 10000).
	QueueSize int `json:"queue_size"`
	// CallbackAttempts is how often a callback is tried (default 3).
	CallbackAttempts int `json:"callback_attempts"`
	// CallbackTimeout bounds one callback (default 5s).
	CallbackTimeout config.Duration `json:"callback_timeout"`
	// InstanceID names this watcher in the lock (default hostname-pid).
	InstanceID string `json:"instance_id"`
	// KeyPrefix is the root of Gavel's etcd keys (default /gavel/v1/).
	KeyPrefix string `json:"key_prefix"`
	// Etcd is where the tps_watcher lock lives; required unless disable_lock.
	Etcd etcdclient.Config `json:"etcd"`
	// DisableLock runs without the lock: only for a single watcher (gavel dev).
	DisableLock bool `json:"disable_lock"`
	// LockTTL is the lock's lease (default 15s).
	LockTTL config.Duration `json:"lock_ttl"`
	// LockRetryInterval is how often a standby watcher retries the lock (default 5s).
	LockRetryInterval config.Duration `json:"lock_retry_interval"`
	// DebugAddress serves /metrics and /debug/pprof (default 127.0.0.1:17013; empty disables).
	DebugAddress string `json:"debug_address"`
	// LogLevel is debug, info, error or fatal (default info).
	LogLevel string `json:"log_level"`
}

// DefaultTPSWatcherConfig returns the defaults.
func DefaultTPSWatcherConfig() TPSWatcherConfig {
	host, _ := os.Hostname()
	return TPSWatcherConfig{
		BBSConn: BBSConn{BBSAddresses: []string{DefaultBBSAddress}}, Domain: tps.DefaultDomain,
		Workers: tps.DefaultWorkers, QueueSize: tps.DefaultQueueSize, CallbackAttempts: tps.DefaultAttempts,
		CallbackTimeout: config.Duration(tps.DefaultCallbackTimeout), InstanceID: fmt.Sprintf("%s-%d", host, os.Getpid()),
		LockTTL: config.Duration(DefaultLockTTL), LockRetryInterval: config.Duration(DefaultLockRetryInterval),
		DebugAddress: DefaultWatcherDebugAddr, LogLevel: "info",
	}
}

// Validate checks the config without side effects; errors name the field.
func (c TPSWatcherConfig) Validate() error {
	var errs []error
	c.BBSConn.validate(&errs)
	c.CCConn.validate(&errs, true)
	if c.Domain == "" {
		errs = append(errs, errors.New("domain: is required"))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"workers", c.Workers}, {"queue_size", c.QueueSize}, {"callback_attempts", c.CallbackAttempts}} {
		if f.v < 1 {
			errs = append(errs, fmt.Errorf("%s: must be >= 1 (got %d)", f.name, f.v))
		}
	}
	positive(&errs, "callback_timeout", c.CallbackTimeout)
	if !c.DisableLock {
		if len(c.Etcd.Endpoints) == 0 {
			errs = append(errs, errors.New("etcd.endpoints: required for the tps_watcher lock (or disable_lock for a single watcher)"))
		}
		if c.InstanceID == "" {
			errs = append(errs, errors.New("instance_id: is required"))
		}
		if c.LockTTL.D() < time.Second {
			errs = append(errs, fmt.Errorf("lock_ttl: must be at least 1s (got %s)", c.LockTTL))
		}
		positive(&errs, "lock_retry_interval", c.LockRetryInterval)
	}
	return errors.Join(errs...)
}

// LoadTPSWatcher reads a config file over the defaults.
func LoadTPSWatcher(path string) (TPSWatcherConfig, error) {
	cfg := DefaultTPSWatcherConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// TPSWatcher is the tps-watcher daemon.
type TPSWatcher struct {
	daemon
	cfg       TPSWatcherConfig
	lockGauge prometheus.Gauge
}

// NewTPSWatcher builds the daemon from a validated config.
func NewTPSWatcher(cfg TPSWatcherConfig, logger lager.Logger) *TPSWatcher {
	w := &TPSWatcher{daemon: newDaemon("tps-watcher", Common{DebugAddress: cfg.DebugAddress}, logger), cfg: cfg}
	w.lockGauge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "gavel_tps_watcher_lock_held", Help: "1 while this watcher holds the tps_watcher lock."})
	w.registry.MustRegister(w.lockGauge)
	return w
}

// Runner runs, in order: the debug server, the tps_watcher lock (unless
// disabled), then the watcher. Losing the lock ends the group with an error.
func (w *TPSWatcher) Runner() ifrit.Runner {
	var members grouper.Members
	if !w.cfg.DisableLock {
		members = append(members, grouper.Member{Name: "lock", Runner: ifrit.RunFunc(w.runLock)})
	}
	members = append(members, grouper.Member{Name: "watcher", Runner: ifrit.RunFunc(w.runWatcher)})
	return w.members(members...)
}

func (w *TPSWatcher) runLock(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	etcd, err := etcdclient.Dial(ctx, w.cfg.Etcd)
	cancel()
	if err != nil {
		return fmt.Errorf("tps_watcher lock: %w", err)
	}
	defer func() { _ = etcd.Close() }()
	lock := locket.NewLock(locket.LockOptions{
		Client: etcd, KeyPrefix: w.cfg.KeyPrefix, Name: WatcherLockName, Owner: w.cfg.InstanceID,
		TTL: w.cfg.LockTTL.D(), RetryInterval: w.cfg.LockRetryInterval.D(), Logger: w.logger, HeldGauge: w.lockGauge,
	})
	return lock.Run(signals, ready)
}

func (w *TPSWatcher) runWatcher(signals <-chan os.Signal, ready chan<- struct{}) error {
	bbs, err := w.cfg.bbsClient(w.logger)
	if err != nil {
		return err
	}
	defer func() { _ = bbs.Close() }()
	cc, err := w.cfg.ccClient()
	if err != nil {
		return err
	}
	watcher := tps.NewWatcher(tps.WatcherOptions{
		BBS: bbs, CCBaseURL: w.cfg.CCBaseURL, CCClient: cc, CCUsername: w.cfg.CCUsername, CCPassword: w.cfg.CCPassword,
		Domain: w.cfg.Domain, Workers: w.cfg.Workers, QueueSize: w.cfg.QueueSize, Attempts: w.cfg.CallbackAttempts,
		CallbackTimeout: w.cfg.CallbackTimeout.D(), Registry: w.registry, Logger: w.logger,
	})
	return watcher.Run(signals, ready)
}
