package strategyfile

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/gavelhq/gavel/auctioneer"
)

// Variable is one name a score expression may read.
type Variable struct {
	// Name is the CEL name, e.g. "cell.memory_free_mb".
	Name string
	// Type is the CEL type: int, double, bool, string or list(string).
	Type string
	// Doc says what the value is.
	Doc string
}

// Variables lists every variable a score may read except params.NAME (one
// per file param), in the order README.md documents them.
func Variables() []Variable { return slices.Clone(variables) }

var variables = []Variable{
	{"cell.id", "string", "the cell id"},
	{"cell.zone", "string", "the cell's availability zone"},
	{"cell.index", "int", "the cell index the rep reported"},
	{"cell.zone_rank", "int", "the cell's position 0..n-1 among its zone's cells sorted by index (Diego's normalised cell index)"},
	{"cell.memory_free_mb", "int", "memory left on the cell, this run's reservations subtracted, before placing the item"},
	{"cell.disk_free_mb", "int", "disk left, likewise"},
	{"cell.containers_free", "int", "container slots left, likewise"},
	{"cell.memory_total_mb", "int", "the cell's memory capacity"},
	{"cell.disk_total_mb", "int", "the cell's disk capacity"},
	{"cell.containers_total", "int", "the cell's container slots"},
	{"cell.starting_containers", "int", "containers starting on the cell: reported ones plus one per reservation this run made there"},
	{"cell.lrps", "int", "LRP instances on the cell, this run's reservations included"},
	{"cell.tasks", "int", "tasks on the cell, this run's reservations included"},
	{"cell.app_instances", "int", "instances of the item's app (process guid) on the cell, reservations included; 0 for tasks"},
	{"cell.zone_app_instances", "int", "instances of the item's app in the cell's zone, reservations included; 0 for tasks"},
	{"cell.proxy_memory_mb", "int", "the cell's per-LRP proxy memory allowance"},
	{"cell.placement_tags", "list(string)", "the cell's required placement tags"},
	{"cell.optional_placement_tags", "list(string)", "the cell's optional placement tags"},
	{"cell.volume_drivers", "list(string)", "the cell's volume drivers"},
	{"cell.rootfs_schemes", "list(string)", "the rootfs URL schemes the cell serves (e.g. preloaded, docker), sorted"},
	{"work.is_task", "bool", "true for a task, false for an LRP instance"},
	{"work.is_lrp", "bool", "true for an LRP instance"},
	{"work.memory_mb", "int", "the item's memory"},
	{"work.disk_mb", "int", "the item's disk"},
	{"work.placed_memory_mb", "int", "the memory the item takes on this cell: memory plus the cell's proxy allowance for an LRP"},
	{"work.process_guid", "string", "the LRP's process guid (\"\" for a task)"},
	{"work.index", "int", "the LRP's instance index (0 for a task)"},
	{"work.task_guid", "string", "the task guid (\"\" for an LRP)"},
	{"work.domain", "string", "the item's domain"},
	{"work.rootfs", "string", "the item's rootfs URL"},
	{"work.placement_tags", "list(string)", "the item's placement tags"},
	{"work.volume_drivers", "list(string)", "the item's volume drivers"},
	{"usage_after", "double", "the cell's mean used fraction of memory, disk and containers after placing the item (Diego's resource score; the compiled spread scores exactly this, binpack its negation)"},
	{"params." + ParamStartingContainerWeight, "double", "the starting-container weight: the file's, else the run's (default 0.25)"},
	{"params." + ParamBinPackFirstFitWeight, "double", "the bin-pack first-fit weight: the file's, else the run's (default 0)"},
}

func celType(t string) *cel.Type {
	switch t {
	case "int":
		return cel.IntType
	case "double":
		return cel.DoubleType
	case "bool":
		return cel.BoolType
	case "string":
		return cel.StringType
	}
	return cel.ListType(cel.StringType)
}

// expression is a compiled score, shared by every run of its file.
type expression struct {
	prg       cel.Program
	intResult bool
}

var unknownVar = regexp.MustCompile(`\b(cell|work|params)\.[A-Za-z_][A-Za-z0-9_]*`)

// compileScore compiles src with the variables and the given params,
// checks its type and bounds its cost.
func compileScore(src string, params []string) (*expression, error) {
	declared := make(map[string]bool, len(variables)+len(params))
	opts := make([]cel.EnvOption, 0, len(variables)+len(params))
	for _, v := range variables {
		declared[v.Name] = true
		opts = append(opts, cel.Variable(v.Name, celType(v.Type)))
	}
	for _, p := range params {
		declared["params."+p] = true
		opts = append(opts, cel.Variable("params."+p, cel.DoubleType))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		msg := iss.Err().Error()
		var unknown []string
		for _, name := range unknownVar.FindAllString(src, -1) {
			if !declared[name] && !slices.Contains(unknown, name) {
				unknown = append(unknown, name)
			}
		}
		if len(unknown) > 0 {
			return nil, fmt.Errorf("unknown variable %s (see auctioneer/strategyfile/README.md for the variables): %s",
				strings.Join(unknown, ", "), msg)
		}
		return nil, errors.New(msg)
	}
	out := ast.OutputType()
	var intResult bool
	switch {
	case out.IsExactType(cel.DoubleType):
	case out.IsExactType(cel.IntType):
		intResult = true
	default:
		return nil, fmt.Errorf("must be of type double or int, not %s", out)
	}
	est, err := env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		return nil, fmt.Errorf("estimate cost: %w", err)
	}
	if est.Max > MaxCost {
		return nil, fmt.Errorf("estimated cost of one evaluation %d exceeds the limit %d (lists count as %d items, strings as %d bytes)",
			est.Max, MaxCost, MaxListItems, MaxStringBytes)
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return &expression{prg: prg, intResult: intResult}, nil
}

// sizeEstimator bounds the variables' sizes for the cost estimate.
type sizeEstimator struct{}

// EstimateSize implements checker.CostEstimator.
func (sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if len(n.Path()) == 0 {
		return nil
	}
	switch {
	case n.Type().IsExactType(cel.StringType):
		return &checker.SizeEstimate{Min: 0, Max: MaxStringBytes}
	case n.Type().IsExactType(cel.ListType(cel.StringType)):
		return &checker.SizeEstimate{Min: 0, Max: MaxListItems}
	}
	return nil
}

// EstimateCallCost implements checker.CostEstimator: CEL's own estimates.
func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// newScorer binds a run's parameters once; the scorer then serves one run.
func (e *expression) newScorer(name string, balance bool, startingWeight, binPackWeight float64, params map[string]float64) *Scorer {
	s := &Scorer{name: name, prg: e.prg, intResult: e.intResult, balance: balance}
	s.act.scw, s.act.bpw = types.Double(startingWeight), types.Double(binPackWeight)
	s.act.params = make(map[string]ref.Val, len(params))
	for k, v := range params {
		s.act.params["params."+k] = types.Double(v)
	}
	return s
}

// Scorer is a score expression bound to one run's parameters; it
// implements auctioneer.Strategy. Like every Strategy it serves one run
// from one goroutine.
//
// An evaluation that fails (an integer division by zero, an overflow, a
// missing key) or yields NaN or ±Inf scores the cell +Inf, so the cell
// loses unless every cell fails; Err then reports the first failure and
// how many there were.
type Scorer struct {
	name      string
	prg       cel.Program
	intResult bool
	balance   bool
	act       activation
	failures  int64
	firstErr  error
	observe   func(error)
}

var _ auctioneer.Strategy = (*Scorer)(nil)

// Score implements auctioneer.Strategy.
func (s *Scorer) Score(c *auctioneer.Cell, w *auctioneer.Work) float64 {
	s.act.c, s.act.w = c, w
	v, _, err := s.prg.Eval(&s.act)
	s.act.c, s.act.w = nil, nil
	var f float64
	switch {
	case err != nil:
	case s.intResult:
		i, ok := v.(types.Int)
		if !ok {
			err = fmt.Errorf("result %v is not an int", v)
		}
		f = float64(i)
	default:
		d, ok := v.(types.Double)
		if !ok {
			err = fmt.Errorf("result %v is not a double", v)
		}
		f = float64(d)
	}
	if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
		err = fmt.Errorf("result %v is not a finite number", f)
	}
	if err != nil {
		s.fail(c, w, err)
		return math.Inf(1)
	}
	return f
}

func (s *Scorer) fail(c *auctioneer.Cell, w *auctioneer.Work, err error) {
	s.failures++
	if s.firstErr != nil && s.observe == nil {
		return
	}
	item := "task " + w.TaskGUID()
	if w.Kind() == auctioneer.KindLRP {
		item = fmt.Sprintf("lrp %s index %d", w.ProcessGUID(), w.Index())
	}
	err = fmt.Errorf("strategy %s: score of %s on cell %s: %w", s.name, item, c.ID(), err)
	if s.firstErr == nil {
		s.firstErr = err
	}
	if s.observe != nil {
		s.observe(err)
	}
}

// BalanceZones implements auctioneer.Strategy: the file's balance_zones.
func (s *Scorer) BalanceZones() bool { return s.balance }

// Err returns nil when every evaluation so far gave a finite number, else
// the first failure and the count.
func (s *Scorer) Err() error {
	if s.failures == 0 {
		return nil
	}
	return fmt.Errorf("%w (%d failed evaluations, each scored +Inf)", s.firstErr, s.failures)
}

// activation resolves the variables from the (cell, item) being scored,
// lazily: only the names the expression reads are computed.
type activation struct {
	c        *auctioneer.Cell
	w        *auctioneer.Work
	scw, bpw types.Double
	params   map[string]ref.Val
}

var _ interpreter.Activation = (*activation)(nil)

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	c, w := a.c, a.w
	if c == nil || w == nil {
		return nil, false
	}
	switch name {
	case "cell.id":
		return types.String(c.ID()), true
	case "cell.zone":
		return types.String(c.Zone()), true
	case "cell.index":
		return types.Int(c.Index()), true
	case "cell.zone_rank":
		return types.Int(c.ZoneRank()), true
	case "cell.memory_free_mb":
		return types.Int(c.Available().MemoryMB), true
	case "cell.disk_free_mb":
		return types.Int(c.Available().DiskMB), true
	case "cell.containers_free":
		return types.Int(c.Available().Containers), true
	case "cell.memory_total_mb":
		return types.Int(c.Total().MemoryMB), true
	case "cell.disk_total_mb":
		return types.Int(c.Total().DiskMB), true
	case "cell.containers_total":
		return types.Int(c.Total().Containers), true
	case "cell.starting_containers":
		return types.Int(c.StartingContainers()), true
	case "cell.lrps":
		return types.Int(c.LRPCount()), true
	case "cell.tasks":
		return types.Int(c.TaskCount()), true
	case "cell.app_instances":
		return types.Int(c.AppInstances()), true
	case "cell.zone_app_instances":
		return types.Int(w.ZoneInstances(c)), true
	case "cell.proxy_memory_mb":
		return types.Int(c.ProxyMemoryMB()), true
	case "cell.placement_tags":
		return stringList(c.State().PlacementTags), true
	case "cell.optional_placement_tags":
		return stringList(c.State().OptionalPlacementTags), true
	case "cell.volume_drivers":
		return stringList(c.State().VolumeDrivers), true
	case "cell.rootfs_schemes":
		schemes := make([]string, 0, len(c.State().RootFSProviders))
		for k := range c.State().RootFSProviders {
			schemes = append(schemes, k)
		}
		slices.Sort(schemes)
		return stringList(schemes), true
	case "work.is_task":
		return types.Bool(w.Kind() == auctioneer.KindTask), true
	case "work.is_lrp":
		return types.Bool(w.Kind() == auctioneer.KindLRP), true
	case "work.memory_mb":
		return types.Int(w.MemoryMB()), true
	case "work.disk_mb":
		return types.Int(w.DiskMB()), true
	case "work.placed_memory_mb":
		return types.Int(placedMemory(c, w)), true
	case "work.process_guid":
		return types.String(w.ProcessGUID()), true
	case "work.index":
		return types.Int(w.Index()), true
	case "work.task_guid":
		return types.String(w.TaskGUID()), true
	case "work.domain", "work.rootfs", "work.placement_tags", "work.volume_drivers":
		return workConstraint(w, name), true
	case "usage_after":
		return types.Double(c.UsageAfter(placedMemory(c, w), w.DiskMB())), true
	case "params." + ParamStartingContainerWeight:
		return a.scw, true
	case "params." + ParamBinPackFirstFitWeight:
		return a.bpw, true
	}
	v, ok := a.params[name]
	return v, ok
}

// placedMemory is the memory w takes on c: an LRP adds the proxy allowance.
func placedMemory(c *auctioneer.Cell, w *auctioneer.Work) int {
	if w.Kind() == auctioneer.KindLRP {
		return w.MemoryMB() + c.ProxyMemoryMB()
	}
	return w.MemoryMB()
}

func workConstraint(w *auctioneer.Work, name string) ref.Val {
	var domain, rootfs string
	var tags, drivers []string
	if l := w.LRP(); l != nil {
		domain, rootfs, tags, drivers = l.Domain, l.RootFS, l.PlacementTags, l.VolumeDrivers
	} else if t := w.Task(); t != nil {
		domain, rootfs, tags, drivers = t.Domain, t.RootFS, t.PlacementTags, t.VolumeDrivers
	}
	switch name {
	case "work.domain":
		return types.String(domain)
	case "work.rootfs":
		return types.String(rootfs)
	case "work.placement_tags":
		return stringList(tags)
	}
	return stringList(drivers)
}

func stringList(xs []string) ref.Val {
	if xs == nil {
		xs = []string{}
	}
	return types.NewStringList(types.DefaultTypeAdapter, xs)
}
