package strategyfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gavelhq/gavel/auctioneer"
)

// Bounds of a strategy file.
const (
	// MaxFileBytes bounds a strategy file.
	MaxFileBytes = 64 << 10
	// MaxScoreBytes bounds the score expression.
	MaxScoreBytes = 4096
	// MaxParams bounds the params a file declares.
	MaxParams = 64
	// MaxNameBytes bounds the name and each param name.
	MaxNameBytes = 64
	// MaxCost bounds the estimated worst-case cost of one evaluation of the
	// score (cel-go cost units: about one per variable read, operator or
	// list element visited). It admits one pass over a tag list checking
	// membership in another (about 10,600) and refuses deeper nesting: a
	// score runs once per (item, fitting cell), so an auction of 1,000
	// items on 1,000 cells evaluates it a million times.
	MaxCost = 11_000
	// MaxListItems is the size the cost estimate assumes for a list variable
	// (tags, drivers); it is the BBS's bound on a list (models.MaxListItems).
	MaxListItems = 100
	// MaxStringBytes is the size the cost estimate assumes for a string
	// variable.
	MaxStringBytes = 1024
)

// ErrInvalidStrategy is wrapped by every strategy file error.
var ErrInvalidStrategy = errors.New("invalid strategy file")

// Spec is a strategy file's content. Exactly one of Base and Score is set.
// JSON and YAML are both accepted (YAML is read as JSON); unknown fields
// are refused.
type Spec struct {
	// Name labels the strategy in reports and registers it (default
	// "file-" and the first 12 hex digits of the file's sha256); lower-case
	// letters, digits, '.', '_' and '-', and not a built-in strategy name.
	Name string `json:"name,omitempty"`
	// Description is free text carried into reports.
	Description string `json:"description,omitempty"`
	// Base names a compiled strategy to run: diego, binpack or spread.
	Base string `json:"base,omitempty"`
	// Score is a CEL expression of type double or int over the documented
	// variables (README.md); lower scores win.
	Score string `json:"score,omitempty"`
	// BalanceZones makes LRPs walk zones from the fewest instances of their
	// app first (Diego's AZ balancing). Default: the base's own choice (true
	// for diego, false for binpack and spread), false for a score.
	BalanceZones *bool `json:"balance_zones,omitempty"`
	// StartingContainerWeight replaces the run's starting_container_weight
	// (finite, >= 0); a score reads it as params.starting_container_weight.
	StartingContainerWeight *float64 `json:"starting_container_weight,omitempty"`
	// BinPackFirstFitWeight replaces the run's bin_pack_first_fit_weight
	// (0..1); a score reads it as params.bin_pack_first_fit_weight.
	BinPackFirstFitWeight *float64 `json:"bin_pack_first_fit_weight,omitempty"`
	// Params are named finite numbers a score reads as params.NAME; a sweep
	// may override them.
	Params map[string]float64 `json:"params,omitempty"`
}

// Engine parameters every strategy reads from the run's options unless
// the file or a sweep sets them.
const (
	// ParamStartingContainerWeight is the starting_container_weight parameter.
	ParamStartingContainerWeight = "starting_container_weight"
	// ParamBinPackFirstFitWeight is the bin_pack_first_fit_weight parameter.
	ParamBinPackFirstFitWeight = "bin_pack_first_fit_weight"
)

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
var paramPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// File is a parsed, validated and compiled strategy file. It is immutable
// and safe for concurrent use; each run gets its own Strategy from New.
type File struct {
	spec   Spec
	source []byte
	hash   string
	path   string
	name   string
	expr   *expression // nil for a base strategy
}

// Load reads, validates and compiles the strategy file at path.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("strategy file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("strategy file %s: %w", path, err)
	}
	sf, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("strategy file %s: %w", path, err)
	}
	sf.path = path
	return sf, nil
}

// Parse validates and compiles a strategy file's content (JSON or YAML).
// The error names the bad field; for a score it carries the CEL error with
// its line and column.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%w: file is larger than %d bytes", ErrInvalidStrategy, MaxFileBytes)
	}
	var spec Spec
	if err := yaml.UnmarshalStrict(data, &spec); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidStrategy, err)
	}
	sum := sha256.Sum256(data)
	f := &File{spec: spec, source: slices.Clone(data), hash: hex.EncodeToString(sum[:])}
	if err := f.compile(); err != nil {
		return nil, err
	}
	return f, nil
}

// compile validates the spec and compiles its score.
func (f *File) compile() error {
	s := &f.spec
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidStrategy, field, fmt.Sprintf(format, args...))
	}
	builtins := auctioneer.NewRegistry().Names()
	f.name = s.Name
	switch {
	case s.Name == "":
		f.name = "file-" + f.hash[:12]
	case len(s.Name) > MaxNameBytes:
		return bad("name", "must be at most %d bytes (got %d)", MaxNameBytes, len(s.Name))
	case !namePattern.MatchString(s.Name):
		return bad("name", "%q: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", s.Name)
	case slices.Contains(builtins, s.Name):
		return bad("name", "%q is a built-in strategy; pick another name (or use base: %s)", s.Name, s.Name)
	}
	if len(s.Description) > MaxStringBytes {
		return bad("description", "must be at most %d bytes (got %d)", MaxStringBytes, len(s.Description))
	}
	switch {
	case s.Base == "" && strings.TrimSpace(s.Score) == "":
		return bad("base, score", "set one: base names a built-in strategy (%s), score is a CEL expression", strings.Join(builtins, ", "))
	case s.Base != "" && s.Score != "":
		return bad("base, score", "set only one of them")
	case s.Base != "" && !slices.Contains(builtins, s.Base):
		return bad("base", "unknown strategy %q (known: %s)", s.Base, strings.Join(builtins, ", "))
	case len(s.Score) > MaxScoreBytes:
		return bad("score", "must be at most %d bytes (got %d)", MaxScoreBytes, len(s.Score))
	}
	if len(s.Params) > MaxParams {
		return bad("params", "at most %d params (got %d)", MaxParams, len(s.Params))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		switch {
		case len(k) > MaxNameBytes || !paramPattern.MatchString(k):
			return bad("params", "%q: a param name is at most %d lower-case letters, digits and '_', not starting with a digit", k, MaxNameBytes)
		case k == ParamStartingContainerWeight || k == ParamBinPackFirstFitWeight:
			return bad("params."+k, "set it as the top-level field %s", k)
		}
	}
	if err := f.validateValues(); err != nil {
		return err
	}
	if s.Base != "" {
		if len(s.Params) > 0 {
			return bad("params", "only a score reads params; base %q ignores them", s.Base)
		}
		return nil
	}
	expr, err := compileScore(s.Score, slices.Sorted(maps.Keys(s.Params)))
	if err != nil {
		return fmt.Errorf("%w: score: %w", ErrInvalidStrategy, err)
	}
	f.expr = expr
	return nil
}

// Name is the name the strategy registers and reports under.
func (f *File) Name() string { return f.name }

// Path is the file the strategy was loaded from ("" when parsed from bytes).
func (f *File) Path() string { return f.path }

// SHA256 is the hex sha256 of the file's bytes.
func (f *File) SHA256() string { return f.hash }

// Source returns a copy of the file's bytes.
func (f *File) Source() []byte { return slices.Clone(f.source) }

// Spec returns the file's content; the Params map is a copy.
func (f *File) Spec() Spec {
	s := f.spec
	s.Params = maps.Clone(f.spec.Params)
	return s
}

// ParamNames returns the parameters a sweep may set on this strategy:
// the two engine weights and, for a score, the file's params, sorted.
func (f *File) ParamNames() []string {
	names := []string{ParamBinPackFirstFitWeight, ParamStartingContainerWeight}
	if f.expr != nil {
		names = append(names, slices.Sorted(maps.Keys(f.spec.Params))...)
	}
	return names
}

// WithParams returns a copy of f with parameters replaced: the engine
// weights (ParamStartingContainerWeight, ParamBinPackFirstFitWeight) and
// the file's own params. A name the strategy does not read is refused, as
// is a value the field would refuse. The compiled score is shared.
func (f *File) WithParams(values map[string]float64) (*File, error) {
	out := *f
	out.spec.Params = maps.Clone(f.spec.Params)
	for _, k := range slices.Sorted(maps.Keys(values)) {
		v := values[k]
		switch {
		case k == ParamStartingContainerWeight:
			out.spec.StartingContainerWeight = &v
		case k == ParamBinPackFirstFitWeight:
			out.spec.BinPackFirstFitWeight = &v
		case f.expr != nil && hasKey(f.spec.Params, k):
			out.spec.Params[k] = v
		default:
			return nil, fmt.Errorf("%w: param %q: strategy %s does not read it (it reads: %s)",
				ErrInvalidStrategy, k, f.name, strings.Join(f.ParamNames(), ", "))
		}
	}
	if err := out.validateValues(); err != nil {
		return nil, err
	}
	return &out, nil
}

// validateValues checks the numeric fields only.
func (f *File) validateValues() error {
	s := &f.spec
	if w := s.StartingContainerWeight; w != nil && (math.IsNaN(*w) || math.IsInf(*w, 0) || *w < 0) {
		return fmt.Errorf("%w: %s: must be a finite number >= 0 (got %v)", ErrInvalidStrategy, ParamStartingContainerWeight, *w)
	}
	if w := s.BinPackFirstFitWeight; w != nil && (math.IsNaN(*w) || *w < 0 || *w > 1) {
		return fmt.Errorf("%w: %s: must be between 0 and 1 (got %v)", ErrInvalidStrategy, ParamBinPackFirstFitWeight, *w)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		if v := s.Params[k]; math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: params.%s: must be a finite number (got %v)", ErrInvalidStrategy, k, s.Params[k])
		}
	}
	return nil
}

func hasKey(m map[string]float64, k string) bool {
	_, ok := m[k]
	return ok
}

// Parameters returns the values the strategy runs with under opts: the
// engine weights (the file's when set, else opts') and the file's params.
func (f *File) Parameters(opts auctioneer.Options) map[string]float64 {
	out := maps.Clone(f.spec.Params)
	if out == nil {
		out = map[string]float64{}
	}
	scw, bpw := f.weights(opts)
	out[ParamStartingContainerWeight] = scw
	out[ParamBinPackFirstFitWeight] = bpw
	return out
}

// weights returns the effective engine weights.
func (f *File) weights(opts auctioneer.Options) (startingContainer, binPack float64) {
	startingContainer, binPack = opts.StartingContainerWeight, opts.BinPackFirstFitWeight
	if f.spec.StartingContainerWeight != nil {
		startingContainer = *f.spec.StartingContainerWeight
	}
	if f.spec.BinPackFirstFitWeight != nil {
		binPack = *f.spec.BinPackFirstFitWeight
	}
	return startingContainer, binPack
}

// New builds a Strategy for one run under opts (it implements
// auctioneer.Constructor). A score strategy returns a *Scorer.
func (f *File) New(opts auctioneer.Options) (auctioneer.Strategy, error) {
	scw, bpw := f.weights(opts)
	if f.expr == nil {
		o := opts
		o.Strategy, o.StartingContainerWeight, o.BinPackFirstFitWeight = f.spec.Base, scw, bpw
		base, err := auctioneer.NewRegistry().New(o)
		if err != nil {
			return nil, err
		}
		if f.spec.BalanceZones == nil {
			return base, nil
		}
		return zoneOverride{Strategy: base, balance: *f.spec.BalanceZones}, nil
	}
	balance := f.spec.BalanceZones != nil && *f.spec.BalanceZones
	return f.expr.newScorer(f.name, balance, scw, bpw, f.spec.Params), nil
}

// Register adds the strategy to reg under Name.
func (f *File) Register(reg *auctioneer.Registry) error {
	return reg.Register(f.name, f.New)
}

// RegisterObserved is Register for a long-lived caller (the auctioneer),
// which never sees a run's Scorer: observe is called with every failed
// evaluation of a score strategy (naming the item and the cell), from the
// goroutine of the run. A base strategy never fails and never calls it.
func (f *File) RegisterObserved(reg *auctioneer.Registry, observe func(error)) error {
	return reg.Register(f.name, func(opts auctioneer.Options) (auctioneer.Strategy, error) {
		st, err := f.New(opts)
		if s, ok := st.(*Scorer); ok && err == nil {
			s.observe = observe
		}
		return st, err
	})
}

// zoneOverride is a base strategy with balance_zones set by the file.
type zoneOverride struct {
	auctioneer.Strategy
	balance bool
}

// BalanceZones implements auctioneer.Strategy.
func (z zoneOverride) BalanceZones() bool { return z.balance }

// ScoreForm implements auctioneer.Indexable when the base strategy does:
// the file changes the zone walk, not the score, so the engine's cell
// index still applies.
func (z zoneOverride) ScoreForm(k auctioneer.Kind) (auctioneer.ScoreForm, bool) {
	if ix, ok := z.Strategy.(auctioneer.Indexable); ok {
		return ix.ScoreForm(k)
	}
	return auctioneer.ScoreForm{}, false
}
