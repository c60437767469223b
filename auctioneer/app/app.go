package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/auctioneer/auctionrunner"
	"github.com/gavelhq/gavel/auctioneer/server"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/locket"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
)

// LockName is the lock the active auctioneer holds; its value is the
// auctioneer's gRPC address (bbs/auctionrequest reads it).
const LockName = "auctioneer"

// etcdDialTimeout bounds the first connection to etcd.
const etcdDialTimeout = 30 * time.Second

// Auctioneer is one auctioneer daemon: its runners share the state built
// as they start.
type Auctioneer struct {
	cfg      Config
	logger   lager.Logger
	registry *prometheus.Registry
	batch    *auctionrunner.Batch
	metrics  *auctionrunner.Metrics
	lockHeld prometheus.Gauge

	debug *debugserver.Server
	etcd  *clientv3.Client
	// locket is the lock and presence store the config selects.
	locket        locket.Store
	grpc          *grpcserver.Server
	held          atomic.Bool
	scoreFailures *scoreFailures
	ready         chan struct{} // closed when the API serves
}

// New builds an auctioneer from a validated config. It does no I/O.
func New(cfg Config, logger lager.Logger) *Auctioneer {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	held := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gavel_auctioneer_lock_held", Help: "1 while this replica holds the auctioneer lock.",
	})
	reg.MustRegister(held)
	return &Auctioneer{
		cfg: cfg, logger: logger, registry: reg,
		batch:         auctionrunner.NewBatch(),
		metrics:       auctionrunner.NewMetrics(reg),
		lockHeld:      held,
		ready:         make(chan struct{}),
		scoreFailures: newScoreFailures(reg, logger),
	}
}

// Held reports whether this replica holds the auctioneer lock.
func (a *Auctioneer) Held() bool { return a.held.Load() }

// Ready is closed once the gRPC API listens.
func (a *Auctioneer) Ready() <-chan struct{} { return a.ready }

// Addr is the gRPC API's bound address; valid once Ready is closed.
func (a *Auctioneer) Addr() string { return a.grpc.Addr() }

// DebugAddr is the debug server's bound address; valid once Ready is closed.
func (a *Auctioneer) DebugAddr() string { return a.debug.Addr() }

// Gatherer gives the daemon's metrics.
func (a *Auctioneer) Gatherer() prometheus.Gatherer { return a.registry }

// Runner returns the daemon as one ordered ifrit group: debug server, etcd
// client, gRPC API (Unavailable until the lock is held), auctioneer lock,
// auction runner. Call it once.
func (a *Auctioneer) Runner() ifrit.Runner {
	a.debug = debugserver.NewFromConfig(a.cfg.DebugAddress, a.cfg.DebugTLS, a.registry, a.logger)
	return grouper.NewOrdered(os.Interrupt, grouper.Members{
		{Name: "debug", Runner: a.debug},
		{Name: "etcd", Runner: ifrit.RunFunc(a.runEtcd)},
		{Name: "api", Runner: ifrit.RunFunc(a.runAPI)},
		{Name: "lock", Runner: ifrit.RunFunc(a.runLock)},
		{Name: "auction-runner", Runner: ifrit.RunFunc(a.runAuctions)},
	})
}

func (a *Auctioneer) runEtcd(signals <-chan os.Signal, ready chan<- struct{}) error {
	// With the Consul backend the auctioneer needs no etcd at all.
	var c *clientv3.Client
	if a.cfg.Locket.NeedsEtcd() {
		ctx, cancel := context.WithTimeout(context.Background(), etcdDialTimeout)
		var err error
		c, err = etcdclient.Dial(ctx, a.cfg.Etcd)
		cancel()
		if err != nil {
			return fmt.Errorf("connect to etcd: %w", err)
		}
		defer c.Close()
		a.etcd = c
	}
	var err error
	if a.locket, err = locket.Open(a.cfg.Locket, c, a.logger); err != nil {
		return err
	}
	close(ready)
	<-signals
	return nil
}

func (a *Auctioneer) runAPI(signals <-chan os.Signal, ready chan<- struct{}) error {
	var serverTLS *tls.Config
	if a.cfg.InsecurePlaintext {
		a.logger.Info("api-without-tls", lager.Data{"warning": "insecure_plaintext: the API and the calls to the BBS and reps are plaintext; only for development"})
	} else {
		var err error
		if serverTLS, err = a.cfg.TLS.Server(); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}
	api := server.New(a.batch, a)
	a.grpc = grpcserver.New(grpcserver.Options{
		Addr: a.cfg.ListenAddress, TLS: serverTLS, Logger: a.logger, Metrics: grpcserver.NewMetrics(a.registry),
		Register: func(s grpc.ServiceRegistrar) { auctioneerv1.RegisterAuctioneerServiceServer(s, api) },
	})
	proc := ifrit.Background(a.grpc)
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		return fmt.Errorf("gRPC API: %w", err)
	}
	a.logger.Info("api-listening", lager.Data{"address": a.grpc.Addr(), "debug_address": a.debug.Addr()})
	close(a.ready)
	close(ready)
	select {
	case sig := <-signals:
		proc.Signal(sig)
		return <-proc.Wait()
	case err := <-proc.Wait():
		return fmt.Errorf("gRPC API stopped: %w", err)
	}
}

func (a *Auctioneer) runLock(signals <-chan os.Signal, ready chan<- struct{}) error {
	lock := locket.NewLock(locket.LockOptions{
		Backend: a.locket, KeyPrefix: a.cfg.KeyPrefix, Name: LockName, Owner: a.cfg.InstanceID,
		Value: []byte(a.grpc.Addr()), TTL: a.cfg.LockTTL.D(), RetryInterval: a.cfg.LockRetryInterval.D(),
		Logger: a.logger, HeldGauge: a.lockHeld,
		OnAcquired: func() {
			a.held.Store(true)
			a.logger.Info("auctioneer-lock-acquired", lager.Data{"owner": a.cfg.InstanceID, "address": a.grpc.Addr()})
		},
		OnLost: func() { a.held.Store(false) },
	})
	err := lock.Run(signals, ready)
	a.held.Store(false)
	return err
}

func (a *Auctioneer) runAuctions(signals <-chan os.Signal, ready chan<- struct{}) error {
	var bbsTLS, repTLS *tls.Config
	var err error
	if !a.cfg.InsecurePlaintext {
		if bbsTLS, err = a.cfg.BBSTLS.Client(""); err != nil {
			return fmt.Errorf("bbs_tls: %w", err)
		}
		if repTLS, err = a.cfg.RepClientTLS.Client(""); err != nil {
			return fmt.Errorf("rep_client_tls: %w", err)
		}
	}
	engine, file, err := a.cfg.Engine(a.scoreFailures.observe)
	if err != nil {
		return err
	}
	if file != nil {
		a.logger.Info("strategy-file", lager.Data{"name": file.Name(), "file": file.Path(), "sha256": file.SHA256()})
	}
	bbs, err := client.New(client.Config{Addresses: a.cfg.BBSAddresses, TLS: bbsTLS})
	if err != nil {
		return fmt.Errorf("bbs client: %w", err)
	}
	defer bbs.Close()
	reps := auctionrunner.NewRepPool(repTLS)
	defer reps.Close()
	r, err := auctionrunner.New(auctionrunner.Options{
		Batch:                a.batch,
		Cells:                &auctionrunner.LocketDirectory{Client: a.etcd, Reader: a.locket, KeyPrefix: a.cfg.KeyPrefix, Logger: a.logger},
		Reps:                 reps,
		BBS:                  bbs,
		Engine:               engine,
		CellStateTimeout:     a.cfg.CellStateTimeout.D(),
		CellStateWorkers:     a.cfg.CellStateWorkers,
		StateMaxAge:          a.cfg.CellStateMaxAge.D(),
		MinInterval:          a.cfg.MinAuctionInterval.D(),
		MaxInterval:          a.cfg.MaxAuctionInterval.D(),
		CommunicationTimeout: a.cfg.CommunicationTimeout.D(),
		Logger:               a.logger,
		Metrics:              a.metrics,
	})
	if err != nil {
		return err
	}
	return r.Run(signals, ready)
}
