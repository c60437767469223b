// Package app wires the rep daemon: its config, the ordered group of runners
// of one cell (executor and backend, gRPC server, presence, harmonizer, and
// the evacuator that ends a drain: exit 0 when empty, an error naming the
// stranded work at the evacuation timeout), the
// farm of simulated cells that share one etcd and one BBS client, and the
// Prometheus collector of every cell's containers and resources.
package app

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/locket"
	"github.com/gavelhq/gavel/rep/backend/process"
	"github.com/gavelhq/gavel/rep/backend/runc"
)

// Defaults of the rep daemon.
const (
	DefaultListenAddress         = "127.0.0.1:1800"
	DefaultDebugAddress          = "127.0.0.1:17008"
	DefaultPresenceTTL           = 15 * time.Second
	DefaultPresenceRetryInterval = 5 * time.Second
	DefaultBulkSyncInterval      = 30 * time.Second
	// MaxClaimDelay bounds claim_delay, well below the BBS's 30 s after which
	// an UNCLAIMED instance is auctioned again.
	MaxClaimDelay             = 10 * time.Second
	DefaultReservedExpiration = time.Minute
	DefaultGraceTime          = 10 * time.Second
	DefaultEvacuationTimeout  = 600 * time.Second
	DefaultEvacuationPolling  = 10 * time.Second
	// BackendProcess, BackendSim, BackendRunc and BackendGarden name the
	// container backends.
	BackendProcess = "process"
	BackendSim     = "sim"
	BackendRunc    = "runc"
	BackendGarden  = "garden"
)

// ProcessConfig configures the process backend (see process.Config).
type ProcessConfig = process.Config

// RuncConfig configures the runc backend (see runc.Config).
type RuncConfig = runc.Config

// GardenConfig configures the garden backend: the cell drives a Garden
// server (Gavel's gavel-garden or Cloud Foundry's garden-runc).
type GardenConfig struct {
	// Network is "tcp" or "unix" (default unix).
	Network string `json:"network"`
	// Address is the server's host:port or socket path; required with the
	// garden backend.
	Address string `json:"address"`
	// MemoryLimitsEnforced says whether the server enforces memory limits
	// (default true: garden-runc and gavel-garden over runc do).
	MemoryLimitsEnforced bool `json:"memory_limits_enforced"`
}

// SimConfig configures the simulated backend.
type SimConfig struct {
	// StartDelay is the time from run to passing health checks (default 0).
	StartDelay config.Duration `json:"start_delay"`
	// RunDuration is how long a process runs before exiting 0 (default 0: forever).
	RunDuration config.Duration `json:"run_duration"`
	// CrashRate is the probability (0..1) that a process crashes (default 0).
	CrashRate float64 `json:"crash_rate"`
	// CrashWindow bounds when a crashing process crashes (default 10s).
	CrashWindow config.Duration `json:"crash_window"`
	// Seed seeds the crash draws (cell i of a farm uses seed+i).
	Seed uint64 `json:"seed"`
}

// CapacityConfig is the capacity the cell offers; zero fields are read from
// the backend.
type CapacityConfig struct {
	MemoryMB   int `json:"memory_mb"`
	DiskMB     int `json:"disk_mb"`
	Containers int `json:"containers"`
}

// Config is the rep's JSON config file.
type Config struct {
	// CellID names the cell; required. With SimCells, cell i is "<cell_id>-<i>".
	CellID string `json:"cell_id"`
	// Zone is the cell's availability zone.
	Zone string `json:"zone"`
	// Index orders cells for the bin-pack term of the auction (default 0).
	Index int32 `json:"index"`
	// ListenAddress is the RepService's host:port (default 127.0.0.1:1800; port 0 picks one).
	ListenAddress string `json:"listen_address"`
	// AdvertiseAddress is the host:port put in the presence (default the bound listen address).
	AdvertiseAddress string `json:"advertise_address"`
	// DebugAddress serves /metrics and /debug/pprof (default 127.0.0.1:17008).
	DebugAddress string `json:"debug_address"`
	// DebugTLS, when set (ca_file, cert_file, key_file), serves the debug
	// endpoints over HTTPS to client certificates of role operator only, on
	// any address; without it debug_address must be a loopback address.
	DebugTLS tlsconfig.Files `json:"debug_tls"`
	// LogLevel is debug, info, error or fatal (default info).
	LogLevel string `json:"log_level"`
	// KeyPrefix is the root of Gavel's etcd keys (default /gavel/v1/).
	KeyPrefix string `json:"key_prefix"`
	// Etcd is where the presence is registered; endpoints required.
	Etcd etcdclient.Config `json:"etcd"`
	// Locket selects where the presence lives: etcd (default) or Consul.
	Locket locket.Config `json:"locket"`
	// BBSAddresses are the host:port of every BBS replica; required.
	BBSAddresses []string `json:"bbs_addresses"`
	// TLS is the RepService's server certificate, key and the CA client
	// certificates (the BBS's, the auctioneer's) must chain to; all three
	// are required unless InsecurePlaintext.
	TLS tlsconfig.Files `json:"tls"`
	// BBSTLS is the client certificate presented to the BBS and the CA its
	// certificate must chain to; required unless InsecurePlaintext.
	BBSTLS tlsconfig.Files `json:"bbs_tls"`
	// InsecurePlaintext serves the RepService and dials the BBS without TLS,
	// and then tls and bbs_tls must be empty (default false: mutual TLS).
	// For development only; gavel dev sets it.
	InsecurePlaintext bool `json:"insecure_plaintext"`
	// Backend is "process" (default), "runc", "garden" or "sim".
	Backend string `json:"backend"`
	// Process configures the process backend.
	Process ProcessConfig `json:"process"`
	// Runc configures the runc backend.
	Runc RuncConfig `json:"runc"`
	// Garden configures the garden backend.
	Garden GardenConfig `json:"garden"`
	// Sim configures the simulated backend.
	Sim SimConfig `json:"sim"`
	// Capacity overrides the backend's capacity.
	Capacity CapacityConfig `json:"capacity"`
	// RootFSProviders maps a URL scheme to its stacks; an empty list accepts
	// any URL of the scheme (default {"preloaded": ["cflinuxfs4"], "docker": []}).
	RootFSProviders map[string][]string `json:"rootfs_providers"`
	// PlacementTags must all be asked for by the work placed here.
	PlacementTags []string `json:"placement_tags"`
	// OptionalPlacementTags may be asked for.
	OptionalPlacementTags []string `json:"optional_placement_tags"`
	// VolumeDrivers are the volume drivers offered.
	VolumeDrivers []string `json:"volume_drivers"`
	// ProxyMemoryMB is reserved on top of each LRP's memory (default 0).
	ProxyMemoryMB int32 `json:"proxy_memory_mb"`
	// PresenceTTL is the presence lease (default 15s).
	PresenceTTL config.Duration `json:"presence_ttl"`
	// PresenceRetryInterval is how often a lost presence is retried (default 5s).
	PresenceRetryInterval config.Duration `json:"presence_retry_interval"`
	// BulkSyncInterval is the time between bulk syncs with the BBS (default 30s).
	BulkSyncInterval config.Duration `json:"bulk_sync_interval"`
	// ClaimDelay, when > 0, runs a placed LRP instance at once and claims it
	// only if it is not running within the delay, so an instance that starts
	// sooner costs one BBS write less (its start is its first report). 0, the
	// default, claims before running, as Diego's rep does. At most
	// MaxClaimDelay: an UNCLAIMED instance is auctioned again once stale (30s).
	ClaimDelay config.Duration `json:"claim_delay"`
	// ReservedExpiration is how long a reservation waits to be run (default 1m).
	ReservedExpiration config.Duration `json:"reserved_expiration"`
	// GraceTime is the SIGTERM→SIGKILL wait when a container stops (default 10s).
	GraceTime config.Duration `json:"grace_time"`
	// StartupCheckInterval is the wait between startup health probes (default 2s).
	StartupCheckInterval config.Duration `json:"startup_check_interval"`
	// EvacuationTimeout bounds a drain (SIGUSR1 or the Drain RPC): a cell not
	// empty by then stops with an error naming what was stranded (default 600s).
	EvacuationTimeout config.Duration `json:"evacuation_timeout"`
	// EvacuationPollingInterval is the time between an evacuating cell's syncs
	// with the BBS, which find the replacements that run (default 10s).
	EvacuationPollingInterval config.Duration `json:"evacuation_polling_interval"`
	// DestroyContainersOnExit stops and destroys every container when the rep
	// stops, instead of leaving them running for the next rep to adopt
	// (default false; gavel dev sets it so Ctrl-C leaves no process behind).
	DestroyContainersOnExit bool `json:"destroy_containers_on_exit"`
	// LogArchive keeps the output of ended containers (crashed or stopped
	// instances, finished tasks) for gavel logs --recent / --previous.
	LogArchive LogArchiveConfig `json:"log_archive"`
	// SimCells runs this many simulated cells in the process (needs backend "sim"; default 0: one cell).
	SimCells int `json:"sim_cells"`
}

// LogArchiveConfig bounds the archive of ended containers' output.
type LogArchiveConfig struct {
	// Path persists the archive across rep restarts; empty keeps it in memory.
	Path string `json:"path"`
	// MaxPerApp is how many ended containers are kept per LRP or task (default 5).
	MaxPerApp int `json:"max_per_app"`
	// MaxBytes bounds the archive (default 4 MiB).
	MaxBytes int64 `json:"max_bytes"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ListenAddress:             DefaultListenAddress,
		DebugAddress:              DefaultDebugAddress,
		LogLevel:                  "info",
		KeyPrefix:                 locket.DefaultKeyPrefix,
		Backend:                   BackendProcess,
		Garden:                    GardenConfig{Network: "unix", MemoryLimitsEnforced: true},
		RootFSProviders:           map[string][]string{"preloaded": {"cflinuxfs4"}, "docker": {}},
		PresenceTTL:               config.Duration(DefaultPresenceTTL),
		PresenceRetryInterval:     config.Duration(DefaultPresenceRetryInterval),
		BulkSyncInterval:          config.Duration(DefaultBulkSyncInterval),
		ReservedExpiration:        config.Duration(DefaultReservedExpiration),
		GraceTime:                 config.Duration(DefaultGraceTime),
		StartupCheckInterval:      config.Duration(2 * time.Second),
		EvacuationTimeout:         config.Duration(DefaultEvacuationTimeout),
		EvacuationPollingInterval: config.Duration(DefaultEvacuationPolling),
	}
}

var namePattern = regexp.MustCompile(`^[a-zA-Z0-9_.:-]+$`)

// Validate checks the config without side effects; errors name the field.
func (c Config) Validate() error {
	var errs []error
	if err := debugserver.CheckConfig(c.DebugAddress, c.DebugTLS); err != nil {
		errs = append(errs, err)
	}
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := c.Locket.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !namePattern.MatchString(c.CellID) {
		add("cell_id: is required and must match %s (got %q)", namePattern, c.CellID)
	}
	if c.ListenAddress == "" {
		add("listen_address: is required")
	}
	if len(c.Etcd.Endpoints) == 0 && c.Locket.NeedsEtcd() {
		add("etcd.endpoints: is required when locket.backend is etcd (the presence is registered in etcd)")
	}
	if len(c.BBSAddresses) == 0 {
		add("bbs_addresses: is required")
	}
	switch c.Backend {
	case BackendProcess:
		errs = append(errs, c.Process.Validate("process")...)
	case BackendRunc:
		errs = append(errs, c.Runc.Validate("runc")...)
	case BackendGarden:
		switch c.Garden.Network {
		case "", "unix", "tcp":
		default:
			add("garden.network: must be \"unix\" or \"tcp\" (got %q)", c.Garden.Network)
		}
		if c.Garden.Address == "" {
			add("garden.address: is required with the garden backend")
		}
	case BackendSim:
		if c.Sim.CrashRate < 0 || c.Sim.CrashRate > 1 {
			add("sim.crash_rate: must be within 0..1 (got %g)", c.Sim.CrashRate)
		}
	default:
		add("backend: must be %q, %q, %q or %q (got %q)", BackendProcess, BackendRunc, BackendGarden, BackendSim, c.Backend)
	}
	if c.SimCells < 0 {
		add("sim_cells: must be >= 0 (got %d)", c.SimCells)
	}
	if c.SimCells > 0 && c.Backend != BackendSim {
		add("sim_cells: needs backend %q", BackendSim)
	}
	if c.Capacity.MemoryMB < 0 || c.Capacity.DiskMB < 0 || c.Capacity.Containers < 0 || c.ProxyMemoryMB < 0 {
		add("capacity, proxy_memory_mb: must be >= 0")
	}
	for name, d := range map[string]config.Duration{
		"presence_ttl": c.PresenceTTL, "presence_retry_interval": c.PresenceRetryInterval,
		"bulk_sync_interval": c.BulkSyncInterval, "reserved_expiration": c.ReservedExpiration,
		"grace_time": c.GraceTime, "startup_check_interval": c.StartupCheckInterval, "evacuation_timeout": c.EvacuationTimeout,
		"evacuation_polling_interval": c.EvacuationPollingInterval,
	} {
		if d.D() <= 0 {
			add("%s: must be > 0 (got %s)", name, d.D())
		}
	}
	if d := c.ClaimDelay.D(); d < 0 || d > MaxClaimDelay {
		add("claim_delay: must be between 0s and %s (got %s)", MaxClaimDelay, d)
	}
	if c.PresenceTTL.D() > 0 && c.PresenceTTL.D() < time.Second {
		add("presence_ttl: must be at least 1s (got %s)", c.PresenceTTL.D())
	}
	if c.InsecurePlaintext && c.ListenAddress != "" {
		if err := grpcserver.CheckPlaintextAddr(c.ListenAddress); err != nil {
			errs = append(errs, fmt.Errorf("listen_address: %w", err))
		}
	}
	errs = append(errs, tlsconfig.CheckMutual(c.InsecurePlaintext,
		tlsconfig.Hop{Field: "tls", Files: c.TLS, Role: tlsconfig.Server},
		tlsconfig.Hop{Field: "bbs_tls", Files: c.BBSTLS, Role: tlsconfig.Client},
	)...)
	return errors.Join(errs...)
}

// AdvertisedRootFSProviders is what the cell advertises: with the runc
// backend, the preloaded rootfses it can run and local docker and oci images
// (rootfs_providers is not used); with the process backend,
// rootfs_providers without docker and oci (it cannot run images); otherwise
// rootfs_providers.
func (c Config) AdvertisedRootFSProviders() map[string][]string {
	switch c.Backend {
	case BackendRunc:
	case BackendProcess:
		// Bare processes cannot run an image: a cell that advertised
		// docker or oci would run such work on the host instead.
		out := make(map[string][]string, len(c.RootFSProviders))
		for scheme, stacks := range c.RootFSProviders {
			if scheme != "docker" && scheme != "oci" {
				out[scheme] = stacks
			}
		}
		return out
	default:
		return c.RootFSProviders
	}
	names := make([]string, 0, len(c.Runc.Rootfses)+1)
	for name := range c.Runc.Rootfses {
		names = append(names, name)
	}
	if n := c.Runc.HostUserlandRootfs; n != "" {
		if _, dup := c.Runc.Rootfses[n]; !dup {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	// Local images (oci:///PATH, docker:///PATH.tar) are read from the
	// cell's own disk, so any path is accepted here and checked at create.
	return map[string][]string{"preloaded": names, "docker": {}, "oci": {}}
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
