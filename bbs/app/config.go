// Package app wires the BBS daemon: its config, and the ordered group of
// runners (debug server, embedded etcd, store, gRPC server, bbs lock,
// background workers) that cmd/bbs runs.
package app

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gavelhq/gavel/bbs/auctionrequest"
	"github.com/gavelhq/gavel/bbs/converger"
	"github.com/gavelhq/gavel/bbs/encryption"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdserver"
	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/locket"
)

// Defaults of the BBS daemon.
const (
	DefaultListenAddress     = "127.0.0.1:8889"
	DefaultDebugAddress      = "127.0.0.1:17017"
	DefaultLockTTL           = 15 * time.Second
	DefaultLockRetryInterval = 5 * time.Second
	DefaultMaxTaskRetries    = 3
	DefaultEmbeddedDataDir   = ".gavel/etcd"
	// DefaultCommitBatchOps suits an external etcd's default --max-txn-ops of 128.
	DefaultCommitBatchOps = 128
	// EmbeddedCommitBatchOps is used with the embedded etcd, which allows
	// larger transactions; commit_batch_bytes is what keeps each one short.
	EmbeddedCommitBatchOps = 1024
	DefaultCommitWorkers   = 4
	// DefaultEtcdMaxTxnOps is an external etcd's default --max-txn-ops.
	DefaultEtcdMaxTxnOps = 128
	// DefaultEtcdMaxRequestBytes is an external etcd's default --max-request-bytes (1.5 MiB).
	DefaultEtcdMaxRequestBytes = 3 << 19
	// MinEtcdMaxTxnOps and MinEtcdMaxRequestBytes are the smallest limits
	// the BBS can work within (a desired LRP's two records and their guards;
	// one record of a few KiB).
	MinEtcdMaxTxnOps       = 8
	MinEtcdMaxRequestBytes = 16 << 10
	// DefaultMaxRequestBytes bounds one gRPC request (4 MiB); a larger one is
	// refused ResourceExhausted before it is decoded.
	DefaultMaxRequestBytes = 4 << 20
	// MinMaxRequestBytes is the smallest max_request_bytes allowed.
	MinMaxRequestBytes = 64 << 10
	// MinCommitBatchBytes is the smallest commit_batch_bytes accepted.
	MinCommitBatchBytes = 4 << 10
)

// Config is the BBS's JSON config file.
type Config struct {
	// ListenAddress is the gRPC API's host:port (default 127.0.0.1:8889).
	ListenAddress string `json:"listen_address"`
	// DebugAddress serves /metrics and /debug/pprof (default 127.0.0.1:17017).
	DebugAddress string `json:"debug_address"`
	// DebugTLS, when set (ca_file, cert_file, key_file), serves the debug
	// endpoints over HTTPS to client certificates of role operator only, on
	// any address; without it debug_address must be a loopback address.
	DebugTLS tlsconfig.Files `json:"debug_tls"`
	// LogLevel is debug, info, error or fatal (default info).
	LogLevel string `json:"log_level"`
	// InstanceID names this replica in the bbs lock (default hostname-pid).
	InstanceID string `json:"instance_id"`
	// KeyPrefix is the root of Gavel's etcd keys (default /gavel/v1/).
	KeyPrefix string `json:"key_prefix"`
	// Etcd is an external etcd cluster; with no endpoints the BBS runs an embedded etcd.
	Etcd etcdclient.Config `json:"etcd"`
	// EmbeddedEtcd configures the embedded etcd (data dir default .gavel/etcd).
	EmbeddedEtcd etcdserver.Config `json:"embedded_etcd"`
	// Locket selects where the locks and cell presences live: etcd (default)
	// or Consul, whose presences and locks the active BBS then mirrors into
	// etcd for its cache (locket.Mirror).
	Locket locket.Config `json:"locket"`
	// TLS is the API's server certificate, key and the CA client
	// certificates must chain to; all three are required unless
	// InsecurePlaintext.
	TLS tlsconfig.Files `json:"tls"`
	// ClientTLS is the certificate presented to reps and the auctioneer and
	// the CA their certificates must chain to; required unless InsecurePlaintext.
	ClientTLS tlsconfig.Files `json:"client_tls"`
	// InsecurePlaintext serves the API and dials reps and the auctioneer
	// without TLS, and then tls and client_tls must be empty (default false:
	// mutual TLS). For development only; gavel dev sets it.
	InsecurePlaintext bool `json:"insecure_plaintext"`
	// LockTTL is the bbs lock's lease (default 15s).
	LockTTL config.Duration `json:"lock_ttl"`
	// LockRetryInterval is how often a passive replica retries the lock (default 5s).
	LockRetryInterval config.Duration `json:"lock_retry_interval"`
	// MaxTaskRetries is how often a task may be rejected before it fails (default 3).
	MaxTaskRetries int32 `json:"max_task_retries"`
	// CommitBatchOps is the most requests in one etcd transaction (default 128, 1024 with the embedded etcd).
	CommitBatchOps int `json:"commit_batch_ops"`
	// CommitWorkers is how many etcd transactions may be in flight (default 4).
	CommitWorkers int `json:"commit_workers"`
	// CommitBatchBytes bounds one etcd transaction's estimated size, in
	// bytes (default 65536; at most the etcd request limit less 1 KiB). Small
	// transactions apply quickly, so lease keep-alives (the locks, cell
	// presences) never wait long behind bulk writes; a single larger record
	// is still written alone.
	CommitBatchBytes int `json:"commit_batch_bytes"`
	// EtcdMaxTxnOps is the external etcd's --max-txn-ops, in operations
	// (default 128, etcd's default). With the embedded etcd its own
	// embedded_etcd.max_txn_ops is used instead. Every write that grows with
	// its input is split into transactions within it.
	EtcdMaxTxnOps int `json:"etcd_max_txn_ops"`
	// EtcdMaxRequestBytes is the external etcd's --max-request-bytes, in
	// bytes (default 1572864, etcd's 1.5 MiB default). With the embedded etcd
	// its own embedded_etcd.max_request_bytes is used instead. Every
	// transaction is kept below it; a single record that cannot fit is
	// refused with InvalidArgument.
	EtcdMaxRequestBytes int `json:"etcd_max_request_bytes"`
	// MaxDesiredInstances bounds a desired LRP's instances, in instances
	// (default 100000); larger requests fail validation.
	MaxDesiredInstances int32 `json:"max_desired_instances"`
	// MaxRequestBytes bounds one gRPC request, in bytes (default 4 MiB, at
	// least 64 KiB); a larger one is refused ResourceExhausted. Every other
	// bound on what clients send is in bbs/models/bounds.go.
	MaxRequestBytes int `json:"max_request_bytes"`
	// AuctionRequestMaxPending bounds the start requests (LRP instances plus
	// tasks) the BBS holds while no auctioneer takes them (default 100000);
	// beyond it new requests are dropped, counted and logged, and left to
	// convergence. Held requests go to the next auctioneer as soon as it
	// takes the auctioneer lock.
	AuctionRequestMaxPending int `json:"auction_request_max_pending"`
	// Convergence holds the converger's durations (JSON strings; defaults 30s
	// interval, 30s stale_unclaimed, 30s kick_task, 30m expire_pending_task,
	// 2m expire_completed_task).
	Convergence converger.Config `json:"convergence"`
	// Encryption seals records at rest with AES-256-GCM: keys maps a label
	// to {"passphrase": ...} or {"key_file": path-to-32-bytes};
	// active_key_label is the key new records are sealed under (empty:
	// plaintext writes). Changing it re-encrypts every record in the
	// background. Default: off.
	Encryption encryption.Config `json:"encryption"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		ListenAddress:            DefaultListenAddress,
		DebugAddress:             DefaultDebugAddress,
		LogLevel:                 "info",
		InstanceID:               fmt.Sprintf("%s-%d", host, os.Getpid()),
		EmbeddedEtcd:             etcdserver.Config{DataDir: DefaultEmbeddedDataDir},
		LockTTL:                  config.Duration(DefaultLockTTL),
		LockRetryInterval:        config.Duration(DefaultLockRetryInterval),
		MaxTaskRetries:           DefaultMaxTaskRetries,
		MaxDesiredInstances:      models.DefaultMaxInstances,
		MaxRequestBytes:          DefaultMaxRequestBytes,
		AuctionRequestMaxPending: auctionrequest.DefaultMaxPending,
		CommitWorkers:            DefaultCommitWorkers,
		Convergence:              converger.DefaultConfig(),
	}
}

// maxRequestBytes is MaxRequestBytes or its default.
func (c Config) maxRequestBytes() int {
	if c.MaxRequestBytes <= 0 {
		return DefaultMaxRequestBytes
	}
	return c.MaxRequestBytes
}

// Embedded says whether the BBS runs its own etcd.
func (c Config) Embedded() bool { return len(c.Etcd.Endpoints) == 0 }

// Validate checks the config without side effects; errors name the field.
func (c Config) Validate() error {
	var errs []error
	if err := debugserver.CheckConfig(c.DebugAddress, c.DebugTLS); err != nil {
		errs = append(errs, err)
	}
	if c.ListenAddress == "" {
		errs = append(errs, errors.New("listen_address: is required"))
	}
	if err := c.Locket.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.InstanceID == "" {
		errs = append(errs, errors.New("instance_id: is required"))
	}
	if c.LockTTL.D() < time.Second {
		errs = append(errs, fmt.Errorf("lock_ttl: must be at least 1s (got %s)", c.LockTTL.D()))
	}
	if c.LockRetryInterval.D() <= 0 {
		errs = append(errs, fmt.Errorf("lock_retry_interval: must be > 0 (got %s)", c.LockRetryInterval.D()))
	}
	if c.MaxTaskRetries < 0 {
		errs = append(errs, fmt.Errorf("max_task_retries: must be >= 0 (got %d)", c.MaxTaskRetries))
	}
	if c.CommitBatchOps < 0 || c.CommitWorkers < 0 {
		errs = append(errs, errors.New("commit_batch_ops, commit_workers: must be >= 0"))
	}
	if c.CommitBatchBytes != 0 && c.CommitBatchBytes < MinCommitBatchBytes {
		errs = append(errs, fmt.Errorf("commit_batch_bytes: must be 0 (default) or at least %d (got %d)", MinCommitBatchBytes, c.CommitBatchBytes))
	}
	if c.EtcdMaxTxnOps != 0 && c.EtcdMaxTxnOps < MinEtcdMaxTxnOps {
		errs = append(errs, fmt.Errorf("etcd_max_txn_ops: must be 0 (default) or at least %d (got %d)", MinEtcdMaxTxnOps, c.EtcdMaxTxnOps))
	}
	if c.EtcdMaxRequestBytes != 0 && c.EtcdMaxRequestBytes < MinEtcdMaxRequestBytes {
		errs = append(errs, fmt.Errorf("etcd_max_request_bytes: must be 0 (default) or at least %d (got %d)", MinEtcdMaxRequestBytes, c.EtcdMaxRequestBytes))
	}
	if c.AuctionRequestMaxPending < 0 {
		errs = append(errs, fmt.Errorf("auction_request_max_pending: must be >= 0 (got %d)", c.AuctionRequestMaxPending))
	}
	if c.MaxDesiredInstances < 0 {
		errs = append(errs, fmt.Errorf("max_desired_instances: must be >= 0 (got %d)", c.MaxDesiredInstances))
	}
	if c.MaxRequestBytes != 0 && c.MaxRequestBytes < MinMaxRequestBytes {
		errs = append(errs, fmt.Errorf("max_request_bytes: must be 0 (default %d) or at least %d (got %d)", DefaultMaxRequestBytes, MinMaxRequestBytes, c.MaxRequestBytes))
	}
	if c.InsecurePlaintext && c.ListenAddress != "" {
		if err := grpcserver.CheckPlaintextAddr(c.ListenAddress); err != nil {
			errs = append(errs, fmt.Errorf("listen_address: %w", err))
		}
	}
	if err := c.Encryption.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Convergence.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Embedded() {
		if c.EmbeddedEtcd.DataDir == "" {
			errs = append(errs, errors.New("embedded_etcd.data_dir: is required when etcd.endpoints is empty"))
		} else if err := c.EmbeddedEtcd.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("embedded_etcd: %w", err))
		}
		if c.EmbeddedEtcd.TLS.Enabled() && (c.Etcd.TLS.CertFile == "" || c.Etcd.TLS.KeyFile == "" || c.Etcd.TLS.CAFile == "") {
			errs = append(errs, errors.New("etcd.tls: ca_file, cert_file and key_file (the BBS's client certificate) are required when embedded_etcd.tls is set"))
		}
	}
	errs = append(errs, tlsconfig.CheckMutual(c.InsecurePlaintext,
		tlsconfig.Hop{Field: "tls", Files: c.TLS, Role: tlsconfig.Server},
		tlsconfig.Hop{Field: "client_tls", Files: c.ClientTLS, Role: tlsconfig.Client},
	)...)
	return errors.Join(errs...)
}

// Load reads a config file over the defaults (an empty path gives the defaults).
func Load(path string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}
