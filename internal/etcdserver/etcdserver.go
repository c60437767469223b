package etcdserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gavelhq/gavel/internal/tlsconfig"
)

// Defaults for [Config]; zero fields take these values.
const (
	// DefaultClientURL is where clients reach the embedded etcd.
	DefaultClientURL = "http://127.0.0.1:2379"
	// DefaultPeerURL is the (unused, single-member) peer URL.
	DefaultPeerURL = "http://127.0.0.1:2380"
	// DefaultMaxTxnOps lets the BBS group many writes in one transaction.
	DefaultMaxTxnOps uint = 16384
	// DefaultMaxRequestBytes is 32 MiB.
	DefaultMaxRequestBytes uint = 32 << 20
	// DefaultQuotaBackendBytes is 8 GiB, etcd's recommended maximum.
	DefaultQuotaBackendBytes int64 = 8 << 30
	// DefaultSnapshotCount is etcd's own default.
	DefaultSnapshotCount uint64 = 10000
	// DefaultSnapshotCatchUpEntries is how many applied raft entries etcd
	// keeps in memory after each in-memory snapshot, for a slow follower to
	// catch up from. etcd's own default is 5,000, sized for small entries;
	// one BBS group commit is an entry of up to commit_batch_bytes (64 KiB),
	// so 5,000 of them held up to 320 MiB of the BBS's memory for followers a
	// single-member etcd does not have. 100 such entries are at most 6.4 MiB.
	DefaultSnapshotCatchUpEntries uint64 = 100
	// DefaultLogLevel is the level of etcd's own zap logs.
	DefaultLogLevel = "warn"
	// DefaultAutoCompactionMode is etcd's periodic compaction.
	DefaultAutoCompactionMode = "periodic"
	// DefaultAutoCompactionRetention keeps one hour of history, enough for
	// event subscribers to resume after a disconnect.
	DefaultAutoCompactionRetention = "1h"
	// DefaultStartTimeout bounds how long Run waits for etcd to serve.
	DefaultStartTimeout = 60 * time.Second
)

// Config describes an embedded etcd. Zero values take the Default* constants.
type Config struct {
	// DataDir holds etcd's WAL and snapshot (required).
	DataDir string `json:"data_dir"`
	// ClientURL is the URL clients use, e.g. http://127.0.0.1:2379. Port 0
	// picks a free port; the bound address is in [Embedded.Endpoints].
	// Default DefaultClientURL.
	ClientURL string `json:"client_url"`
	// PeerURL is the peer URL of the single member. Port 0 is allowed.
	// Default DefaultPeerURL.
	PeerURL string `json:"peer_url"`
	// MaxTxnOps is the most operations in one transaction. Default 16384.
	MaxTxnOps uint `json:"max_txn_ops"`
	// MaxRequestBytes is the largest client request, in bytes. Default 32 MiB.
	MaxRequestBytes uint `json:"max_request_bytes"`
	// QuotaBackendBytes is the backend size limit, in bytes. Default 8 GiB.
	QuotaBackendBytes int64 `json:"quota_backend_bytes"`
	// SnapshotCount is the number of committed transactions that trigger a
	// snapshot. Default 10000.
	SnapshotCount uint64 `json:"snapshot_count"`
	// SnapshotCatchUpEntries is how many applied raft entries stay in memory
	// after a snapshot for a slow follower. Default 100 (see
	// DefaultSnapshotCatchUpEntries).
	SnapshotCatchUpEntries uint64 `json:"snapshot_catchup_entries"`
	// AutoCompactionMode is "periodic" or "revision". Default "periodic".
	AutoCompactionMode string `json:"auto_compaction_mode"`
	// AutoCompactionRetention is a duration ("1h") for periodic mode or a
	// revision count for revision mode. Default "1h".
	AutoCompactionRetention string `json:"auto_compaction_retention"`
	// LogLevel is the level of etcd's own logs: debug, info, warn, error.
	// Default "warn".
	LogLevel string `json:"log_level"`
	// LogFile, if set, receives etcd's own logs instead of stderr.
	LogFile string `json:"log_file"`
	// UnsafeNoFsync disables fsync. Data may be lost on a crash: tests only.
	UnsafeNoFsync bool `json:"unsafe_no_fsync"`
	// HeartbeatInterval and ElectionTimeout tune raft ticks; zero keeps
	// etcd's defaults (100 ms and 1 s). Tests shorten them to start faster.
	HeartbeatInterval time.Duration `json:"-"`
	ElectionTimeout   time.Duration `json:"-"`
	// StartTimeout bounds how long Run waits for etcd to become ready.
	// Default 60 s.
	StartTimeout time.Duration `json:"-"`
	// TLS is the server certificate and key and the CA client certificates
	// must chain to. When set, client_url (and peer_url, if https) must be
	// https and every client must present a certificate (mutual TLS).
	// Without it the client URL must be on a loopback address.
	TLS tlsconfig.Files `json:"tls"`
}

// withDefaults returns cfg with zero fields replaced by defaults.
func (cfg Config) withDefaults() Config {
	if cfg.ClientURL == "" {
		cfg.ClientURL = DefaultClientURL
	}
	if cfg.PeerURL == "" {
		cfg.PeerURL = DefaultPeerURL
	}
	if cfg.MaxTxnOps == 0 {
		cfg.MaxTxnOps = DefaultMaxTxnOps
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.QuotaBackendBytes == 0 {
		cfg.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if cfg.SnapshotCount == 0 {
		cfg.SnapshotCount = DefaultSnapshotCount
	}
	if cfg.SnapshotCatchUpEntries == 0 {
		cfg.SnapshotCatchUpEntries = DefaultSnapshotCatchUpEntries
	}
	if cfg.AutoCompactionMode == "" {
		cfg.AutoCompactionMode = DefaultAutoCompactionMode
	}
	if cfg.AutoCompactionRetention == "" {
		cfg.AutoCompactionRetention = DefaultAutoCompactionRetention
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = DefaultLogLevel
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	return cfg
}

// Validate reports the first problem with cfg (after defaults), without side
// effects.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	if cfg.DataDir == "" {
		return errors.New("etcdserver: data_dir is required")
	}
	for name, raw := range map[string]string{"client_url": cfg.ClientURL, "peer_url": cfg.PeerURL} {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("etcdserver: %s %q: %w", name, raw, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("etcdserver: %s %q: scheme must be http or https", name, raw)
		}
		if u.Port() == "" {
			return fmt.Errorf("etcdserver: %s %q: a port is required (0 picks a free one)", name, raw)
		}
	}
	curl, _ := url.Parse(cfg.ClientURL)
	purl, _ := url.Parse(cfg.PeerURL)
	if cfg.TLS.Enabled() {
		if cfg.TLS.CAFile == "" || cfg.TLS.CertFile == "" || cfg.TLS.KeyFile == "" {
			return errors.New("etcdserver: tls: ca_file, cert_file and key_file are all required (clients must present a certificate)")
		}
		if curl.Scheme != "https" {
			return fmt.Errorf("etcdserver: client_url %q: must be https when tls is set", cfg.ClientURL)
		}
	} else {
		if curl.Scheme == "https" || purl.Scheme == "https" {
			return errors.New("etcdserver: tls: ca_file, cert_file and key_file are required for an https client_url or peer_url")
		}
		for name, u := range map[string]*url.URL{"client_url": curl, "peer_url": purl} {
			if !loopback(u.Hostname()) {
				return fmt.Errorf("etcdserver: %s %q: without tls etcd only listens on a loopback address (127.0.0.1, ::1, localhost)", name, u.String())
			}
		}
	}
	if _, err := zapcore.ParseLevel(cfg.LogLevel); err != nil {
		return fmt.Errorf("etcdserver: log_level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	if cfg.AutoCompactionMode != "periodic" && cfg.AutoCompactionMode != "revision" {
		return fmt.Errorf("etcdserver: auto_compaction_mode %q: want periodic or revision", cfg.AutoCompactionMode)
	}
	return nil
}

// loopback says whether host (a name or address) is loopback only.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Embedded is an embedded etcd server run as an [ifrit.Runner].
type Embedded struct {
	cfg    Config
	logger lager.Logger

	mu        sync.Mutex
	endpoints []string
	server    *etcdserver.EtcdServer
}

var _ ifrit.Runner = (*Embedded)(nil)

// New returns an embedded etcd that starts when run. It does no I/O.
func New(cfg Config, logger lager.Logger) *Embedded {
	return &Embedded{cfg: cfg.withDefaults(), logger: logger.Session("etcd")}
}

// Limits are an embedded etcd's limits on one request.
type Limits struct {
	// MaxTxnOps is its --max-txn-ops.
	MaxTxnOps uint
	// MaxRequestBytes is its --max-request-bytes.
	MaxRequestBytes uint
}

// Limits returns the limits the etcd runs with (defaults applied).
func (e *Embedded) Limits() Limits {
	return Limits{MaxTxnOps: e.cfg.MaxTxnOps, MaxRequestBytes: e.cfg.MaxRequestBytes}
}

// Endpoints returns the client URLs of the running etcd, with any port 0
// resolved to the bound port. It is empty before ready.
func (e *Embedded) Endpoints() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.endpoints...)
}

// LocalClient returns a client that calls the running etcd in-process,
// without a gRPC hop over loopback (etcd's v3client). The etcd's own request
// limits still apply. It fails before ready; the caller closes the client.
func (e *Embedded) LocalClient() (*clientv3.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server == nil {
		return nil, errors.New("etcdserver: no in-process client before etcd is ready")
	}
	return v3client.New(e.server), nil
}

// LocalKV returns etcd's KV API served by the running etcd in-process, as
// LocalClient's KV calls it, for callers that build etcd's request messages
// themselves (the BBS's group committer). The same checks as over gRPC apply
// (--max-txn-ops, duplicate keys, the space quota). It fails before ready.
func (e *Embedded) LocalKV() (pb.KVClient, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server == nil {
		return nil, errors.New("etcdserver: no in-process KV before etcd is ready")
	}
	return adapter.KvServerToKvClient(v3rpc.NewQuotaKVServer(e.server)), nil
}

// Run starts etcd, closes ready once it serves clients, and waits. On a
// signal it closes etcd and returns nil; if etcd fails it returns the error.
func (e *Embedded) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if err := e.cfg.Validate(); err != nil {
		return err
	}
	ecfg, err := e.embedConfig()
	if err != nil {
		return err
	}
	e.logger.Info("starting", lager.Data{"data-dir": e.cfg.DataDir, "client-url": e.cfg.ClientURL})
	etcd, err := embed.StartEtcd(ecfg)
	if err != nil {
		return fmt.Errorf("etcdserver: starting etcd in %s: %w", e.cfg.DataDir, err)
	}
	closeEtcd := sync.OnceFunc(etcd.Close)
	defer closeEtcd()

	timer := time.NewTimer(e.cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-etcd.Server.ReadyNotify():
	case err := <-etcd.Err():
		return fmt.Errorf("etcdserver: etcd failed while starting: %w", err)
	case <-timer.C:
		etcd.Server.Stop()
		return fmt.Errorf("etcdserver: etcd not ready after %s", e.cfg.StartTimeout)
	case sig := <-signals:
		e.logger.Info("signalled-before-ready", lager.Data{"signal": sig.String()})
		return nil
	}

	scheme := "http"
	if strings.HasPrefix(e.cfg.ClientURL, "https:") {
		scheme = "https"
	}
	eps := make([]string, 0, len(etcd.Clients))
	for _, l := range etcd.Clients {
		eps = append(eps, scheme+"://"+l.Addr().String())
	}
	e.mu.Lock()
	e.endpoints = eps
	e.server = etcd.Server
	e.mu.Unlock()

	e.logger.Info("started", lager.Data{"endpoints": eps})
	close(ready)

	select {
	case sig := <-signals:
		e.logger.Info("stopping", lager.Data{"signal": sig.String()})
		closeEtcd()
		e.logger.Info("stopped")
		return nil
	case err, ok := <-etcd.Err():
		if !ok || err == nil {
			err = errors.New("etcd stopped unexpectedly")
		}
		e.logger.Error("etcd-failed", err)
		return fmt.Errorf("etcdserver: %w", err)
	case <-etcd.Server.StopNotify():
		return errors.New("etcdserver: etcd server stopped unexpectedly")
	}
}

// embedConfig translates cfg into etcd's embed.Config.
func (e *Embedded) embedConfig() (*embed.Config, error) {
	cfg := e.cfg
	curl, err := url.Parse(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: client_url: %w", err)
	}
	purl, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: peer_url: %w", err)
	}

	ec := embed.NewConfig()
	ec.Name = "gavel"
	ec.Dir = cfg.DataDir
	ec.ListenClientUrls = []url.URL{*curl}
	ec.AdvertiseClientUrls = []url.URL{*curl}
	ec.ListenPeerUrls = []url.URL{*purl}
	ec.AdvertisePeerUrls = []url.URL{*purl}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	if cfg.TLS.Enabled() {
		info := transport.TLSInfo{
			CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, TrustedCAFile: cfg.TLS.CAFile,
			ClientCertAuth: true,
		}
		ec.ClientTLSInfo = info
		if purl.Scheme == "https" {
			ec.PeerTLSInfo = info
		}
	}
	ec.MaxTxnOps = cfg.MaxTxnOps
	ec.MaxRequestBytes = cfg.MaxRequestBytes
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	ec.SnapshotCount = cfg.SnapshotCount
	ec.SnapshotCatchUpEntries = cfg.SnapshotCatchUpEntries
	ec.AutoCompactionMode = cfg.AutoCompactionMode
	ec.AutoCompactionRetention = cfg.AutoCompactionRetention
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	// embed.NewConfig leaves this 0 (only etcd's flags set it), which logs
	// every request as "expensive"; use etcd's own default.
	ec.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	// The BBS never uses the v3 JSON gateway; skip it.
	ec.EnableGRPCGateway = false
	if cfg.HeartbeatInterval > 0 {
		ec.TickMs = uint(cfg.HeartbeatInterval / time.Millisecond)
	}
	if cfg.ElectionTimeout > 0 {
		ec.ElectionMs = uint(cfg.ElectionTimeout / time.Millisecond)
	}

	ec.LogLevel = cfg.LogLevel
	if cfg.LogFile != "" {
		ec.LogOutputs = []string{cfg.LogFile}
	} else {
		ec.LogOutputs = []string{"stderr"}
	}
	lvl, err := zapcore.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("etcdserver: log_level %q: %w", cfg.LogLevel, err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.OutputPaths = ec.LogOutputs
	zc.ErrorOutputPaths = ec.LogOutputs
	zc.Sampling = nil
	lg, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("etcdserver: building etcd logger: %w", err)
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	return ec, nil
}
