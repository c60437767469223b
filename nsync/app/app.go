package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/locket"
	"github.com/gavelhq/gavel/nsync/bulker"
	"github.com/gavelhq/gavel/nsync/listener"
	"github.com/gavelhq/gavel/nsync/recipe"
)

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func (c Config) recipe() recipe.Config {
	return recipe.Config{FileServerURL: c.FileServerURL, LifecycleBundles: c.LifecycleBundles, MaxInstances: c.MaxInstances, Privileged: c.Privileged}
}

func (c Config) bbsClient(logger lager.Logger) (*client.Client, error) {
	var bbsTLS *tls.Config
	if c.InsecurePlaintext {
		logger.Info("bbs-without-tls", lager.Data{"warning": "insecure_plaintext: the calls to the BBS are plaintext; only for development"})
	} else {
		var err error
		if bbsTLS, err = c.BBSTLS.Client(""); err != nil {
			return nil, fmt.Errorf("bbs_tls: %w", err)
		}
	}
	return client.New(client.Config{Addresses: c.BBSAddresses, TLS: bbsTLS})
}

// Listener is the nsync-listener daemon.
type Listener struct {
	cfg      Config
	logger   lager.Logger
	registry *prometheus.Registry
	metrics  *listener.Metrics
	addr     atomic.Pointer[string]
	debug    *debugserver.Server
}

// NewListener builds a listener from a config that passed ValidateListener.
func NewListener(cfg Config, logger lager.Logger) *Listener {
	reg := newRegistry()
	return &Listener{cfg: cfg, logger: logger, registry: reg, metrics: listener.NewMetrics(reg)}
}

// Registry is the listener's Prometheus registry.
func (l *Listener) Registry() *prometheus.Registry { return l.registry }

// Addr is the HTTP address once the listener serves ("" before).
func (l *Listener) Addr() string {
	if a := l.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Runner returns the debug server (when set) and the HTTP server as one ordered group.
func (l *Listener) Runner() ifrit.Runner {
	var members grouper.Members
	if l.cfg.DebugAddress != "" {
		l.debug = debugserver.New(l.cfg.DebugAddress, l.registry, l.logger)
		members = append(members, grouper.Member{Name: "debug", Runner: l.debug})
	}
	members = append(members, grouper.Member{Name: "listener", Runner: ifrit.RunFunc(l.run)})
	return grouper.NewOrdered(os.Interrupt, members)
}

func (l *Listener) run(signals <-chan os.Signal, ready chan<- struct{}) error {
	bbs, err := l.cfg.bbsClient(l.logger)
	if err != nil {
		return fmt.Errorf("nsync listener: %w", err)
	}
	defer func() { _ = bbs.Close() }()
	ln, err := net.Listen("tcp", l.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen_address: %w", err)
	}
	a := ln.Addr().String()
	l.addr.Store(&a)
	h := listener.New(bbs, l.cfg.recipe(), l.cfg.MaxConcurrentRequests, l.metrics, l.logger.Session("listener"))
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	l.logger.Info("listening", lager.Data{"address": a})
	close(ready)
	select {
	case <-signals:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	case err := <-errc:
		return fmt.Errorf("nsync listener: %w", err)
	}
}

// Bulker is the nsync-bulker daemon.
type Bulker struct {
	cfg       Config
	logger    lager.Logger
	registry  *prometheus.Registry
	metrics   *bulker.Metrics
	lockGauge prometheus.Gauge
	debug     *debugserver.Server
}

// NewBulker builds a bulker from a config that passed ValidateBulker.
func NewBulker(cfg Config, logger lager.Logger) *Bulker {
	reg := newRegistry()
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "gavel_nsync_bulker_lock_held", Help: "1 while this bulker holds the nsync_bulker lock."})
	reg.MustRegister(gauge)
	return &Bulker{cfg: cfg, logger: logger, registry: reg, metrics: bulker.NewMetrics(reg), lockGauge: gauge}
}

// Registry is the bulker's Prometheus registry.
func (b *Bulker) Registry() *prometheus.Registry { return b.registry }

// Runner returns the debug server (when set), the nsync_bulker lock (unless
// disabled) and the sync loop as one ordered group; losing the lock ends it.
func (b *Bulker) Runner() ifrit.Runner {
	var members grouper.Members
	if b.cfg.DebugAddress != "" {
		b.debug = debugserver.New(b.cfg.DebugAddress, b.registry, b.logger)
		members = append(members, grouper.Member{Name: "debug", Runner: b.debug})
	}
	if !b.cfg.DisableLock {
		members = append(members, grouper.Member{Name: "lock", Runner: ifrit.RunFunc(b.runLock)})
	}
	members = append(members, grouper.Member{Name: "bulker", Runner: ifrit.RunFunc(b.run)})
	return grouper.NewOrdered(os.Interrupt, members)
}

func (b *Bulker) runLock(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.CommunicationTimeout.D())
	etcd, err := etcdclient.Dial(ctx, b.cfg.Etcd)
	cancel()
	if err != nil {
		return fmt.Errorf("nsync_bulker lock: %w", err)
	}
	defer func() { _ = etcd.Close() }()
	lock := locket.NewLock(locket.LockOptions{
		Client: etcd, KeyPrefix: b.cfg.KeyPrefix, Name: LockName, Owner: b.cfg.InstanceID,
		TTL: b.cfg.LockTTL.D(), RetryInterval: b.cfg.LockRetryInterval.D(),
		Logger: b.logger, HeldGauge: b.lockGauge,
	})
	return lock.Run(signals, ready)
}

func (b *Bulker) run(signals <-chan os.Signal, ready chan<- struct{}) error {
	bbs, err := b.cfg.bbsClient(b.logger)
	if err != nil {
		return fmt.Errorf("nsync bulker: %w", err)
	}
	defer func() { _ = bbs.Close() }()
	if b.cfg.ControllerURL == "" {
		return errors.New("controller_url: is required")
	}
	bk := bulker.New(bulker.Config{
		ControllerURL: b.cfg.ControllerURL, ControllerUser: b.cfg.ControllerUsername, ControllerPassword: b.cfg.ControllerPassword,
		HTTPClient: &http.Client{Timeout: b.cfg.CommunicationTimeout.D()},
		PageSize:   b.cfg.PageSize, Workers: b.cfg.Workers, DomainTTL: b.cfg.DomainTTL.D(), PollInterval: b.cfg.PollInterval.D(),
		Recipe: b.cfg.recipe(),
	}, bbs, b.metrics, b.logger.Session("bulker"))
	return bk.Run(signals, ready)
}
