// Package app wires nsync's two daemons, the listener and the bulker, from
// one JSON config: BBS client, debug server (metrics, pprof), the
// nsync_bulker lock, and the HTTP server or the sync loop. NewListener and
// NewBulker are what cmd/nsync-listener, cmd/nsync-bulker and tests call.
package app

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/nsync/bulker"
	"github.com/gavelhq/gavel/nsync/listener"
)

// Defaults of nsync, Diego's unless noted.
const (
	DefaultBBSAddress           = "127.0.0.1:8889"
	DefaultListenAddress        = "127.0.0.1:8787"
	DefaultListenerDebugAddress = "127.0.0.1:17015"
	DefaultBulkerDebugAddress   = "127.0.0.1:17016"
	DefaultCommunicationTimeout = 30 * time.Second
	DefaultDomainTTL            = 2 * time.Minute
	DefaultPollInterval         = 30 * time.Second
	DefaultLockTTL              = 15 * time.Second
	DefaultLockRetryInterval    = 5 * time.Second
)

// LockName is the lock the active bulker holds.
const LockName = "nsync_bulker"

// Config is the JSON config file of nsync-listener and nsync-bulker.
type Config struct {
	// BBSAddresses are the host:port of every BBS replica (default ["127.0.0.1:8889"]).
	BBSAddresses []string `json:"bbs_addresses"`
	// BBSTLS is the client certificate presented to the BBS (role controller
	// for the listener, bulker for the bulker) and the CA; required unless InsecurePlaintext.
	BBSTLS tlsconfig.Files `json:"bbs_tls"`
	// InsecurePlaintext dials the BBS without TLS (development only).
	InsecurePlaintext bool `json:"insecure_plaintext"`

	// ListenAddress is the listener's HTTP address (default 127.0.0.1:8787).
	ListenAddress string `json:"listen_address"`
	// MaxConcurrentRequests caps the listener's requests in flight (default 256).
	MaxConcurrentRequests int `json:"max_concurrent_requests"`

	// ControllerURL is the controller's internal API base URL (bulker).
	ControllerURL string `json:"controller_url"`
	// ControllerUsername and ControllerPassword are its internal basic auth.
	ControllerUsername string `json:"controller_username"`
	// ControllerPassword is ControllerUsername's password.
	ControllerPassword string `json:"controller_password"`
	// CommunicationTimeout bounds each controller request (default 30s).
	CommunicationTimeout config.Duration `json:"communication_timeout"`
	// PageSize is the batch size of controller pages (default 500, at most 5000).
	PageSize int `json:"page_size"`
	// Workers bounds concurrent BBS writes of the bulker (default 50, at most 1000).
	Workers int `json:"workers"`
	// DomainTTL is the freshness TTL of cf-apps and cf-tasks (default 2m).
	DomainTTL config.Duration `json:"domain_ttl"`
	// PollInterval is the time between bulker passes (default 30s).
	PollInterval config.Duration `json:"poll_interval"`

	// FileServerURL is where lifecycle bundles are downloaded from.
	FileServerURL string `json:"file_server_url"`
	// LifecycleBundles maps "buildpack/<stack>" or "docker" to a path under the file server.
	LifecycleBundles map[string]string `json:"lifecycle_bundles"`
	// MaxInstances bounds num_instances (default: the BBS's max, 100000).
	MaxInstances int32 `json:"max_instances"`
	// Privileged runs buildpack apps privileged.
	Privileged bool `json:"privileged"`

	// InstanceID names this bulker in the lock (default hostname-pid).
	InstanceID string `json:"instance_id"`
	// KeyPrefix is the root of Gavel's etcd keys (default /gavel/v1/).
	KeyPrefix string `json:"key_prefix"`
	// Etcd is where the nsync_bulker lock lives; required by the bulker unless DisableLock.
	Etcd etcdclient.Config `json:"etcd"`
	// DisableLock runs the bulker without the lock (a single bulker; tests).
	DisableLock bool `json:"disable_lock"`
	// LockTTL is the lock's lease (default 15s).
	LockTTL config.Duration `json:"lock_ttl"`
	// LockRetryInterval is how often a standby bulker retries the lock (default 5s).
	LockRetryInterval config.Duration `json:"lock_retry_interval"`

	// DebugAddress serves /metrics and /debug/pprof (empty disables).
	DebugAddress string `json:"debug_address"`
	// LogLevel is debug, info, error or fatal (default info).
	LogLevel string `json:"log_level"`
}

// DefaultConfig returns the defaults; debugAddress differs per daemon.
func DefaultConfig(debugAddress string) Config {
	host, _ := os.Hostname()
	return Config{
		BBSAddresses:          []string{DefaultBBSAddress},
		ListenAddress:         DefaultListenAddress,
		MaxConcurrentRequests: listener.DefaultMaxConcurrent,
		CommunicationTimeout:  config.Duration(DefaultCommunicationTimeout),
		PageSize:              bulker.DefaultPageSize,
		Workers:               bulker.DefaultWorkers,
		DomainTTL:             config.Duration(DefaultDomainTTL),
		PollInterval:          config.Duration(DefaultPollInterval),
		MaxInstances:          models.DefaultMaxInstances,
		InstanceID:            fmt.Sprintf("%s-%d", host, os.Getpid()),
		KeyPrefix:             "/gavel/v1/",
		LockTTL:               config.Duration(DefaultLockTTL),
		LockRetryInterval:     config.Duration(DefaultLockRetryInterval),
		DebugAddress:          debugAddress,
		LogLevel:              "info",
	}
}

// Validate checks what both daemons need; errors name the field.
func (c Config) Validate() error {
	var errs []error
	if len(c.BBSAddresses) == 0 {
		errs = append(errs, errors.New("bbs_addresses: at least one is required"))
	}
	if c.MaxInstances <= 0 || c.MaxInstances > models.DefaultMaxInstances {
		errs = append(errs, fmt.Errorf("max_instances: must be in [1, %d] (got %d)", models.DefaultMaxInstances, c.MaxInstances))
	}
	if len(c.LifecycleBundles) == 0 {
		errs = append(errs, errors.New("lifecycle_bundles: at least one is required (e.g. \"buildpack/cflinuxfs4\")"))
	}
	if u, err := url.Parse(c.FileServerURL); err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("file_server_url: want http(s)://host:port (got %q)", c.FileServerURL))
	}
	errs = append(errs, tlsconfig.CheckMutual(c.InsecurePlaintext,
		tlsconfig.Hop{Field: "bbs_tls", Files: c.BBSTLS, Role: tlsconfig.Client},
	)...)
	return errors.Join(errs...)
}

// ValidateListener checks the listener's config.
func (c Config) ValidateListener() error {
	errs := []error{c.Validate()}
	if c.ListenAddress == "" {
		errs = append(errs, errors.New("listen_address: is required"))
	}
	if c.MaxConcurrentRequests < 1 || c.MaxConcurrentRequests > 100_000 {
		errs = append(errs, fmt.Errorf("max_concurrent_requests: must be in [1, 100000] (got %d)", c.MaxConcurrentRequests))
	}
	return errors.Join(errs...)
}

// ValidateBulker checks the bulker's config.
func (c Config) ValidateBulker() error {
	errs := []error{c.Validate()}
	if u, err := url.Parse(c.ControllerURL); err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("controller_url: want http(s)://host:port (got %q)", c.ControllerURL))
	}
	if c.PageSize < 1 || c.PageSize > bulker.MaxPageSize {
		errs = append(errs, fmt.Errorf("page_size: must be in [1, %d] (got %d)", bulker.MaxPageSize, c.PageSize))
	}
	if c.Workers < 1 || c.Workers > bulker.MaxWorkers {
		errs = append(errs, fmt.Errorf("workers: must be in [1, %d] (got %d)", bulker.MaxWorkers, c.Workers))
	}
	for _, d := range []struct {
		name string
		v    config.Duration
	}{{"communication_timeout", c.CommunicationTimeout}, {"domain_ttl", c.DomainTTL}, {"poll_interval", c.PollInterval}} {
		if d.v.D() <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be > 0 (got %s)", d.name, d.v))
		}
	}
	if c.DomainTTL.D() > 0 && c.DomainTTL.D() < time.Second {
		errs = append(errs, fmt.Errorf("domain_ttl: must be at least 1s (got %s)", c.DomainTTL))
	}
	if !c.DisableLock {
		if len(c.Etcd.Endpoints) == 0 {
			errs = append(errs, errors.New("etcd.endpoints: required for the nsync_bulker lock (or disable_lock)"))
		}
		if c.InstanceID == "" {
			errs = append(errs, errors.New("instance_id: is required"))
		}
		if c.LockTTL.D() < time.Second {
			errs = append(errs, fmt.Errorf("lock_ttl: must be at least 1s (got %s)", c.LockTTL))
		}
		if c.LockRetryInterval.D() <= 0 {
			errs = append(errs, fmt.Errorf("lock_retry_interval: must be > 0 (got %s)", c.LockRetryInterval))
		}
	}
	return errors.Join(errs...)
}

// Load reads a config file over the defaults.
func Load(path, debugAddress string) (Config, error) {
	cfg := DefaultConfig(debugAddress)
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}
