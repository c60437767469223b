package bench

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Defaults of [Options]: `make bench` runs with these.
const (
	DefaultCells           = 1000
	DefaultInstancesPerLRP = 100
	DefaultInstances       = 100000
	DefaultSizes           = "64:4,128:3,256:2,512:1"
	DefaultCellsPerProcess = 250
	DefaultRawClients      = 64
	DefaultRawDuration     = 5 * time.Second
	DefaultRawValueBytes   = 512
	// DefaultBatchedClients is the BBS's default commit workers.
	DefaultBatchedClients = 4
	// DefaultBatchedKeysPerTxn is about what the BBS's 64 KiB transaction
	// bound holds of 512-byte records.
	DefaultBatchedKeysPerTxn = 128
	// MaxBatchedKeysPerTxn stays within the etcd's max-txn-ops (16384).
	MaxBatchedKeysPerTxn     = 16384
	DefaultDesireConcurrency = 8
	DefaultPresenceTTL       = 15 * time.Second
	// MaxClaimDelay is the rep's bound on claim_delay.
	MaxClaimDelay           = 10 * time.Second
	DefaultCellMemoryMB     = 32 << 10
	DefaultCellDiskMB       = 64 << 10
	DefaultCellContainers   = 250
	DefaultTimeout          = 10 * time.Minute
	DefaultRecoveryTimeout  = 3 * time.Minute
	DefaultLogLevel         = "error"
	DefaultProgressInterval = 5 * time.Second

	// DefaultMinAuctionInterval is the auctioneer's own default
	// min_auction_interval, shown by the CLI's flag.
	DefaultMinAuctionInterval = time.Second
	// MaxMinAuctionInterval is the auctioneer's bound on it.
	MaxMinAuctionInterval = 10 * time.Second
	// DefaultMaxAuctionInterval is the auctioneer's own default
	// max_auction_interval, shown by the CLI's flag.
	DefaultMaxAuctionInterval = 6 * time.Second
	// MaxMaxAuctionInterval is the auctioneer's bound on it.
	MaxMaxAuctionInterval = 30 * time.Second
	// DefaultEtcdMode keeps etcd embedded in the BBS, called in-process,
	// as the BBS runs by default. EtcdProcess measures etcd's CPU apart but
	// is not free: the loopback gRPC hop it adds cost about as much CPU
	// again for BBS+etcd per placed instance in one pair of 10k runs
	// (bench/RESULTS.md), so it is opt-in.
	DefaultEtcdMode = EtcdEmbedded
)

// Etcd modes of [Options.EtcdMode].
const (
	// EtcdProcess runs etcd as a gavel-etcd process (internal/etcdserver
	// standalone) and points the BBS at it as an external cluster, with the
	// limits and commit batch size the BBS gives its embedded etcd. The BBS
	// then reaches etcd over loopback gRPC.
	EtcdProcess = "process"
	// EtcdEmbedded runs etcd inside the BBS process, called in-process: the
	// BBS's CPU figure then includes etcd's.
	EtcdEmbedded = "embedded"
)

// Size is one entry of the size mix: LRPs of MemoryMB (and as much disk)
// make up Weight parts of the LRPs.
type Size struct {
	MemoryMB int32 `json:"memory_mb"`
	Weight   int   `json:"weight"`
}

// ParseSizes parses a size mix "MB:WEIGHT,..." such as "64:4,128:3,256:2,512:1".
func ParseSizes(s string) ([]Size, error) {
	var out []Size
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		mb, w, ok := strings.Cut(part, ":")
		if !ok {
			w = "1"
		}
		m, err := strconv.Atoi(mb)
		if err != nil || m <= 0 {
			return nil, fmt.Errorf("size %q: memory must be a positive number of MB", part)
		}
		n, err := strconv.Atoi(w)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("size %q: weight must be a positive integer", part)
		}
		out = append(out, Size{MemoryMB: int32(m), Weight: n})
	}
	if len(out) == 0 {
		return nil, errors.New("size mix is empty")
	}
	return out, nil
}

// ParseShare parses a share of cells: "10%" or "0.1".
func ParseShare(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	pct := strings.HasSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("share %q: want a percentage (10%%) or a fraction (0.1)", s)
	}
	if pct {
		v /= 100
	}
	if v < 0 || v >= 1 {
		return 0, fmt.Errorf("share %q: must be at least 0 and below 100%%", s)
	}
	return v, nil
}

// Options configure a run. Zero fields take the Default* constants.
type Options struct {
	// Cells is the number of simulated cells (default 1000).
	Cells int
	// Instances is the total number of instances (default 100,000); the
	// last LRP takes the remainder when InstancesPerLRP does not divide it.
	Instances int
	// InstancesPerLRP is the instances of each LRP (default 100).
	InstancesPerLRP int
	// Sizes is the size mix, LRPs taking sizes in turn by weight (default
	// DefaultSizes).
	Sizes []Size
	// CellsPerProcess caps the cells of one rep process (default 250).
	CellsPerProcess int
	// KillShare is the share of cells (0..1) SIGKILLed once every instance
	// runs; 0 skips the recovery phase.
	KillShare float64
	// BinDir holds prebuilt bbs, auctioneer and rep binaries, and
	// gavel-etcd for EtcdProcess; empty builds them with `go build` (the
	// working directory must be in the module).
	BinDir string
	// EtcdMode is EtcdEmbedded (default) or EtcdProcess.
	EtcdMode string
	// WorkDir is where the run's temporary directory is made (default the
	// system's temp dir); it is removed at the end unless KeepWorkDir.
	WorkDir     string
	KeepWorkDir bool
	// RawClients is the number of concurrent transactions of the raw etcd
	// measurement (default 64: the BBS's 4 commit workers × 16 clients).
	RawClients int
	// RawDuration is how long the raw measurement runs (default 5s).
	RawDuration time.Duration
	// RawValueBytes is the value size of the raw measurement (default 512,
	// about an actual LRP record).
	RawValueBytes int
	// BatchedClients and BatchedKeysPerTxn shape the batched etcd
	// measurement (defaults 4 and 128): BatchedClients transactions in
	// flight, each of BatchedKeysPerTxn nested guarded puts of
	// RawValueBytes, for RawDuration.
	BatchedClients, BatchedKeysPerTxn int
	// DesireConcurrency is the DesireLRP calls in flight (default 8).
	DesireConcurrency int
	// PresenceTTL is the cells' presence TTL (default 15s).
	PresenceTTL time.Duration
	// ClaimDelay is the cells' claim_delay (default 0: claim before running,
	// as Diego's rep does).
	ClaimDelay time.Duration
	// CellMemoryMB, CellDiskMB and CellContainers are each cell's capacity
	// (defaults 32768, 65536, 250).
	CellMemoryMB, CellDiskMB, CellContainers int
	// CommitWorkers and CommitBatchOps override the BBS's (0: its defaults).
	CommitWorkers, CommitBatchOps int
	// MinAuctionInterval, when set, is the auctioneer's min_auction_interval
	// (nil: the auctioneer's default, DefaultMinAuctionInterval).
	MinAuctionInterval *time.Duration
	// MaxAuctionInterval, when set, is the auctioneer's max_auction_interval
	// (nil: the auctioneer's default, DefaultMaxAuctionInterval).
	MaxAuctionInterval *time.Duration
	// Timeout bounds the placement phase (default 10m).
	Timeout time.Duration
	// RecoveryTimeout bounds the recovery phase (default 3m).
	RecoveryTimeout time.Duration
	// LogLevel is the daemons' log level (default error).
	LogLevel string
	// Progress receives a line every ProgressInterval (default 5s); nil
	// prints nothing.
	Progress         io.Writer
	ProgressInterval time.Duration
}

// withDefaults fills zero fields.
func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Cells, DefaultCells)
	def(&o.Instances, DefaultInstances)
	def(&o.InstancesPerLRP, DefaultInstancesPerLRP)
	def(&o.CellsPerProcess, DefaultCellsPerProcess)
	def(&o.RawClients, DefaultRawClients)
	def(&o.RawValueBytes, DefaultRawValueBytes)
	def(&o.BatchedClients, DefaultBatchedClients)
	def(&o.BatchedKeysPerTxn, DefaultBatchedKeysPerTxn)
	def(&o.DesireConcurrency, DefaultDesireConcurrency)
	def(&o.CellMemoryMB, DefaultCellMemoryMB)
	def(&o.CellDiskMB, DefaultCellDiskMB)
	def(&o.CellContainers, DefaultCellContainers)
	defD(&o.RawDuration, DefaultRawDuration)
	defD(&o.PresenceTTL, DefaultPresenceTTL)
	defD(&o.Timeout, DefaultTimeout)
	defD(&o.RecoveryTimeout, DefaultRecoveryTimeout)
	defD(&o.ProgressInterval, DefaultProgressInterval)
	if len(o.Sizes) == 0 {
		o.Sizes, _ = ParseSizes(DefaultSizes)
	}
	if o.LogLevel == "" {
		o.LogLevel = DefaultLogLevel
	}
	if o.EtcdMode == "" {
		o.EtcdMode = DefaultEtcdMode
	}
	return o
}

// Validate checks the options (after defaults) without side effects.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for name, v := range map[string]int{
		"cells": o.Cells, "instances": o.Instances, "instances-per-lrp": o.InstancesPerLRP,
		"cells-per-process": o.CellsPerProcess, "raw-clients": o.RawClients, "desire-concurrency": o.DesireConcurrency,
		"batched-clients": o.BatchedClients, "batched-keys-per-txn": o.BatchedKeysPerTxn,
		"cell-memory-mb": o.CellMemoryMB, "cell-disk-mb": o.CellDiskMB, "cell-containers": o.CellContainers,
	} {
		if v < 0 {
			bad("%s: must be positive (got %d)", name, v)
		}
	}
	if o.BatchedKeysPerTxn > MaxBatchedKeysPerTxn {
		bad("batched-keys-per-txn: must be at most %d (got %d)", MaxBatchedKeysPerTxn, o.BatchedKeysPerTxn)
	}
	if o.EtcdMode != EtcdProcess && o.EtcdMode != EtcdEmbedded {
		bad("etcd: want %q or %q (got %q)", EtcdProcess, EtcdEmbedded, o.EtcdMode)
	}
	if o.KillShare < 0 || o.KillShare >= 1 {
		bad("kill-cells: must be within [0, 1) (got %g)", o.KillShare)
	}
	if o.KillShare > 0 && o.killCount() >= o.Cells {
		bad("kill-cells: would kill every cell")
	}
	if iv := o.MinAuctionInterval; iv != nil && (*iv < 0 || *iv > MaxMinAuctionInterval) {
		bad("min-auction-interval: must be between 0s and %s (got %s)", MaxMinAuctionInterval, *iv)
	}
	if iv := o.MaxAuctionInterval; iv != nil && (*iv < 0 || *iv > MaxMaxAuctionInterval) {
		bad("max-auction-interval: must be between 0s and %s (got %s)", MaxMaxAuctionInterval, *iv)
	}
	if o.ClaimDelay < 0 || o.ClaimDelay > MaxClaimDelay {
		bad("claim-delay: must be between 0s and %s (got %s)", MaxClaimDelay, o.ClaimDelay)
	}
	if o.PresenceTTL < time.Second {
		bad("presence-ttl: must be at least 1s (got %s)", o.PresenceTTL)
	}
	for _, s := range o.Sizes {
		if s.MemoryMB <= 0 || s.Weight <= 0 || int(s.MemoryMB) > o.CellMemoryMB || int(s.MemoryMB) > o.CellDiskMB {
			bad("sizes: %d MB (weight %d) must be positive and fit a cell", s.MemoryMB, s.Weight)
		}
	}
	if capacity := o.Cells * o.CellContainers; o.Instances > capacity {
		bad("instances: %d exceed the cells' %d containers", o.Instances, capacity)
	}
	return errors.Join(errs...)
}

// killCount is the number of cells the recovery phase kills.
func (o Options) killCount() int {
	if o.KillShare <= 0 {
		return 0
	}
	return max(1, int(float64(o.Cells)*o.KillShare+0.5))
}

// lrpCount is the number of LRPs.
func (o Options) lrpCount() int {
	return (o.Instances + o.InstancesPerLRP - 1) / o.InstancesPerLRP
}

// lrpInstances is the instance count of LRP i.
func (o Options) lrpInstances(i int) int {
	if i == o.lrpCount()-1 {
		if rest := o.Instances - i*o.InstancesPerLRP; rest > 0 {
			return rest
		}
	}
	return o.InstancesPerLRP
}

// lrpMemory is the memory of LRP i: sizes in turn, by weight.
func (o Options) lrpMemory(i int) int32 {
	total := 0
	for _, s := range o.Sizes {
		total += s.Weight
	}
	slot := i % total
	for _, s := range o.Sizes {
		if slot < s.Weight {
			return s.MemoryMB
		}
		slot -= s.Weight
	}
	return o.Sizes[0].MemoryMB
}
