package app

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/auctionrunner"
	"github.com/gavelhq/gavel/auctioneer/strategyfile"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/internal/logging"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/locket"
)

// Defaults of the auctioneer daemon (Diego's, reference auction.md §2.3).
const (
	// DefaultListenAddress is the gRPC API's address (Diego's port 9016).
	DefaultListenAddress = "127.0.0.1:9016"
	// DefaultDebugAddress serves metrics and pprof (Diego's 17001).
	DefaultDebugAddress = "127.0.0.1:17001"
	// DefaultLogLevel is info.
	DefaultLogLevel = logging.LevelInfo
	// DefaultLockTTL is the auctioneer lock's lease.
	DefaultLockTTL = 15 * time.Second
	// DefaultLockRetryInterval is how often a standby retries the lock.
	DefaultLockRetryInterval = 5 * time.Second
	// DefaultCellStateTimeout bounds one cell's State call.
	DefaultCellStateTimeout = auctionrunner.DefaultCellStateTimeout
	// DefaultCellStateWorkers caps the State calls in flight.
	DefaultCellStateWorkers = auctionrunner.DefaultCellStateWorkers
	// DefaultCommunicationTimeout bounds Perform and BBS calls.
	DefaultCommunicationTimeout = auctionrunner.DefaultCommunicationTimeout
	// DefaultCellStateMaxAge is how long a cell's kept state stands in for
	// a State call.
	DefaultCellStateMaxAge = 5 * time.Second
	// MaxCellStateMaxAge bounds cell_state_max_age.
	MaxCellStateMaxAge = time.Minute
	// DefaultMinAuctionInterval is the least time between the starts of two
	// auctions while work keeps arriving.
	DefaultMinAuctionInterval = time.Second
	// MaxMinAuctionInterval bounds min_auction_interval.
	MaxMinAuctionInterval = 10 * time.Second
	// DefaultMaxAuctionInterval is how long a busy auctioneer may hold a
	// sparse batch after the last auction started.
	DefaultMaxAuctionInterval = 6 * time.Second
	// MaxMaxAuctionInterval bounds max_auction_interval.
	MaxMaxAuctionInterval = 30 * time.Second
)

// Config is the auctioneer's JSON config file.
type Config struct {
	// ListenAddress is the gRPC API's host:port (default 127.0.0.1:9016);
	// it is also the value of the auctioneer lock, so it must be reachable
	// by the BBS (port 0 picks a free port and advertises it).
	ListenAddress string `json:"listen_address"`
	// DebugAddress serves /metrics and /debug/pprof (default 127.0.0.1:17001).
	DebugAddress string `json:"debug_address"`
	// DebugTLS, when set (ca_file, cert_file, key_file), serves the debug
	// endpoints over HTTPS to client certificates of role operator only, on
	// any address; without it debug_address must be a loopback address.
	DebugTLS tlsconfig.Files `json:"debug_tls"`
	// LogLevel is debug, info, error or fatal (default info).
	LogLevel string `json:"log_level"`
	// InstanceID names this replica in the auctioneer lock (default hostname-pid).
	InstanceID string `json:"instance_id"`
	// KeyPrefix is the root of Gavel's etcd keys; it must be the BBS's (default /gavel/v1/).
	KeyPrefix string `json:"key_prefix"`
	// Etcd is the etcd cluster holding the locks and cell presences (required).
	Etcd etcdclient.Config `json:"etcd"`
	// Locket selects where the lock and the cell presences live: etcd
	// (default) or Consul.
	Locket locket.Config `json:"locket"`
	// TLS is the API's server certificate, key and the CA client
	// certificates must chain to; all three are required unless
	// InsecurePlaintext.
	TLS tlsconfig.Files `json:"tls"`
	// BBSAddresses are the host:port of every BBS replica (required).
	BBSAddresses []string `json:"bbs_addresses"`
	// BBSTLS is the client certificate presented to the BBS and the CA its
	// certificate must chain to; required unless InsecurePlaintext.
	BBSTLS tlsconfig.Files `json:"bbs_tls"`
	// RepClientTLS is the client certificate presented to the cells' reps and
	// the CA theirs must chain to; required unless InsecurePlaintext.
	RepClientTLS tlsconfig.Files `json:"rep_client_tls"`
	// InsecurePlaintext serves the API and dials the BBS and the reps without
	// TLS, and then tls, bbs_tls and rep_client_tls must be empty (default
	// false: mutual TLS). For development only; gavel dev sets it.
	InsecurePlaintext bool `json:"insecure_plaintext"`
	// LockTTL is the auctioneer lock's lease (default 15s, at least 1s).
	LockTTL config.Duration `json:"lock_ttl"`
	// LockRetryInterval is how often a standby retries the lock (default 5s).
	LockRetryInterval config.Duration `json:"lock_retry_interval"`
	// CellStateTimeout bounds each cell's State call (default 10s).
	CellStateTimeout config.Duration `json:"cell_state_timeout"`
	// CellStateWorkers caps the State calls in flight (default 1000).
	CellStateWorkers int `json:"cell_state_workers"`
	// CellStateMaxAge is how long a cell's state, kept with the placements
	// sent to it since, stands in for a State call before the cell is asked
	// again (default 5s, at most 1m; 0s asks every cell before every
	// auction, as Diego does). See auctionrunner.Options.StateMaxAge.
	CellStateMaxAge config.Duration `json:"cell_state_max_age"`
	// MinAuctionInterval is the least time from one auction's start to the
	// next one's while work keeps arriving (default 1s, at most 10s); work
	// that arrives after a quiet interval is auctioned at once, and a wait
	// ends early once the work reaches 4 items per live cell. 0s starts
	// the next auction as soon as work is waiting, as Diego does. See
	// auctionrunner.Options.MinInterval.
	MinAuctionInterval config.Duration `json:"min_auction_interval"`
	// MaxAuctionInterval is how long after the last auction's start a busy
	// auctioneer (its last auction took longer than half of
	// min_auction_interval) holds work that comes to fewer than 2 items per
	// live cell, so that a large fleet is not sent a Perform (and does not
	// claim and start) per instance (default 6s; 0s, or not above
	// min_auction_interval, never holds, nor does min_auction_interval 0s;
	// at most 30s). A batch with a repair in it is never held. See
	// auctionrunner.Options.MaxInterval.
	MaxAuctionInterval config.Duration `json:"max_auction_interval"`
	// CommunicationTimeout bounds each Perform and each BBS write-back (default 10s).
	CommunicationTimeout config.Duration `json:"communication_timeout"`
	// StartingContainerWeight is the score per starting container (default 0.25, >= 0).
	StartingContainerWeight float64 `json:"starting_container_weight"`
	// BinPackFirstFitWeight is the score per normalised cell index (default 0, 0..1).
	BinPackFirstFitWeight float64 `json:"bin_pack_first_fit_weight"`
	// MaxInflightStarts caps the containers starting across all cells (default 0: no cap).
	MaxInflightStarts int `json:"max_inflight_starts"`
	// Strategy names the placement strategy: diego (default), binpack or spread.
	Strategy string `json:"strategy"`
	// StrategyFile is a strategy file (JSON or YAML, package
	// auctioneer/strategyfile): a base strategy with weights, or a CEL
	// score. When set it replaces Strategy; it is read and compiled at
	// startup (default "": none).
	StrategyFile string `json:"strategy_file"`
	// Seed drives the tie-breaking shuffle; auction n uses seed + n (default 0).
	Seed int64 `json:"seed"`
}

// DefaultConfig returns the defaults. Etcd endpoints and BBS addresses
// have none and must be set.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		ListenAddress:           DefaultListenAddress,
		DebugAddress:            DefaultDebugAddress,
		LogLevel:                DefaultLogLevel,
		InstanceID:              fmt.Sprintf("%s-%d", host, os.Getpid()),
		LockTTL:                 config.Duration(DefaultLockTTL),
		LockRetryInterval:       config.Duration(DefaultLockRetryInterval),
		CellStateTimeout:        config.Duration(DefaultCellStateTimeout),
		CellStateWorkers:        DefaultCellStateWorkers,
		CellStateMaxAge:         config.Duration(DefaultCellStateMaxAge),
		MinAuctionInterval:      config.Duration(DefaultMinAuctionInterval),
		MaxAuctionInterval:      config.Duration(DefaultMaxAuctionInterval),
		CommunicationTimeout:    config.Duration(DefaultCommunicationTimeout),
		StartingContainerWeight: auctioneer.DefaultStartingContainerWeight,
		BinPackFirstFitWeight:   auctioneer.DefaultBinPackFirstFitWeight,
		MaxInflightStarts:       auctioneer.DefaultMaxInflightStarts,
		Strategy:                auctioneer.DefaultStrategy,
	}
}

// EngineOptions returns the placement options the config sets.
func (c Config) EngineOptions() auctioneer.Options {
	return auctioneer.Options{
		Strategy:                c.Strategy,
		StartingContainerWeight: c.StartingContainerWeight,
		BinPackFirstFitWeight:   c.BinPackFirstFitWeight,
		MaxInflightStarts:       c.MaxInflightStarts,
		Seed:                    c.Seed,
	}
}

// Engine returns the placement options the config sets, with the strategy
// file, when there is one, read, compiled and registered as the strategy
// (nil file otherwise). observe, when not nil, is given every failed
// evaluation of the file's score (see strategyfile.File.RegisterObserved).
func (c Config) Engine(observe func(error)) (auctioneer.Options, *strategyfile.File, error) {
	opts := c.EngineOptions()
	if c.StrategyFile == "" {
		return opts, nil, nil
	}
	f, err := strategyfile.Load(c.StrategyFile)
	if err != nil {
		return opts, nil, fmt.Errorf("strategy_file: %w", err)
	}
	reg := auctioneer.NewRegistry()
	if err := f.RegisterObserved(reg, observe); err != nil {
		return opts, nil, fmt.Errorf("strategy_file: %w", err)
	}
	opts.Strategy, opts.Registry = f.Name(), reg
	return opts, f, nil
}

// Validate checks the config without side effects (TLS files are read,
// not kept); the error names every bad field.
func (c Config) Validate() error {
	var errs []error
	if err := debugserver.CheckConfig(c.DebugAddress, c.DebugTLS); err != nil {
		errs = append(errs, err)
	}
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf(field+": "+format, args...))
	}
	if c.ListenAddress == "" {
		bad("listen_address", "is required")
	}
	if err := c.Locket.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		bad("log_level", "%v", err)
	}
	if c.InstanceID == "" {
		bad("instance_id", "is required")
	}
	if len(c.Etcd.Endpoints) == 0 && c.Locket.NeedsEtcd() {
		bad("etcd.endpoints", "at least one endpoint is required when locket.backend is etcd")
	}
	if len(c.BBSAddresses) == 0 {
		bad("bbs_addresses", "at least one address is required")
	}
	for i, a := range c.BBSAddresses {
		if strings.TrimSpace(a) == "" {
			bad(fmt.Sprintf("bbs_addresses[%d]", i), "is empty")
		}
	}
	if c.LockTTL.D() < time.Second {
		bad("lock_ttl", "must be at least 1s (got %s)", c.LockTTL)
	}
	if c.LockRetryInterval.D() <= 0 {
		bad("lock_retry_interval", "must be > 0 (got %s)", c.LockRetryInterval)
	}
	if c.CellStateTimeout.D() <= 0 {
		bad("cell_state_timeout", "must be > 0 (got %s)", c.CellStateTimeout)
	}
	if c.CellStateWorkers < 1 {
		bad("cell_state_workers", "must be >= 1 (got %d)", c.CellStateWorkers)
	}
	if a := c.CellStateMaxAge.D(); a < 0 || a > MaxCellStateMaxAge {
		bad("cell_state_max_age", "must be between 0s and %s (got %s)", MaxCellStateMaxAge, c.CellStateMaxAge)
	}
	if iv := c.MinAuctionInterval.D(); iv < 0 || iv > MaxMinAuctionInterval {
		bad("min_auction_interval", "must be between 0s and %s (got %s)", MaxMinAuctionInterval, c.MinAuctionInterval)
	}
	if iv := c.MaxAuctionInterval.D(); iv < 0 || iv > MaxMaxAuctionInterval {
		bad("max_auction_interval", "must be between 0s and %s (got %s)", MaxMaxAuctionInterval, c.MaxAuctionInterval)
	}
	if c.CommunicationTimeout.D() <= 0 {
		bad("communication_timeout", "must be > 0 (got %s)", c.CommunicationTimeout)
	}
	if err := c.EngineOptions().Validate(); err != nil {
		errs = append(errs, err)
	}
	if names := auctioneer.NewRegistry().Names(); c.StrategyFile == "" && !slices.Contains(names, c.Strategy) {
		bad("strategy", "unknown strategy %q (known: %s)", c.Strategy, strings.Join(names, ", "))
	}
	if c.StrategyFile != "" {
		if _, err := strategyfile.Load(c.StrategyFile); err != nil {
			bad("strategy_file", "%v", err)
		}
	}
	if c.InsecurePlaintext && c.ListenAddress != "" {
		if err := grpcserver.CheckPlaintextAddr(c.ListenAddress); err != nil {
			errs = append(errs, fmt.Errorf("listen_address: %w", err))
		}
	}
	errs = append(errs, tlsconfig.CheckMutual(c.InsecurePlaintext,
		tlsconfig.Hop{Field: "tls", Files: c.TLS, Role: tlsconfig.Server},
		tlsconfig.Hop{Field: "bbs_tls", Files: c.BBSTLS, Role: tlsconfig.Client},
		tlsconfig.Hop{Field: "rep_client_tls", Files: c.RepClientTLS, Role: tlsconfig.Client},
	)...)
	if c.Etcd.TLS.Enabled() {
		if _, err := c.Etcd.TLS.Client(""); err != nil {
			bad("etcd.tls", "%v", err)
		}
	}
	return errors.Join(errs...)
}

// Load reads a config file over the defaults (an empty path gives the
// defaults). It does not validate.
func Load(path string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}
