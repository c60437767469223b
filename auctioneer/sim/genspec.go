package sim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/bbs/models"
)

// Bounds of a generator spec (GenSpec); the scenario it makes also stays
// within MaxCells and MaxWork.
const (
	// MaxSpecBytes bounds a spec file.
	MaxSpecBytes = 1 << 20
	// MaxSpecGroups bounds the cell groups and, separately, the workloads.
	MaxSpecGroups = 64
	// MaxDistValues bounds a choice distribution's values.
	MaxDistValues = 64
	// maxCellMB bounds a cell's or a request's memory and disk.
	maxCellMB = math.MaxInt32
)

// GenSpec describes a generated scenario with heterogeneous cells and
// mixed workloads (gavel sim generate --spec). The same spec and seed give
// the same scenario.
type GenSpec struct {
	// Seed drives every random draw and is written as options.seed (default 0).
	Seed int64 `json:"seed"`
	// Strategy is written as options.strategy (default "diego").
	Strategy string `json:"strategy"`
	// CellGroups are the cells, group by group (at least one).
	CellGroups []CellGroup `json:"cell_groups"`
	// Workloads are the work to place, workload by workload.
	Workloads []Workload `json:"workloads"`
}

// CellGroup is a number of identical cells dealt over zones.
type CellGroup struct {
	// Name prefixes the cells' ids: NAME-1, NAME-2, ... (required, unique).
	Name string `json:"name"`
	// Count is the number of cells (> 0).
	Count int `json:"count"`
	// MemoryMB is each cell's memory (> 0).
	MemoryMB int `json:"memory_mb"`
	// DiskMB is each cell's disk (default twice the memory).
	DiskMB int `json:"disk_mb"`
	// Containers is each cell's container slots (> 0).
	Containers int `json:"containers"`
	// Zones are the zones the cells are dealt into (default ["z1"]).
	Zones []string `json:"zones"`
	// ZoneWeights, one per zone, set each zone's share of the cells
	// (default equal); the cells are dealt so that after every cell each
	// zone's count is within one of its share.
	ZoneWeights []float64 `json:"zone_weights"`
	// PlacementTags are the cells' required tags.
	PlacementTags []string `json:"placement_tags"`
	// OptionalPlacementTags are the cells' optional tags.
	OptionalPlacementTags []string `json:"optional_placement_tags"`
	// RootFSProviders are the cells' rootfs providers (default
	// DefaultRootFSProviders()).
	RootFSProviders map[string][]string `json:"rootfs_providers"`
	// VolumeDrivers are the cells' volume drivers.
	VolumeDrivers []string `json:"volume_drivers"`
	// Fill is the fraction of each cell's memory already used by existing
	// instances, 0..1 (default 0).
	Fill float64 `json:"fill"`
	// FillMemoryMB is the memory (and disk) of each existing instance
	// (default 256).
	FillMemoryMB int `json:"fill_memory_mb"`
}

// Workload is a mix of apps and tasks to place.
type Workload struct {
	// Name prefixes the apps' process guids (NAME-1, ...) and the tasks'
	// guids (NAME-task-1, ...) (required, unique).
	Name string `json:"name"`
	// Apps is the number of apps (>= 0).
	Apps int `json:"apps"`
	// Instances is each app's instance count (default 1; 1 to the BBS's
	// max_desired_instances).
	Instances *Dist `json:"instances"`
	// MemoryMB is each app instance's and task's memory (required).
	MemoryMB *Dist `json:"memory_mb"`
	// DiskMB is each instance's and task's disk (default: its memory).
	DiskMB *Dist `json:"disk_mb"`
	// Tasks is the number of tasks (>= 0).
	Tasks int `json:"tasks"`
	// TaskFraction, instead of Tasks, makes this fraction of the workload's
	// items tasks: tasks = round(f/(1-f) × app instances), 0 <= f < 1.
	TaskFraction float64 `json:"task_fraction"`
	// PlacementTags are the tags the work requires.
	PlacementTags []string `json:"placement_tags"`
	// RootFS is the work's rootfs (default DefaultRootFS).
	RootFS string `json:"rootfs"`
	// VolumeDrivers are the drivers the work requires.
	VolumeDrivers []string `json:"volume_drivers"`
}

// Dist is an integer distribution. In a spec it is a number (a constant)
// or an object: {"dist": "uniform", "min": A, "max": B} (every integer
// from A to B equally likely), {"dist": "choice", "values": [...],
// "weights": [...]} (weights default to equal) or {"dist": "normal",
// "mean": M, "stddev": S, "min": A, "max": B} (rounded, then clamped to
// A..B).
type Dist struct {
	// Kind is "constant", "uniform", "choice" or "normal".
	Kind string `json:"dist"`
	// Value is a constant's value.
	Value int `json:"value,omitempty"`
	// Min and Max bound a uniform or normal draw.
	Min int `json:"min,omitempty"`
	Max int `json:"max,omitempty"`
	// Values and Weights are a choice's values and their weights.
	Values  []int     `json:"values,omitempty"`
	Weights []float64 `json:"weights,omitempty"`
	// Mean and StdDev shape a normal draw.
	Mean   float64 `json:"mean,omitempty"`
	StdDev float64 `json:"stddev,omitempty"`
}

// UnmarshalJSON reads a number as a constant, an object as a
// distribution (unknown fields refused).
func (d *Dist) UnmarshalJSON(data []byte) error { return decodeDist(data, "", d) }

// validate checks the distribution's parameters and that every value it
// can draw lies in lo..hi.
func (d *Dist) validate(path string, lo, hi int) []FieldError {
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Path: path + field, Message: fmt.Sprintf(format, args...)})
	}
	in := func(field string, v int) {
		if v < lo || v > hi {
			bad(field, "must be between %d and %d (got %d)", lo, hi, v)
		}
	}
	switch d.Kind {
	case "constant":
		in("", d.Value)
	case "uniform", "normal":
		in(".min", d.Min)
		in(".max", d.Max)
		if d.Max < d.Min {
			bad(".max", "must be >= min (%d; got %d)", d.Min, d.Max)
		}
		if d.Kind == "normal" && (d.StdDev < 0 || math.IsNaN(d.StdDev) || math.IsInf(d.StdDev, 0) || math.IsNaN(d.Mean) || math.IsInf(d.Mean, 0)) {
			bad(".stddev", "must be a finite number >= 0, with a finite mean")
		}
	case "choice":
		if len(d.Values) == 0 || len(d.Values) > MaxDistValues {
			bad(".values", "must hold 1 to %d values (got %d)", MaxDistValues, len(d.Values))
		}
		for i, v := range d.Values {
			in(fmt.Sprintf(".values[%d]", i), v)
		}
		if len(d.Weights) > 0 {
			if len(d.Weights) != len(d.Values) {
				bad(".weights", "must hold one weight per value (%d; got %d)", len(d.Values), len(d.Weights))
			}
			errs = append(errs, checkWeights(path+".weights", d.Weights)...)
		}
	default:
		bad(".dist", "must be constant, uniform, choice or normal (got %q)", d.Kind)
	}
	return errs
}

// draw returns one value.
func (d *Dist) draw(rng *rand.Rand) int {
	switch d.Kind {
	case "uniform":
		return d.Min + rng.IntN(d.Max-d.Min+1)
	case "normal":
		v := math.Round(d.Mean + d.StdDev*rng.NormFloat64())
		return int(math.Min(math.Max(v, float64(d.Min)), float64(d.Max)))
	case "choice":
		if len(d.Weights) == 0 {
			return d.Values[rng.IntN(len(d.Values))]
		}
		return d.Values[pickWeighted(rng, d.Weights)]
	}
	return d.Value
}

// max is the largest value the distribution can draw.
func (d *Dist) max() int {
	switch d.Kind {
	case "uniform", "normal":
		return d.Max
	case "choice":
		return slices.Max(d.Values)
	}
	return d.Value
}

// pickWeighted returns an index drawn with the given weights.
func pickWeighted(rng *rand.Rand, weights []float64) int {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	x := rng.Float64() * sum
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

func checkWeights(path string, ws []float64) []FieldError {
	var errs []FieldError
	sum := 0.0
	for i, w := range ws {
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			errs = append(errs, FieldError{Path: fmt.Sprintf("%s[%d]", path, i), Message: "must be a finite number >= 0"})
			continue
		}
		sum += w
	}
	if len(errs) == 0 && sum <= 0 {
		errs = append(errs, FieldError{Path: path, Message: "must add up to more than 0"})
	}
	return errs
}

// ErrInvalidSpec is wrapped by every generator spec error.
var ErrInvalidSpec = errors.New("invalid generator spec")

// SpecError lists every bad field of a generator spec, each with its path
// (e.g. "cell_groups[1].count"). It matches ErrInvalidSpec under errors.Is.
type SpecError struct {
	// Fields are the bad fields.
	Fields []FieldError
}

// Error prints the fields on one line: "path: message; path: message".
func (e *SpecError) Error() string {
	return formatFieldErrors("invalid generator spec", e.Fields)
}

// Is makes errors.Is(err, ErrInvalidSpec) true.
func (e *SpecError) Is(target error) bool { return target == ErrInvalidSpec }

func specError(path, format string, args ...any) *SpecError {
	return &SpecError{Fields: []FieldError{{Path: path, Message: fmt.Sprintf(format, args...)}}}
}

// ParseGenSpec reads a spec in JSON or YAML (isYAML), refusing unknown
// fields, and validates it. Errors are a *SpecError naming the field, e.g.
// "cell_groups[1].count: must be between 1 and 100000 (got 0)".
func ParseGenSpec(data []byte, isYAML bool) (*GenSpec, error) {
	if len(data) > MaxSpecBytes {
		return nil, specError("", "a generator spec must be at most %d bytes (got %d)", MaxSpecBytes, len(data))
	}
	if isYAML {
		var err error
		if data, err = yaml.YAMLToJSON(data); err != nil {
			return nil, specError("", "not valid YAML: %v", err)
		}
	}
	var raw struct {
		GenSpec
		CellGroups []json.RawMessage `json:"cell_groups"`
		Workloads  []json.RawMessage `json:"workloads"`
	}
	if err := decodeStrict(data, "", &raw); err != nil {
		return nil, err
	}
	spec := raw.GenSpec
	for _, l := range []struct {
		key string
		n   int
	}{{"cell_groups", len(raw.CellGroups)}, {"workloads", len(raw.Workloads)}} {
		if l.n > MaxSpecGroups {
			return nil, specError(l.key, "must hold at most %d items (got %d)", MaxSpecGroups, l.n)
		}
	}
	for i, g := range raw.CellGroups {
		var cg CellGroup
		if err := decodeStrict(g, fmt.Sprintf("cell_groups[%d]", i), &cg); err != nil {
			return nil, err
		}
		spec.CellGroups = append(spec.CellGroups, cg)
	}
	for i, w := range raw.Workloads {
		path := fmt.Sprintf("workloads[%d]", i)
		var rw struct {
			Workload
			Instances json.RawMessage `json:"instances"`
			MemoryMB  json.RawMessage `json:"memory_mb"`
			DiskMB    json.RawMessage `json:"disk_mb"`
		}
		if err := decodeStrict(w, path, &rw); err != nil {
			return nil, err
		}
		wl := rw.Workload
		for _, d := range []struct {
			key string
			raw json.RawMessage
			dst **Dist
		}{{"instances", rw.Instances, &wl.Instances}, {"memory_mb", rw.MemoryMB, &wl.MemoryMB}, {"disk_mb", rw.DiskMB, &wl.DiskMB}} {
			if len(d.raw) == 0 || string(d.raw) == "null" {
				continue
			}
			var dist Dist
			if err := decodeDist(d.raw, path+"."+d.key, &dist); err != nil {
				return nil, err
			}
			*d.dst = &dist
		}
		spec.Workloads = append(spec.Workloads, wl)
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	return &spec, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data; errors name the field under path.
func decodeStrict(data []byte, path string, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &SpecError{Fields: []FieldError{specDecodeError(data, path, err)}}
	}
	if dec.More() {
		return specError(path, "unexpected data after the object")
	}
	return nil
}

// decodeDist reads a number as a constant, an object as a distribution.
func decodeDist(data []byte, path string, d *Dist) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] != '{' {
		var v int
		if err := json.Unmarshal(trimmed, &v); err != nil {
			return specError(path, "must be an integer or a distribution object, got %s", trimmed)
		}
		*d = Dist{Kind: "constant", Value: v}
		return nil
	}
	type plain Dist
	var p plain
	if err := decodeStrict(trimmed, path, &p); err != nil {
		return err
	}
	*d = Dist(p)
	if d.Kind == "" {
		d.Kind = "constant"
	}
	return nil
}

// specDecodeError names the field of a decoding error under path.
func specDecodeError(data []byte, path string, err error) FieldError {
	join := func(field string) string {
		switch {
		case path == "":
			return field
		case field == "":
			return path
		}
		return path + "." + field
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return FieldError{Path: join(te.Field), Message: fmt.Sprintf("must be %s, got %s", jsonKind(te.Type.Kind().String()), te.Value)}
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return FieldError{Path: join(strings.Trim(field, `"`)), Message: "unknown field"}
	}
	return FieldError{Path: path, Message: syntaxMessage(data, err)}
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "float64":
		return "a number"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return k
}

// Validate checks every field, returning a *SpecError that lists each
// bad one with its path.
func (s *GenSpec) Validate() error {
	var errs []FieldError
	bad := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if len(s.CellGroups) == 0 {
		bad("cell_groups", "give at least one cell group")
	}
	if len(s.CellGroups) > MaxSpecGroups {
		bad("cell_groups", "must hold at most %d groups (got %d)", MaxSpecGroups, len(s.CellGroups))
	}
	if len(s.Workloads) > MaxSpecGroups {
		bad("workloads", "must hold at most %d workloads (got %d)", MaxSpecGroups, len(s.Workloads))
	}
	if len(s.Strategy) > models.MaxNameBytes {
		bad("strategy", "must be at most %d bytes", models.MaxNameBytes)
	}
	names := map[string]string{}
	name := func(path, n string) {
		switch {
		case n == "":
			bad(path, "is required")
		case len(n) > 64:
			bad(path, "must be at most 64 bytes (got %d)", len(n))
		case strings.ContainsAny(n, " \t\n/"):
			bad(path, "must hold no spaces or slashes")
		case names[n] != "":
			bad(path, "duplicate %q (also %s)", n, names[n])
		default:
			names[n] = path
		}
	}
	cells, existing := 0, 0
	for i := range s.CellGroups {
		g := &s.CellGroups[i]
		p := fmt.Sprintf("cell_groups[%d]", i)
		name(p+".name", g.Name)
		if g.Count <= 0 || g.Count > MaxCells {
			bad(p+".count", "must be between 1 and %d (got %d)", MaxCells, g.Count)
		} else {
			cells += g.Count
		}
		positive(&errs, p+".memory_mb", g.MemoryMB, 1)
		positive(&errs, p+".disk_mb", g.DiskMB, 0)
		positive(&errs, p+".containers", g.Containers, 1)
		if len(g.Zones) > models.MaxSmallList {
			bad(p+".zones", "must hold at most %d zones (got %d)", models.MaxSmallList, len(g.Zones))
		}
		for j, z := range g.Zones {
			if z == "" || len(z) > models.MaxNameBytes {
				bad(fmt.Sprintf("%s.zones[%d]", p, j), "must be 1 to %d bytes", models.MaxNameBytes)
			}
		}
		if len(g.ZoneWeights) > 0 {
			if len(g.ZoneWeights) != max(1, len(g.Zones)) {
				bad(p+".zone_weights", "must hold one weight per zone (%d; got %d)", max(1, len(g.Zones)), len(g.ZoneWeights))
			}
			errs = append(errs, checkWeights(p+".zone_weights", g.ZoneWeights)...)
		}
		errs = append(errs, checkTags(p+".placement_tags", g.PlacementTags)...)
		errs = append(errs, checkTags(p+".optional_placement_tags", g.OptionalPlacementTags)...)
		errs = append(errs, checkTags(p+".volume_drivers", g.VolumeDrivers)...)
		if len(g.RootFSProviders) > models.MaxSmallList {
			bad(p+".rootfs_providers", "must hold at most %d schemes", models.MaxSmallList)
		}
		for scheme, stacks := range g.RootFSProviders {
			if scheme == "" || len(scheme) > models.MaxNameBytes {
				bad(p+".rootfs_providers", "a scheme must be 1 to %d bytes", models.MaxNameBytes)
			}
			errs = append(errs, checkTags(p+".rootfs_providers."+scheme, stacks)...)
		}
		if !(g.Fill >= 0 && g.Fill <= 1) {
			bad(p+".fill", "must be between 0 and 1")
		}
		positive(&errs, p+".fill_memory_mb", g.FillMemoryMB, 0)
		if g.Fill > 0 && g.Count > 0 && g.Containers > 0 {
			existing += g.Count * g.Containers
		}
	}
	if cells > MaxCells {
		bad("cell_groups", "must add up to at most %d cells (got %d)", MaxCells, cells)
	}
	if existing > MaxWork {
		bad("cell_groups", "filled groups' count × containers (the existing instances they may hold) must add up to at most %d (got %d)", MaxWork, existing)
	}
	instances, tasks := 0, 0
	for i := range s.Workloads {
		w := &s.Workloads[i]
		p := fmt.Sprintf("workloads[%d]", i)
		name(p+".name", w.Name)
		if w.Apps < 0 || w.Apps > MaxWork {
			bad(p+".apps", "must be between 0 and %d (got %d)", MaxWork, w.Apps)
		}
		if w.Tasks < 0 || w.Tasks > MaxWork {
			bad(p+".tasks", "must be between 0 and %d (got %d)", MaxWork, w.Tasks)
		}
		if !(w.TaskFraction >= 0 && w.TaskFraction < 1) {
			bad(p+".task_fraction", "must be at least 0 and below 1")
		}
		if w.TaskFraction > 0 && w.Tasks > 0 {
			bad(p+".task_fraction", "give tasks or task_fraction, not both")
		}
		if w.Apps == 0 && w.Tasks == 0 {
			bad(p, "give apps or tasks")
		}
		if w.Instances != nil {
			errs = append(errs, w.Instances.validate(p+".instances", 1, models.DefaultMaxInstances)...)
		}
		if w.MemoryMB == nil {
			bad(p+".memory_mb", "is required")
		} else {
			errs = append(errs, w.MemoryMB.validate(p+".memory_mb", 1, maxCellMB)...)
		}
		if w.DiskMB != nil {
			errs = append(errs, w.DiskMB.validate(p+".disk_mb", 1, maxCellMB)...)
		}
		errs = append(errs, checkTags(p+".placement_tags", w.PlacementTags)...)
		errs = append(errs, checkTags(p+".volume_drivers", w.VolumeDrivers)...)
		if len(w.RootFS) > models.MaxURLBytes {
			bad(p+".rootfs", "must be at most %d bytes", models.MaxURLBytes)
		}
		if w.Apps > 0 && w.Apps <= MaxWork {
			most := 1
			if w.Instances != nil && len(w.Instances.validate("", 1, models.DefaultMaxInstances)) == 0 {
				most = w.Instances.max()
			}
			instances += w.Apps * most
			if w.TaskFraction > 0 && w.TaskFraction < 1 {
				tasks += int(math.Round(w.TaskFraction / (1 - w.TaskFraction) * float64(w.Apps*most)))
			}
		}
		if w.Tasks > 0 {
			tasks += w.Tasks
		}
	}
	if instances > MaxWork {
		bad("workloads", "apps × their largest instance count must add up to at most %d (got %d)", MaxWork, instances)
	}
	if tasks > MaxWork {
		bad("workloads", "tasks must add up to at most %d (got %d)", MaxWork, tasks)
	}
	if len(errs) > 0 {
		return &SpecError{Fields: errs}
	}
	return nil
}

// positive reports v out of lo..maxCellMB.
func positive(errs *[]FieldError, path string, v, lo int) {
	if v < lo || v > maxCellMB {
		*errs = append(*errs, FieldError{Path: path, Message: fmt.Sprintf("must be between %d and %d (got %d)", lo, maxCellMB, v)})
	}
}

// checkTags bounds a list of tags as a scenario does.
func checkTags(path string, tags []string) []FieldError {
	var errs []FieldError
	if len(tags) > models.MaxSmallList {
		errs = append(errs, FieldError{Path: path, Message: fmt.Sprintf("must hold at most %d items (got %d)", models.MaxSmallList, len(tags))})
	}
	for i, t := range tags {
		if t == "" || len(t) > models.MaxTagBytes {
			errs = append(errs, FieldError{Path: fmt.Sprintf("%s[%d]", path, i), Message: fmt.Sprintf("must be 1 to %d bytes", models.MaxTagBytes)})
		}
	}
	return errs
}

// GenerateFromSpec builds the scenario a valid spec describes: each cell
// group's cells (GROUP-1, ...) dealt over its zones by weight, pre-filled to
// Fill with instances of existing apps (existing-1, ...), then each
// workload's apps (WORKLOAD-1, ... with all their instances) and tasks
// (WORKLOAD-task-1, ...). It validates the spec first. The same spec gives
// the same scenario.
func GenerateFromSpec(spec *GenSpec) (*Scenario, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	rng := rand.New(rand.NewPCG(uint64(spec.Seed), 0x6e5bec))
	s := &Scenario{
		Options: ScenarioOptions{Strategy: cmp.Or(spec.Strategy, auctioneer.DefaultStrategy), StartingContainerWeight: auctioneer.DefaultStartingContainerWeight, Seed: spec.Seed},
		Cells:   []Cell{},
		LRPs:    []LRP{},
		Tasks:   []Task{},
	}
	existingApps := 0
	for _, g := range spec.CellGroups {
		if g.Fill > 0 {
			existingApps += 2 * g.Count
		}
	}
	nextIndex := make([]int, existingApps)
	index := 0
	for _, g := range spec.CellGroups {
		zones := g.Zones
		if len(zones) == 0 {
			zones = []string{"z1"}
		}
		weights := g.ZoneWeights
		if len(weights) == 0 {
			weights = slices.Repeat([]float64{1}, len(zones))
		}
		disk := g.DiskMB
		if disk == 0 {
			disk = min(2*g.MemoryMB, maxCellMB)
		}
		fillMB := g.FillMemoryMB
		if fillMB == 0 {
			fillMB = 256
		}
		providers := DefaultRootFSProviders()
		if g.RootFSProviders != nil {
			providers = make(map[string][]string, len(g.RootFSProviders))
			for k, v := range g.RootFSProviders {
				providers[k] = nonNil(v)
			}
		}
		dealt := make([]float64, len(zones))
		for i := range g.Count {
			z := dealZone(dealt, weights, i)
			c := Cell{
				CellID: fmt.Sprintf("%s-%d", g.Name, i+1), Zone: zones[z], Index: index,
				Total:                 Capacity{MemoryMB: g.MemoryMB, DiskMB: disk, Containers: g.Containers},
				RootFSProviders:       providers,
				PlacementTags:         nonNil(g.PlacementTags),
				OptionalPlacementTags: nonNil(g.OptionalPlacementTags),
				VolumeDrivers:         nonNil(g.VolumeDrivers),
				LRPs:                  []CellLRP{},
				Tasks:                 []CellTask{},
			}
			index++
			target := int(g.Fill * float64(g.MemoryMB))
			for used := 0; g.Fill > 0 && len(c.LRPs) < g.Containers && used+fillMB <= target && (len(c.LRPs)+1)*fillMB <= disk; used += fillMB {
				app := rng.IntN(existingApps)
				c.LRPs = append(c.LRPs, CellLRP{ProcessGUID: fmt.Sprintf("existing-%d", app+1), Index: nextIndex[app], MemoryMB: fillMB, DiskMB: fillMB})
				nextIndex[app]++
			}
			s.Cells = append(s.Cells, c)
		}
	}
	for _, w := range spec.Workloads {
		rootfs := cmp.Or(w.RootFS, DefaultRootFS)
		instances := 0
		for a := range w.Apps {
			n := 1
			if w.Instances != nil {
				n = w.Instances.draw(rng)
			}
			mem := w.MemoryMB.draw(rng)
			disk := mem
			if w.DiskMB != nil {
				disk = w.DiskMB.draw(rng)
			}
			for idx := range n {
				s.LRPs = append(s.LRPs, LRP{
					ProcessGUID: fmt.Sprintf("%s-%d", w.Name, a+1), Index: idx, Domain: "sim",
					MemoryMB: mem, DiskMB: disk, RootFS: rootfs,
					PlacementTags: nonNil(w.PlacementTags), VolumeDrivers: nonNil(w.VolumeDrivers),
				})
			}
			instances += n
		}
		tasks := w.Tasks
		if w.TaskFraction > 0 {
			tasks = int(math.Round(w.TaskFraction / (1 - w.TaskFraction) * float64(instances)))
		}
		for i := range tasks {
			mem := w.MemoryMB.draw(rng)
			disk := mem
			if w.DiskMB != nil {
				disk = w.DiskMB.draw(rng)
			}
			s.Tasks = append(s.Tasks, Task{
				TaskGUID: fmt.Sprintf("%s-task-%d", w.Name, i+1), Domain: "sim",
				MemoryMB: mem, DiskMB: disk, RootFS: rootfs,
				PlacementTags: nonNil(w.PlacementTags), VolumeDrivers: nonNil(w.VolumeDrivers),
			})
		}
	}
	return s, nil
}

// dealZone picks the zone of the i-th cell (0-based): the one furthest
// below its share of i+1 cells (lowest index on a tie), so that every
// zone's count stays within one of its share.
func dealZone(dealt, weights []float64, i int) int {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	best, bestGap := 0, math.Inf(-1)
	for z, w := range weights {
		gap := float64(i+1)*w/sum - dealt[z]
		if gap > bestGap {
			best, bestGap = z, gap
		}
	}
	dealt[best]++
	return best
}
