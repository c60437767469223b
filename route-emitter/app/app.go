package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/locket"
	"github.com/gavelhq/gavel/route-emitter/broadcast"
	"github.com/gavelhq/gavel/route-emitter/emitter"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
	"github.com/gavelhq/gavel/route-emitter/watcher"
)

// RouteEmitter is one route emitter daemon: its runners share the state
// built as they start.
type RouteEmitter struct {
	cfg      Config
	logger   lager.Logger
	registry *prometheus.Registry
	metrics  *emitter.Metrics

	conn      atomic.Pointer[nats.Conn]
	watcher   atomic.Pointer[watcher.Watcher]
	debug     *debugserver.Server
	lockGauge prometheus.Gauge
}

// New builds a route emitter from a validated config.
func New(cfg Config, logger lager.Logger) *RouteEmitter {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gavel_route_emitter_lock_held", Help: "1 while this emitter holds the route_emitter lock.",
	})
	reg.MustRegister(gauge)
	return &RouteEmitter{cfg: cfg, logger: logger, registry: reg, metrics: emitter.NewMetrics(reg), lockGauge: gauge}
}

// Registry is the emitter's Prometheus registry (served on the debug address).
func (e *RouteEmitter) Registry() *prometheus.Registry { return e.registry }

// Metrics are the emitter's route metrics.
func (e *RouteEmitter) Metrics() *emitter.Metrics { return e.metrics }

// DebugAddr is the debug server's bound address once it serves ("" when disabled).
func (e *RouteEmitter) DebugAddr() string {
	if e.debug == nil {
		return ""
	}
	return e.debug.Addr()
}

// Runner returns the daemon as one ordered ifrit group: debug server (when
// an address is set), NATS connection, route_emitter lock (global mode
// unless disabled), then the emitter (unregistration re-sender, watcher,
// broadcast scheduler). Losing the lock ends the group with an error.
func (e *RouteEmitter) Runner() ifrit.Runner {
	var members grouper.Members
	if e.cfg.DebugAddress != "" {
		e.debug = debugserver.NewFromConfig(e.cfg.DebugAddress, e.cfg.DebugTLS, e.registry, e.logger)
		members = append(members, grouper.Member{Name: "debug", Runner: e.debug})
	}
	members = append(members, grouper.Member{Name: "nats", Runner: ifrit.RunFunc(e.runNATS)})
	if e.cfg.Global() && !e.cfg.DisableLock {
		members = append(members, grouper.Member{Name: "lock", Runner: ifrit.RunFunc(e.runLock)})
	}
	members = append(members, grouper.Member{Name: "emitter", Runner: ifrit.RunFunc(e.runEmitter)})
	return grouper.NewOrdered(os.Interrupt, members)
}

// broadcastAll asks the watcher, once it runs, to re-emit the whole table.
func (e *RouteEmitter) broadcastAll() {
	if w := e.watcher.Load(); w != nil {
		w.Broadcast()
	}
}

// natsOptions are the connection's options: credentials, TLS, pings, and
// reconnection forever with exponential back-off and jitter.
func (e *RouteEmitter) natsOptions() ([]nats.Option, error) {
	logger := e.logger.Session("nats")
	base, ceiling := e.cfg.NATSReconnectWait.D(), e.cfg.NATSMaxReconnectWait.D()
	opts := []nats.Option{
		nats.Name("gavel-route-emitter"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.IgnoreAuthErrorAbort(),
		nats.PingInterval(e.cfg.NATSPingInterval.D()),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := base
			for i := 1; i < attempts && d < ceiling; i++ {
				d *= 2
			}
			d = min(d, ceiling)
			return d + time.Duration(rand.Int64N(int64(d)/5+1))
		}),
		nats.ConnectHandler(func(c *nats.Conn) {
			logger.Info("connected", lager.Data{"server": c.ConnectedUrlRedacted()})
			e.broadcastAll()
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			logger.Info("reconnected", lager.Data{"server": c.ConnectedUrlRedacted()})
			e.broadcastAll()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Info("disconnected", lager.Data{"error": fmt.Sprint(err)})
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			logger.Error("async-error", err)
		}),
	}
	if e.cfg.NATSUsername != "" {
		opts = append(opts, nats.UserInfo(e.cfg.NATSUsername, e.cfg.NATSPassword))
	}
	if e.cfg.NATSTLS.Enabled() {
		tc, err := e.cfg.NATSTLS.Client("")
		if err != nil {
			return nil, fmt.Errorf("nats_tls: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// runNATS opens the connection (retrying in the background if no server
// answers yet), closes ready and closes the connection on a signal.
func (e *RouteEmitter) runNATS(signals <-chan os.Signal, ready chan<- struct{}) error {
	opts, err := e.natsOptions()
	if err != nil {
		return err
	}
	conn, err := nats.Connect(strings.Join(e.cfg.NATSURLs, ","), opts...)
	if err != nil {
		return fmt.Errorf("connecting to NATS %s: %w", redact(e.cfg.NATSURLs), err)
	}
	e.conn.Store(conn)
	e.logger.Info("nats-client-started", lager.Data{"servers": redact(e.cfg.NATSURLs), "connected": conn.IsConnected()})
	close(ready)
	<-signals
	if err := conn.FlushTimeout(time.Second); err != nil && conn.IsConnected() {
		e.logger.Error("nats-flush-on-exit", err)
	}
	conn.Close()
	return nil
}

// redact hides passwords in NATS URLs for logs and errors.
func redact(urls []string) string {
	out := make([]string, len(urls))
	for i, u := range urls {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
				out[i] = u[:scheme+3] + "***@" + u[at+1:]
				continue
			}
		}
		out[i] = u
	}
	return strings.Join(out, ",")
}

// runLock holds the route_emitter lock; the group starts the emitter once it is held.
func (e *RouteEmitter) runLock(signals <-chan os.Signal, ready chan<- struct{}) error {
	// With the Consul backend the lock needs no etcd at all.
	var etcd *clientv3.Client
	if e.cfg.Locket.NeedsEtcd() {
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.CommunicationTimeout.D())
		c, err := etcdclient.Dial(ctx, e.cfg.Etcd)
		cancel()
		if err != nil {
			return fmt.Errorf("route_emitter lock: %w", err)
		}
		defer func() { _ = c.Close() }()
		etcd = c
	}
	store, err := locket.Open(e.cfg.Locket, etcd, e.logger)
	if err != nil {
		return fmt.Errorf("route_emitter lock: %w", err)
	}
	lock := locket.NewLock(locket.LockOptions{
		Backend: store, KeyPrefix: e.cfg.KeyPrefix, Name: LockName, Owner: e.cfg.InstanceID,
		TTL: e.cfg.LockTTL.D(), RetryInterval: e.cfg.LockRetryInterval.D(),
		Logger: e.logger, HeldGauge: e.lockGauge,
	})
	return lock.Run(signals, ready)
}

// runEmitter runs the unregistration re-sender, the watcher and the
// broadcast scheduler until a signal.
func (e *RouteEmitter) runEmitter(signals <-chan os.Signal, ready chan<- struct{}) error {
	conn := e.conn.Load()
	var bbsTLS *tls.Config
	if e.cfg.InsecurePlaintext {
		e.logger.Info("bbs-without-tls", lager.Data{"warning": "insecure_plaintext: the calls to the BBS are plaintext; only for development"})
	} else {
		var err error
		if bbsTLS, err = e.cfg.BBSTLS.Client(""); err != nil {
			return fmt.Errorf("bbs_tls: %w", err)
		}
	}
	bbs, err := client.New(client.Config{Addresses: e.cfg.BBSAddresses, TLS: bbsTLS})
	if err != nil {
		return fmt.Errorf("route emitter: %w", err)
	}
	defer func() { _ = bbs.Close() }()

	em := emitter.New(emitter.Options{
		Publisher: conn, Metrics: e.metrics, Logger: e.logger,
		UnregisterInterval: e.cfg.UnregisterInterval.D(), UnregisterCount: e.cfg.UnregisterCount,
	})
	w := watcher.New(watcher.Options{
		BBS: bbs, Emitter: em, CellID: e.cfg.CellID,
		SyncInterval: e.cfg.SyncInterval.D(), CommunicationTimeout: e.cfg.CommunicationTimeout.D(),
		Table: routingtable.Options{
			DirectInstanceRoutes:  e.cfg.DirectInstanceRoutes,
			StaleThresholdSeconds: int(e.cfg.RouteStaleThreshold.D() / time.Second),
		},
		Metrics: e.metrics, Logger: e.logger,
	})
	jitter := e.cfg.JitterFactor
	if jitter == 0 {
		jitter = -1 // the scheduler reads 0 as its default
	}
	sched := broadcast.New(broadcast.Options{
		Conn: conn, Broadcast: w.Broadcast, DefaultInterval: e.cfg.RegisterInterval.D(),
		JitterFactor: jitter, Logger: e.logger,
	})
	e.watcher.Store(w)
	defer e.watcher.Store(nil)
	e.logger.Info("route-emitter-starting", lager.Data{"cell_id": e.cfg.CellID, "bbs": e.cfg.BBSAddresses})
	group := grouper.NewOrdered(os.Interrupt, grouper.Members{
		{Name: "unregistration-resender", Runner: em},
		{Name: "watcher", Runner: w},
		{Name: "broadcast-scheduler", Runner: sched},
	})
	proc := ifrit.Background(group)
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		return fmt.Errorf("route emitter: %w", err)
	case sig := <-signals:
		proc.Signal(sig)
		return <-proc.Wait()
	}
	close(ready)
	select {
	case sig := <-signals:
		proc.Signal(sig)
		return <-proc.Wait()
	case err := <-proc.Wait():
		return fmt.Errorf("route emitter stopped: %w", err)
	}
}
