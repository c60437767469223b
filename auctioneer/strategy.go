package auctioneer

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Strategy scores cells for work items. The engine has already filtered
// the cells (rootfs, volume drivers, placement tags) and checked the fit
// (memory plus proxy allowance for LRPs, disk, one container); the strategy
// only ranks the survivors. Lower scores win; the first cell seen keeps a
// tie, and the cell order is a seeded shuffle.
//
// Score is called once per (item, fitting cell), or, for a strategy that
// implements Indexable, once per candidate cell the engine's cell index
// cannot rule out; it must be cheap, must not block, must not return NaN,
// and must not retain c or w. The engine
// calls a Strategy from one goroutine at a time; one Strategy value serves
// one run.
type Strategy interface {
	// Score returns the cost of placing w on c; lower is better.
	Score(c *Cell, w *Work) float64
	// BalanceZones reports whether LRPs walk zones from the fewest
	// instances of their app first (Diego's AZ balancing, reference §1.7).
	// When false every fitting cell competes on score alone.
	BalanceZones() bool
}

// Options configure a run. The zero value is not valid; start from
// DefaultOptions.
type Options struct {
	// Strategy names the strategy in the registry; "" means "diego".
	Strategy string
	// StartingContainerWeight is Diego's score weight per starting
	// container (default 0.25; must be >= 0).
	StartingContainerWeight float64
	// BinPackFirstFitWeight is Diego's weight per normalised cell index
	// (default 0, EXPERIMENTAL in Diego; 0..1).
	BinPackFirstFitWeight float64
	// MaxInflightStarts caps the containers starting across all cells;
	// 0 means unlimited (default 0; must be >= 0).
	MaxInflightStarts int
	// Seed drives the tie-breaking shuffle; the same seed replays a run.
	Seed int64
	// Registry resolves Strategy; nil means NewRegistry().
	Registry *Registry
}

// Defaults that match Diego (reference §2.3).
const (
	// DefaultStrategy is the strategy used when Options.Strategy is empty.
	DefaultStrategy = "diego"
	// DefaultStartingContainerWeight is Diego's BOSH default.
	DefaultStartingContainerWeight = 0.25
	// DefaultBinPackFirstFitWeight is Diego's BOSH default.
	DefaultBinPackFirstFitWeight = 0.0
	// DefaultMaxInflightStarts means no cap.
	DefaultMaxInflightStarts = 0
	// LocalityOffset is added per co-located instance of the same app
	// (per task on the cell, for tasks) in Diego's score.
	LocalityOffset = 1000
)

// DefaultOptions returns Diego's defaults.
func DefaultOptions() Options {
	return Options{
		Strategy:                DefaultStrategy,
		StartingContainerWeight: DefaultStartingContainerWeight,
		BinPackFirstFitWeight:   DefaultBinPackFirstFitWeight,
		MaxInflightStarts:       DefaultMaxInflightStarts,
	}
}

// Validate checks the options shared by every strategy, naming the first
// bad field. It has no side effects.
func (o Options) Validate() error {
	switch {
	case math.IsNaN(o.StartingContainerWeight) || math.IsInf(o.StartingContainerWeight, 0) || o.StartingContainerWeight < 0:
		return fmt.Errorf("%w: starting_container_weight: must be a finite number >= 0", ErrInvalidOptions)
	case math.IsNaN(o.BinPackFirstFitWeight) || o.BinPackFirstFitWeight < 0 || o.BinPackFirstFitWeight > 1:
		return fmt.Errorf("%w: bin_pack_first_fit_weight: must be between 0 and 1", ErrInvalidOptions)
	case o.MaxInflightStarts < 0:
		return fmt.Errorf("%w: max_inflight_starts: must be >= 0 (0 means unlimited)", ErrInvalidOptions)
	}
	return nil
}

// Constructor builds a strategy from validated options; it may reject
// options the strategy cannot honour.
type Constructor func(Options) (Strategy, error)

// Registry maps strategy names to constructors. It is not safe for
// concurrent Register calls; build it before use.
type Registry struct {
	ctors map[string]Constructor
}

// NewRegistry returns a registry holding the built-in strategies: diego,
// binpack and spread.
func NewRegistry() *Registry {
	return &Registry{ctors: map[string]Constructor{
		"diego":   NewDiego,
		"binpack": NewBinPack,
		"spread":  NewSpread,
	}}
}

// Register adds a strategy under name; it fails if the name is taken or
// empty.
func (r *Registry) Register(name string, c Constructor) error {
	if name == "" || c == nil {
		return fmt.Errorf("register strategy %q: name and constructor are required", name)
	}
	if _, ok := r.ctors[name]; ok {
		return fmt.Errorf("register strategy %q: already registered", name)
	}
	r.ctors[name] = c
	return nil
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.ctors))
	for n := range r.ctors {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New validates opts and builds the strategy it names.
func (r *Registry) New(opts Options) (Strategy, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	name := opts.Strategy
	if name == "" {
		name = DefaultStrategy
	}
	ctor, ok := r.ctors[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownStrategy, name, strings.Join(r.Names(), ", "))
	}
	s, err := ctor(opts)
	if err != nil {
		return nil, fmt.Errorf("strategy %q: %w", name, err)
	}
	return s, nil
}
