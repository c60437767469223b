package sim

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gavelhq/gavel/auctioneer/strategyfile"
)

// Bounds of a sweep.
const (
	// MaxSweepRuns bounds strategies × seeds × parameter combinations.
	MaxSweepRuns = 10_000
	// MaxSweepSeeds bounds the seeds of a sweep.
	MaxSweepSeeds = 10_000
	// MaxSweepValues bounds the values of one parameter.
	MaxSweepValues = 1_000
	// MaxSweepParams bounds the parameters a sweep varies.
	MaxSweepParams = 16
	// MaxSweepStrategies bounds the strategies a sweep runs.
	MaxSweepStrategies = 64
)

// Row is one run's inputs and key figures: a line of the compare and
// sweep tables.
type Row struct {
	// Strategy is the strategy's name.
	Strategy string `json:"strategy"`
	// StrategyFile is the strategy file's path, for a file strategy.
	StrategyFile string `json:"strategy_file,omitempty"`
	// StrategySHA256 is the hex sha256 of the strategy file.
	StrategySHA256 string `json:"strategy_sha256,omitempty"`
	// Seed is the tie-breaking seed.
	Seed int64 `json:"seed"`
	// Grid is the sweep's parameter combination for this run (empty
	// outside a sweep).
	Grid map[string]float64 `json:"grid,omitempty"`
	// Parameters are every parameter the run used (Metadata.Parameters).
	Parameters map[string]float64 `json:"parameters"`
	// ScenarioFile is the scenario's path.
	ScenarioFile string `json:"scenario_file,omitempty"`
	// ScenarioSHA256 is the hex sha256 of the scenario file.
	ScenarioSHA256 string `json:"scenario_sha256,omitempty"`
	// GavelVersion is the version of gavel that ran.
	GavelVersion string `json:"gavel_version,omitempty"`
	// Requested, Placed and Failed count the items.
	Requested int `json:"requested"`
	// Placed counts the items placed.
	Placed int `json:"placed"`
	// Failed counts the items not placed.
	Failed int `json:"failed"`
	// DistributionScore is stddev/mean of per-cell memory in use after.
	DistributionScore float64 `json:"distribution_score"`
	// InitialDistributionScore is the same before the run.
	InitialDistributionScore float64 `json:"initial_distribution_score"`
	// CellsUsed counts the cells that received work.
	CellsUsed int `json:"cells_used"`
	// Free is the capacity left (CapacitySummary.Free).
	Free Resources `json:"free"`
	// Stranded is the stranded capacity (CapacitySummary.Stranded).
	Stranded Resources `json:"stranded"`
	// StrandedCells counts the stranded cells.
	StrandedCells int `json:"stranded_cells"`
	// CellsScored counts Strategy.Score calls.
	CellsScored int64 `json:"cells_scored"`
	// WallMS is the engine's wall time; it varies between identical runs.
	WallMS float64 `json:"wall_ms"`
}

// NewRow summarises a report.
func NewRow(r *Report) Row {
	used := 0
	for _, c := range r.Cells {
		if c.PlacedLRPs+c.PlacedTasks > 0 {
			used++
		}
	}
	m := r.Metadata
	return Row{
		Strategy: m.Strategy.Name, StrategyFile: m.Strategy.File, StrategySHA256: m.Strategy.SHA256,
		Seed: m.Seed, Parameters: maps.Clone(m.Parameters),
		ScenarioFile: m.ScenarioFile, ScenarioSHA256: m.ScenarioSHA256, GavelVersion: m.GavelVersion,
		Requested: r.Requested, Placed: r.Placed, Failed: r.Failed,
		DistributionScore: r.DistributionScore, InitialDistributionScore: r.InitialDistributionScore,
		CellsUsed: used, Free: r.Capacity.Free, Stranded: r.Capacity.Stranded, StrandedCells: r.Capacity.StrandedCells,
		CellsScored: r.Engine.CellsScored, WallMS: float64(r.Wall.Microseconds()) / 1000,
	}
}

// RowsJSON is the JSON form of a compare or a sweep.
type RowsJSON struct {
	// Runs has one row per run.
	Runs []Row `json:"runs"`
}

// WriteRowsJSON writes rows as {"runs": [...]}, indented.
func WriteRowsJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if rows == nil {
		rows = []Row{}
	}
	if err := enc.Encode(RowsJSON{Runs: rows}); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// WriteRowsCSV writes rows as CSV with a header: the inputs, one
// param.NAME column per parameter any row used (sorted), then the
// figures. A parameter a row did not use is an empty cell.
func WriteRowsCSV(w io.Writer, rows []Row) error {
	names := map[string]bool{}
	for _, r := range rows {
		for k := range r.Parameters {
			names[k] = true
		}
		for k := range r.Grid {
			names[k] = true
		}
	}
	params := slices.Sorted(maps.Keys(names))
	header := []string{"strategy", "strategy_file", "strategy_sha256", "seed", "scenario_file", "scenario_sha256", "gavel_version"}
	for _, p := range params {
		header = append(header, "param."+p)
	}
	header = append(header, "requested", "placed", "failed", "distribution_score", "initial_distribution_score", "cells_used",
		"free_memory_mb", "free_disk_mb", "free_containers", "stranded_memory_mb", "stranded_disk_mb", "stranded_containers",
		"stranded_cells", "cells_scored", "wall_ms")
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	itoa := strconv.Itoa
	ftoa := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	for _, r := range rows {
		rec := []string{r.Strategy, r.StrategyFile, r.StrategySHA256, strconv.FormatInt(r.Seed, 10), r.ScenarioFile, r.ScenarioSHA256, r.GavelVersion}
		for _, p := range params {
			v, ok := r.Parameters[p]
			if !ok {
				v, ok = r.Grid[p]
			}
			if ok {
				rec = append(rec, ftoa(v))
			} else {
				rec = append(rec, "")
			}
		}
		rec = append(rec, itoa(r.Requested), itoa(r.Placed), itoa(r.Failed), ftoa(r.DistributionScore), ftoa(r.InitialDistributionScore),
			itoa(r.CellsUsed), itoa(r.Free.MemoryMB), itoa(r.Free.DiskMB), itoa(r.Free.Containers),
			itoa(r.Stranded.MemoryMB), itoa(r.Stranded.DiskMB), itoa(r.Stranded.Containers), itoa(r.StrandedCells),
			strconv.FormatInt(r.CellsScored, 10), ftoa(r.WallMS))
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// SweepStrategy is one strategy of a sweep: a registered name or a file.
type SweepStrategy struct {
	// Name is a registered strategy name (when File is nil).
	Name string
	// File is a strategy file.
	File *strategyfile.File
}

// label names the strategy in errors and progress.
func (s SweepStrategy) label() string {
	if s.File != nil {
		return s.File.Name()
	}
	return s.Name
}

// reads reports whether the strategy reads parameter p.
func (s SweepStrategy) reads(p string) bool {
	if slices.Contains(EngineParams(), p) {
		return true
	}
	return s.File != nil && slices.Contains(s.File.ParamNames(), p)
}

// SweepParam is one parameter of the grid and the values it takes.
type SweepParam struct {
	// Name is an engine parameter (EngineParams) or a strategy file's param.
	Name string
	// Values are the values, in order.
	Values []float64
}

// SweepOptions describe a sweep: every strategy runs once per seed and
// per combination of parameter values.
type SweepOptions struct {
	// Strategies run in order (at least one).
	Strategies []SweepStrategy
	// Seeds run in order (at least one).
	Seeds []int64
	// Params form the grid: the cartesian product of their values, the
	// first parameter varying slowest. No params is one combination.
	Params []SweepParam
	// ScenarioFile, ScenarioSHA256 and GavelVersion are recorded in every row.
	ScenarioFile, ScenarioSHA256, GavelVersion string
	// Progress, when set, is called after each run.
	Progress func(done, total int, row Row)
}

// Runs returns how many runs the sweep makes, or an error naming the
// first bad option, including a grid larger than MaxSweepRuns.
func (o SweepOptions) Runs() (int, error) {
	switch {
	case len(o.Strategies) == 0:
		return 0, errors.New("strategies: give at least one")
	case len(o.Strategies) > MaxSweepStrategies:
		return 0, fmt.Errorf("strategies: at most %d (got %d)", MaxSweepStrategies, len(o.Strategies))
	case len(o.Seeds) == 0:
		return 0, errors.New("seeds: give at least one")
	case len(o.Seeds) > MaxSweepSeeds:
		return 0, fmt.Errorf("seeds: at most %d (got %d)", MaxSweepSeeds, len(o.Seeds))
	case len(o.Params) > MaxSweepParams:
		return 0, fmt.Errorf("params: at most %d parameters (got %d)", MaxSweepParams, len(o.Params))
	}
	names := map[string]bool{}
	for _, s := range o.Strategies {
		if names[s.label()] {
			return 0, fmt.Errorf("strategies: %s given twice", s.label())
		}
		names[s.label()] = true
	}
	combos := 1
	seen := map[string]bool{}
	for _, p := range o.Params {
		switch {
		case seen[p.Name]:
			return 0, fmt.Errorf("param %s: given twice", p.Name)
		case len(p.Values) == 0:
			return 0, fmt.Errorf("param %s: give at least one value", p.Name)
		case len(p.Values) > MaxSweepValues:
			return 0, fmt.Errorf("param %s: at most %d values (got %d)", p.Name, MaxSweepValues, len(p.Values))
		}
		seen[p.Name] = true
		read := false
		for _, s := range o.Strategies {
			read = read || s.reads(p.Name)
		}
		if !read {
			return 0, fmt.Errorf("param %s: no strategy of the sweep reads it (engine parameters: %s; or a strategy file's params)",
				p.Name, strings.Join(EngineParams(), ", "))
		}
		for _, v := range p.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("param %s: %v is not a finite number", p.Name, v)
			}
		}
		combos *= len(p.Values)
		if combos > MaxSweepRuns {
			break
		}
	}
	runs := len(o.Strategies) * len(o.Seeds)
	if combos > MaxSweepRuns || runs*combos > MaxSweepRuns {
		return 0, fmt.Errorf("grid: %d strategies × %d seeds × %s parameter combinations exceeds %d runs; narrow the seeds or the values",
			len(o.Strategies), len(o.Seeds), comboText(o.Params), MaxSweepRuns)
	}
	return runs * combos, nil
}

func comboText(ps []SweepParam) string {
	if len(ps) == 0 {
		return "1"
	}
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = strconv.Itoa(len(p.Values))
	}
	return strings.Join(parts, "×")
}

// Sweep runs the scenario once per (strategy, parameter combination,
// seed) and returns one row per run, in that order (seeds vary fastest).
// A parameter a strategy does not read is recorded in the row's Grid but
// not applied (the runs are then identical). It stops at the first failed
// run or when ctx ends.
func Sweep(ctx context.Context, s *Scenario, o SweepOptions) ([]Row, error) {
	total, err := o.Runs()
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	rows := make([]Row, 0, total)
	combo := make([]int, len(o.Params))
	for _, st := range o.Strategies {
		for {
			grid := make(map[string]float64, len(o.Params))
			applied := map[string]float64{}
			for i, p := range o.Params {
				grid[p.Name] = p.Values[combo[i]]
				if st.reads(p.Name) {
					applied[p.Name] = p.Values[combo[i]]
				}
			}
			for _, seed := range o.Seeds {
				if err := ctx.Err(); err != nil {
					return rows, fmt.Errorf("sweep: %w", err)
				}
				ro := RunOptions{Strategy: st.Name, StrategyFile: st.File, Seed: &seed, Params: applied}
				r, err := Run(s, ro)
				if err != nil {
					return rows, fmt.Errorf("sweep: strategy %s, seed %d, params %v: %w", st.label(), seed, grid, err)
				}
				r.Metadata.ScenarioFile, r.Metadata.ScenarioSHA256, r.Metadata.GavelVersion = o.ScenarioFile, o.ScenarioSHA256, o.GavelVersion
				row := NewRow(r)
				row.Grid = grid
				rows = append(rows, row)
				if o.Progress != nil {
					o.Progress(len(rows), total, row)
				}
			}
			if !nextCombo(combo, o.Params) {
				break
			}
		}
	}
	return rows, nil
}

// nextCombo advances the odometer, the last parameter fastest; false once
// every combination was visited (and combo is back at zero).
func nextCombo(combo []int, ps []SweepParam) bool {
	for i := len(combo) - 1; i >= 0; i-- {
		combo[i]++
		if combo[i] < len(ps[i].Values) {
			return true
		}
		combo[i] = 0
	}
	return false
}

// ParseSeeds reads a seed list: comma-separated seeds and inclusive
// ranges, e.g. "1..20" or "1,5,10..12". At most MaxSweepSeeds seeds.
func ParseSeeds(spec string) ([]int64, error) {
	var seeds []int64
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "..")
		a, err := strconv.ParseInt(strings.TrimSpace(lo), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seeds %q: %q is not an integer", spec, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(strings.TrimSpace(hi), 10, 64); err != nil {
				return nil, fmt.Errorf("seeds %q: %q is not an integer", spec, hi)
			}
			if b < a {
				return nil, fmt.Errorf("seeds %q: range %s ends before it starts", spec, part)
			}
		}
		if b-a < 0 || b-a >= MaxSweepSeeds || len(seeds)+int(b-a)+1 > MaxSweepSeeds {
			return nil, fmt.Errorf("seeds %q: at most %d seeds", spec, MaxSweepSeeds)
		}
		for x := a; ; x++ {
			seeds = append(seeds, x)
			if x == b {
				break
			}
		}
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("seeds %q: empty", spec)
	}
	return seeds, nil
}

// ParseSweepParam reads "NAME=V1,V2,...", e.g.
// "starting_container_weight=0,0.25,0.5".
func ParseSweepParam(spec string) (SweepParam, error) {
	name, list, ok := strings.Cut(spec, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return SweepParam{}, fmt.Errorf("param %q: want NAME=V1,V2,..., e.g. starting_container_weight=0,0.25,0.5", spec)
	}
	p := SweepParam{Name: name}
	for _, v := range strings.Split(list, ",") {
		v = strings.TrimSpace(v)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return SweepParam{}, fmt.Errorf("param %s: %q is not a finite number", name, v)
		}
		if len(p.Values) == MaxSweepValues {
			return SweepParam{}, fmt.Errorf("param %s: at most %d values", name, MaxSweepValues)
		}
		p.Values = append(p.Values, f)
	}
	return p, nil
}
