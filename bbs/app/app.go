package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/bbs/auctionrequest"
	"github.com/gavelhq/gavel/bbs/cellclient"
	"github.com/gavelhq/gavel/bbs/converger"
	"github.com/gavelhq/gavel/bbs/encryption"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/server"
	"github.com/gavelhq/gavel/bbs/store"
	"github.com/gavelhq/gavel/bbs/taskcallback"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdserver"
	"github.com/gavelhq/gavel/internal/grpcclient"
	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/locket"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// LockName is the lock the active BBS holds.
const LockName = "bbs"

// BBS is one BBS daemon: its runners share the state built as they start.
type BBS struct {
	cfg      Config
	logger   lager.Logger
	registry *prometheus.Registry

	etcd   *etcdserver.Embedded
	client *clientv3.Client
	// leaseClient holds the locket's leases (the bbs lock) on a connection
	// of its own, so its keep-alives never queue behind bulk transactions
	// on the store's.
	leaseClient *clientv3.Client
	// locket is the lock and presence store the config selects.
	locket locket.Store
	store  *store.Store
	grpc   *grpcserver.Server
	server *server.Server
	debug  *debugserver.Server
	held   atomic.Bool
	// Built by the api member, used by the converger member.
	auctions  *auctionrequest.Requester
	callbacks *taskcallback.Worker
	cells     *cellclient.Client
	ready     chan struct{} // closed when the API serves
}

// New builds a BBS from a validated config.
func New(cfg Config, logger lager.Logger) *BBS {
	// The default registry already holds the Go and process collectors and,
	// with the embedded etcd, etcd's own metrics (etcd_mvcc_put_total and
	// friends); the debug server serves both registries.
	reg := prometheus.NewRegistry()
	return &BBS{cfg: cfg, logger: logger, registry: reg, ready: make(chan struct{})}
}

// Held says whether this replica holds the bbs lock.
func (b *BBS) Held() bool { return b.held.Load() }

// Addr is the gRPC API's bound address, once it serves.
func (b *BBS) Addr() string { <-b.ready; return b.grpc.Addr() }

// Runner returns the daemon as one ordered ifrit group: debug server,
// embedded etcd (when no external endpoints), store (dial, watch cache,
// committer), gRPC API (passive until the lock is held), the bbs lock, and
// the background workers that only the active replica needs. Losing the lock
// ends the group with an error, so the process exits and a supervisor
// restarts it as a passive replica.
func (b *BBS) Runner() ifrit.Runner {
	b.debug = debugserver.NewFromConfig(b.cfg.DebugAddress, b.cfg.DebugTLS, prometheus.Gatherers{b.registry, prometheus.DefaultGatherer}, b.logger)
	members := grouper.Members{{Name: "debug", Runner: b.debug}}
	if b.cfg.Embedded() {
		b.etcd = etcdserver.New(b.cfg.EmbeddedEtcd, b.logger)
		members = append(members, grouper.Member{Name: "etcd", Runner: b.etcd})
	}
	members = append(members,
		grouper.Member{Name: "store", Runner: ifrit.RunFunc(b.runStore)},
		grouper.Member{Name: "api", Runner: ifrit.RunFunc(b.runAPI)},
		grouper.Member{Name: "lock", Runner: ifrit.RunFunc(b.runLock)},
	)
	if b.cfg.Locket.Backend == locket.BackendConsul {
		// Only the holder mirrors Consul's presences and locks into etcd,
		// and before it converges.
		members = append(members, grouper.Member{Name: "locket-mirror", Runner: ifrit.RunFunc(b.runMirror)})
	}
	members = append(members,
		// After the lock: only the holder converges.
		grouper.Member{Name: "converger", Runner: ifrit.RunFunc(b.runConverger)},
		// Only the holder re-encrypts records under a new active key.
		grouper.Member{Name: "reencrypt", Runner: ifrit.RunFunc(b.runReencrypt)},
	)
	return grouper.NewOrdered(os.Interrupt, members)
}

// signalContext is cancelled when a signal arrives.
func signalContext(signals <-chan os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (b *BBS) runStore(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := signalContext(signals)
	defer cancel()
	ecfg := b.cfg.Etcd
	batchOps, maxTxnOps, maxReqBytes := b.cfg.CommitBatchOps, b.cfg.EtcdMaxTxnOps, b.cfg.EtcdMaxRequestBytes
	if b.etcd != nil {
		ecfg.Endpoints = b.etcd.Endpoints()
		if batchOps == 0 {
			batchOps = EmbeddedCommitBatchOps
		}
		// The embedded etcd's own limits are the ones that bind.
		limits := b.etcd.Limits()
		maxTxnOps, maxReqBytes = int(limits.MaxTxnOps), int(limits.MaxRequestBytes)
	}
	if batchOps == 0 {
		batchOps = DefaultCommitBatchOps
	}
	if maxTxnOps == 0 {
		maxTxnOps = DefaultEtcdMaxTxnOps
	}
	if maxReqBytes == 0 {
		maxReqBytes = DefaultEtcdMaxRequestBytes
	}
	// Keys are derived (scrypt) or read once, here; a missing key file or an
	// active label that is not a key stops the BBS before it serves.
	keyring, err := encryption.Load(b.cfg.Encryption)
	if err != nil {
		return fmt.Errorf("load encryption keys: %w", err)
	}
	var client *clientv3.Client
	var kv etcdserverpb.KVClient // nil: the client's connection
	if b.etcd != nil {
		// The embedded etcd is called in-process: no gRPC hop over loopback.
		client, err = b.etcd.LocalClient()
		if err == nil {
			kv, err = b.etcd.LocalKV()
		}
	} else {
		dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
		client, err = etcdclient.Dial(dctx, ecfg)
		dcancel()
	}
	if err != nil {
		return fmt.Errorf("connect to etcd: %w", err)
	}
	defer client.Close()
	b.client = client
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	leaseClient, err := etcdclient.Dial(dctx, ecfg)
	dcancel()
	if err != nil {
		return fmt.Errorf("connect to etcd for the lock's lease: %w", err)
	}
	defer leaseClient.Close()
	b.leaseClient = leaseClient
	if b.locket, err = locket.Open(b.cfg.Locket, leaseClient, b.logger); err != nil {
		return err
	}

	commits := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gavel_bbs_etcd_txn_requests", Help: "Requests packed into one etcd transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	commitDur := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gavel_bbs_etcd_txn_duration_seconds", Help: "Duration of etcd transactions.", Buckets: prometheus.DefBuckets,
	})
	b.registry.MustRegister(commits, commitDur)
	b.store = store.New(store.Options{
		Client: client, KV: kv, KeyPrefix: b.cfg.KeyPrefix, Logger: b.logger, MaxTaskRetries: b.cfg.MaxTaskRetries,
		MaxTxnOps: maxTxnOps, MaxRequestBytes: maxReqBytes, Keyring: keyring,
		Committer: store.CommitterOptions{MaxOps: batchOps, MaxBytes: b.cfg.CommitBatchBytes, Workers: b.cfg.CommitWorkers},
		ObserveCommit: func(n int, d time.Duration) {
			commits.Observe(float64(n))
			commitDur.Observe(d.Seconds())
		},
	})
	b.registerStateMetrics()
	done := make(chan error, 1)
	go func() { done <- b.store.Run(ctx) }()
	if err := b.store.WaitSynced(ctx); err != nil {
		return err
	}
	b.logger.Info("store-ready", lager.Data{"revision": b.store.Cache().Revision(), "endpoints": ecfg.Endpoints, "active_key_label": keyring.Active(), "etcd_max_txn_ops": maxTxnOps, "etcd_max_request_bytes": maxReqBytes})
	close(ready)
	<-done
	return nil
}

func (b *BBS) registerStateMetrics() {
	gauge := func(name, help string, f func() float64) {
		b.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("gavel_bbs_watch_cache_revision", "The etcd revision the watch cache reflects.", func() float64 { return float64(b.store.Cache().Revision()) })
	gauge("gavel_bbs_undecodable_records", "Records in etcd that cannot be decoded (kept for an operator).", func() float64 { return float64(len(b.store.Cache().Undecodable())) })
	gauge("gavel_bbs_lock_held", "1 while this replica holds the bbs lock.", func() float64 {
		if b.Held() {
			return 1
		}
		return 0
	})
	txns := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gavel_bbs_etcd_txns_total", Help: "etcd transactions committed."}, func() float64 {
		t, _ := b.store.Committer().Stats()
		return float64(t)
	})
	muts := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gavel_bbs_etcd_txn_requests_total", Help: "Requests committed through etcd transactions."}, func() float64 {
		_, m := b.store.Committer().Stats()
		return float64(m)
	})
	relists := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gavel_bbs_watch_cache_relists_total", Help: "Full reads of the store's prefix by the watch cache, the first included; later ones follow a compacted, broken or stalled watch."}, func() float64 {
		return float64(b.store.Cache().Relists())
	})
	b.registry.MustRegister(txns, muts, relists)
	rs := b.store.ReencryptStats()
	counter := func(name, help string, f func() float64) {
		b.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	subs := b.store.Subscriptions()
	counter("gavel_bbs_event_subscriptions_from_cache_total", "Event subscriptions served from the watch cache's recent events.", func() float64 { return float64(subs.FromCache()) })
	counter("gavel_bbs_event_subscriptions_from_etcd_total", "Event subscriptions that asked for events older than the watch cache holds, served by an etcd watch of their own.", func() float64 { return float64(subs.FromEtcd()) })
	counter("gavel_bbs_event_subscriptions_fell_back_total", "Event subscriptions that moved from the watch cache's events to an etcd watch (the cache listed again, or they fell behind what it holds).", func() float64 { return float64(subs.FellBack()) })
	counter("gavel_bbs_reencrypted_records_total", "Records rewritten under the active encryption key.", func() float64 { return float64(rs.Reencrypted()) })
	gauge("gavel_bbs_reencrypt_remaining_records", "Records the running re-encryption pass still has to rewrite under the active key (or the last pass left because their key is missing).", func() float64 { return float64(rs.Remaining()) })
	gauge("gavel_bbs_records_missing_key", "Records whose encryption key label is not configured (see the undecodable-record log lines for the label).", func() float64 {
		n := 0
		for _, err := range b.store.Cache().Undecodable() {
			if errors.Is(err, encryption.ErrMissingKey) {
				n++
			}
		}
		return float64(n)
	})
	b.registry.MustRegister(&labelCollector{stats: rs})
}

// labelCollector reports records per key label, from the last completed re-encryption pass.
type labelCollector struct{ stats *store.ReencryptStats }

func (c *labelCollector) desc() *prometheus.Desc {
	return prometheus.NewDesc("gavel_bbs_records_by_key_label",
		"Sealed records by encryption key label at the last completed re-encryption pass (\"\" is plaintext).", []string{"label"}, nil)
}

// Describe implements prometheus.Collector.
func (c *labelCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc() }

// Collect implements prometheus.Collector.
func (c *labelCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.desc()
	for label, n := range c.stats.ByLabel() {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n), label)
	}
}

// reencryptRetry is how long the holder waits before retrying a failed re-encryption pass.
const reencryptRetry = time.Minute

// runReencrypt rewrites records under the active key in the background; the
// group starts it once the lock is held. A pass that fails (a record's key is
// missing, etcd is unreachable) is logged and retried.
func (b *BBS) runReencrypt(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := signalContext(signals)
	defer cancel()
	close(ready)
	if b.store.Keyring() == nil {
		<-ctx.Done()
		return nil
	}
	for {
		err := b.store.Reencrypt(ctx, store.DefaultReencryptPage)
		if err == nil || ctx.Err() != nil {
			<-ctx.Done()
			return nil
		}
		b.logger.Error("reencrypt-failed", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(reencryptRetry):
		}
	}
}

// clientTLS is the TLS config for dialling reps and the auctioneer; nil
// (plaintext) only with insecure_plaintext.
func (b *BBS) clientTLS() (*tls.Config, error) {
	if b.cfg.InsecurePlaintext {
		return nil, nil
	}
	return b.cfg.ClientTLS.Client("")
}

func (b *BBS) runAPI(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := signalContext(signals)
	defer cancel()
	clientTLS, err := b.clientTLS()
	if err != nil {
		return fmt.Errorf("client_tls: %w", err)
	}
	pool := grpcclient.NewPool(clientTLS)
	defer pool.Close()
	requester := auctionrequest.New(auctionrequest.Options{
		Locks: b.store, Pool: pool, Logger: b.logger, Registerer: b.registry,
		MaxPending:      b.cfg.AuctionRequestMaxPending,
		RunInfoVersions: b.store.GetRunInfoVersion,
	})
	callbacks := taskcallback.New(taskcallback.Options{Store: b.store, Logger: b.logger.Session("task-callback")})
	b.auctions, b.callbacks, b.cells = requester, callbacks, cellclient.New(pool)
	b.server = server.New(server.Options{
		Store: b.store, Leader: b, Auctions: requester, Cells: b.cells,
		Completions: callbacks, Logger: b.logger,
		Limits: models.Limits{MaxInstances: b.cfg.MaxDesiredInstances},
	})
	var serverTLS *tls.Config
	if b.cfg.InsecurePlaintext {
		b.logger.Info("api-without-tls", lager.Data{"warning": "insecure_plaintext: the API and the calls to reps and the auctioneer are plaintext; only for development"})
	} else if serverTLS, err = b.cfg.TLS.Server(); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	b.grpc = grpcserver.New(grpcserver.Options{
		Addr: b.cfg.ListenAddress, TLS: serverTLS, Logger: b.logger, Metrics: grpcserver.NewMetrics(b.registry),
		Register:           func(s grpc.ServiceRegistrar) { bbsv1.RegisterBBSServiceServer(s, b.server) },
		UnaryInterceptors:  []grpc.UnaryServerInterceptor{b.server.UnaryInterceptor},
		StreamInterceptors: []grpc.StreamServerInterceptor{b.server.StreamInterceptor},
		ServerOptions:      []grpc.ServerOption{grpc.MaxRecvMsgSize(b.cfg.maxRequestBytes())},
	})
	go func() { _ = requester.Run(ctx) }()
	go func() { _ = callbacks.Run(ctx) }()
	proc := ifrit.Background(b.grpc)
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		return fmt.Errorf("gRPC API: %w", err)
	}
	b.logger.Info("api-listening", lager.Data{"address": b.grpc.Addr(), "debug_address": b.debug.Addr()})
	close(b.ready)
	close(ready)
	select {
	case <-ctx.Done():
		proc.Signal(os.Interrupt)
		err := <-proc.Wait()
		b.server.Wait()
		return err
	case err := <-proc.Wait():
		return fmt.Errorf("gRPC API stopped: %w", err)
	}
}

func (b *BBS) runLock(signals <-chan os.Signal, ready chan<- struct{}) error {
	lock := locket.NewLock(locket.LockOptions{
		Backend: b.locket, KeyPrefix: b.cfg.KeyPrefix, Name: LockName, Owner: b.cfg.InstanceID,
		Value: []byte(b.grpc.Addr()), TTL: b.cfg.LockTTL.D(), RetryInterval: b.cfg.LockRetryInterval.D(),
		Logger: b.logger,
		OnAcquired: func() {
			b.held.Store(true)
			b.logger.Info("bbs-lock-acquired", lager.Data{"owner": b.cfg.InstanceID})
		},
		OnLost: func() {
			b.held.Store(false)
			b.logger.Error("bbs-lock-lost", locket.ErrLockLost)
		},
	})
	err := lock.Run(signals, ready)
	b.held.Store(false)
	return err
}

// runMirror copies the presences and locks held in Consul into etcd, where
// the store's cache sees them (locket.Mirror).
func (b *BBS) runMirror(signals <-chan os.Signal, ready chan<- struct{}) error {
	consul, ok := b.locket.(*locket.ConsulBackend)
	if !ok {
		return fmt.Errorf("locket-mirror: the locket backend is %T, not Consul", b.locket)
	}
	return locket.NewMirror(locket.MirrorOptions{Consul: consul, Etcd: b.client, KeyPrefix: b.cfg.KeyPrefix, Logger: b.logger}).Run(signals, ready)
}

// runConverger runs convergence; the group starts it once the lock is held.
func (b *BBS) runConverger(signals <-chan os.Signal, ready chan<- struct{}) error {
	c, err := converger.New(converger.Options{
		Store: b.store, Auctions: b.auctions, Cells: b.cells, Completions: b.callbacks,
		Config: b.cfg.Convergence, Logger: b.logger, Metrics: converger.NewMetrics(b.registry),
	})
	if err != nil {
		return err
	}
	return c.Run(signals, ready)
}
