package app

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/locket"
)

// Defaults of the route emitter, Diego's unless noted.
const (
	DefaultNATSURL              = "nats://127.0.0.1:4222"
	DefaultBBSAddress           = "127.0.0.1:8889"
	DefaultDebugAddress         = "127.0.0.1:17009"
	DefaultNATSReconnectWait    = 500 * time.Millisecond
	DefaultNATSMaxReconnectWait = 10 * time.Second
	DefaultNATSPingInterval     = 20 * time.Second
	DefaultCommunicationTimeout = 30 * time.Second
	DefaultSyncInterval         = 60 * time.Second
	DefaultRegisterInterval     = 20 * time.Second
	DefaultJitterFactor         = 0.2
	DefaultUnregisterInterval   = 30 * time.Second
	DefaultUnregisterCount      = 20
	DefaultLockTTL              = 15 * time.Second
	DefaultLockRetryInterval    = 5 * time.Second
)

// LockName is the lock a global-mode emitter holds.
const LockName = "route_emitter"

// Config is the route emitter's JSON config file.
type Config struct {
	// NATSURLs are the NATS servers, "nats://[user:password@]host:port" or
	// "tls://…" (default ["nats://127.0.0.1:4222"]); the client fails over between them.
	NATSURLs []string `json:"nats_urls"`
	// NATSUsername and NATSPassword authenticate to NATS when the URLs carry no credentials.
	NATSUsername string `json:"nats_username"`
	// NATSPassword is NATSUsername's password.
	NATSPassword string `json:"nats_password"`
	// NATSTLS enables TLS to NATS: the CA to verify servers, and a client certificate for mTLS.
	NATSTLS tlsconfig.Files `json:"nats_tls"`
	// NATSReconnectWait is the first wait between reconnection rounds, doubling up to NATSMaxReconnectWait (default 500ms).
	NATSReconnectWait config.Duration `json:"nats_reconnect_wait"`
	// NATSMaxReconnectWait caps the reconnection back-off (default 10s). The emitter never gives up.
	NATSMaxReconnectWait config.Duration `json:"nats_max_reconnect_wait"`
	// NATSPingInterval is the NATS client's ping interval (default 20s).
	NATSPingInterval config.Duration `json:"nats_ping_interval"`

	// BBSAddresses are the host:port of every BBS replica (default ["127.0.0.1:8889"]).
	BBSAddresses []string `json:"bbs_addresses"`
	// BBSTLS is the client certificate presented to the BBS and the CA its
	// certificate must chain to; required unless InsecurePlaintext.
	BBSTLS tlsconfig.Files `json:"bbs_tls"`
	// InsecurePlaintext dials the BBS without TLS, and then bbs_tls must be
	// empty (default false: mutual TLS). For development only; gavel dev
	// sets it. NATS TLS (nats_tls) is separate and stays optional.
	InsecurePlaintext bool `json:"insecure_plaintext"`
	// CommunicationTimeout bounds each BBS list (default 30s).
	CommunicationTimeout config.Duration `json:"communication_timeout"`

	// CellID, when set, runs cell-local: only this cell's instances, no lock.
	CellID string `json:"cell_id"`
	// InstanceID names this emitter in the lock (default hostname-pid).
	InstanceID string `json:"instance_id"`
	// KeyPrefix is the root of Gavel's etcd keys (default /gavel/v1/).
	KeyPrefix string `json:"key_prefix"`
	// Etcd is where the route_emitter lock lives; required in global mode unless DisableLock.
	Etcd etcdclient.Config `json:"etcd"`
	// Locket selects where the lock lives: etcd (default) or Consul.
	Locket locket.Config `json:"locket"`
	// DisableLock runs a global-mode emitter without the lock: only for a
	// single emitter (gavel dev).
	DisableLock bool `json:"disable_lock"`
	// LockTTL is the lock's lease (default 15s).
	LockTTL config.Duration `json:"lock_ttl"`
	// LockRetryInterval is how often a standby emitter retries the lock (default 5s).
	LockRetryInterval config.Duration `json:"lock_retry_interval"`

	// SyncInterval is the time between full BBS resyncs (default 60s).
	SyncInterval config.Duration `json:"sync_interval"`
	// RegisterInterval is the re-broadcast period until a router advertises its own (default 20s).
	RegisterInterval config.Duration `json:"register_interval"`
	// JitterFactor bounds the random delay before the broadcast that follows
	// a router.start, as a fraction of the interval (default 0.2; 0 disables it).
	JitterFactor float64 `json:"jitter_factor"`
	// UnregisterInterval is the time between re-sends of an unregister (default 30s).
	UnregisterInterval config.Duration `json:"unregister_interval"`
	// UnregisterCount is how many times in all an unregister is sent (default 20).
	UnregisterCount int `json:"unregister_count"`
	// RouteStaleThreshold is sent as stale_threshold_in_seconds. Unset by
	// default, as Diego's route emitter sends none: each router then applies
	// its own droplet_stale_threshold (a value here would cap routers
	// configured above it).
	RouteStaleThreshold config.Duration `json:"route_stale_threshold"`
	// DirectInstanceRoutes registers container addresses and ports instead of the cell's.
	DirectInstanceRoutes bool `json:"direct_instance_routes"`

	// DebugAddress serves /metrics and /debug/pprof (default 127.0.0.1:17009; empty disables).
	DebugAddress string `json:"debug_address"`
	// DebugTLS, when set (ca_file, cert_file, key_file), serves the debug
	// endpoints over HTTPS to client certificates of role operator only, on
	// any address; without it debug_address must be a loopback address.
	DebugTLS tlsconfig.Files `json:"debug_tls"`
	// LogLevel is debug, info, error or fatal (default info).
	LogLevel string `json:"log_level"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NATSURLs:             []string{DefaultNATSURL},
		NATSReconnectWait:    config.Duration(DefaultNATSReconnectWait),
		NATSMaxReconnectWait: config.Duration(DefaultNATSMaxReconnectWait),
		NATSPingInterval:     config.Duration(DefaultNATSPingInterval),
		BBSAddresses:         []string{DefaultBBSAddress},
		CommunicationTimeout: config.Duration(DefaultCommunicationTimeout),
		InstanceID:           fmt.Sprintf("%s-%d", host, os.Getpid()),
		LockTTL:              config.Duration(DefaultLockTTL),
		LockRetryInterval:    config.Duration(DefaultLockRetryInterval),
		SyncInterval:         config.Duration(DefaultSyncInterval),
		RegisterInterval:     config.Duration(DefaultRegisterInterval),
		JitterFactor:         DefaultJitterFactor,
		UnregisterInterval:   config.Duration(DefaultUnregisterInterval),
		UnregisterCount:      DefaultUnregisterCount,
		DebugAddress:         DefaultDebugAddress,
		LogLevel:             "info",
	}
}

// Global says whether the emitter runs in global mode (no cell id).
func (c Config) Global() bool { return c.CellID == "" }

// Validate checks the config without side effects; errors name the field.
func (c Config) Validate() error {
	var errs []error
	if err := debugserver.CheckConfig(c.DebugAddress, c.DebugTLS); err != nil {
		errs = append(errs, err)
	}
	if err := c.Locket.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.NATSURLs) == 0 {
		errs = append(errs, errors.New("nats_urls: at least one is required"))
	}
	for i, u := range c.NATSURLs {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			errs = append(errs, fmt.Errorf("nats_urls[%d]: want nats://host:port or tls://host:port (got %q)", i, u))
		}
	}
	if (c.NATSUsername == "") != (c.NATSPassword == "") {
		errs = append(errs, errors.New("nats_username, nats_password: set both or neither"))
	}
	if len(c.BBSAddresses) == 0 {
		errs = append(errs, errors.New("bbs_addresses: at least one is required"))
	}
	positive := []struct {
		name string
		d    config.Duration
	}{
		{"nats_reconnect_wait", c.NATSReconnectWait}, {"nats_max_reconnect_wait", c.NATSMaxReconnectWait},
		{"nats_ping_interval", c.NATSPingInterval}, {"communication_timeout", c.CommunicationTimeout},
		{"sync_interval", c.SyncInterval}, {"register_interval", c.RegisterInterval},
		{"unregister_interval", c.UnregisterInterval},
	}
	for _, p := range positive {
		if p.d.D() <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be > 0 (got %s)", p.name, p.d))
		}
	}
	if c.JitterFactor < 0 || c.JitterFactor >= 1 {
		errs = append(errs, fmt.Errorf("jitter_factor: must be in [0, 1) (got %g)", c.JitterFactor))
	}
	if c.UnregisterCount < 1 {
		errs = append(errs, fmt.Errorf("unregister_count: must be >= 1 (got %d)", c.UnregisterCount))
	}
	if c.RouteStaleThreshold.D() < 0 {
		errs = append(errs, fmt.Errorf("route_stale_threshold: must be >= 0 (got %s)", c.RouteStaleThreshold))
	}
	if c.Global() && !c.DisableLock {
		if len(c.Etcd.Endpoints) == 0 && c.Locket.NeedsEtcd() {
			errs = append(errs, errors.New("etcd.endpoints: required for the route_emitter lock in global mode when locket.backend is etcd (or set cell_id, or disable_lock, or use consul)"))
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
	if _, err := c.NATSTLS.Client(""); c.NATSTLS.Enabled() && err != nil {
		errs = append(errs, fmt.Errorf("nats_tls: %w", err))
	}
	errs = append(errs, tlsconfig.CheckMutual(c.InsecurePlaintext,
		tlsconfig.Hop{Field: "bbs_tls", Files: c.BBSTLS, Role: tlsconfig.Client},
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
