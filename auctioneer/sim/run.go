package sim

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/strategyfile"
)

// RunOptions override a scenario's options for one run.
type RunOptions struct {
	// Strategy replaces the scenario's strategy when not empty.
	Strategy string
	// Seed replaces the scenario's seed when not nil.
	Seed *int64
	// Registry resolves strategy names; nil means auctioneer.NewRegistry().
	Registry *auctioneer.Registry
	// StrategyFile, when not nil, is the strategy that runs (it replaces
	// Strategy and Registry).
	StrategyFile *strategyfile.File
	// Params override engine parameters (EngineParams) and the strategy
	// file's params by name.
	Params map[string]float64
}

// Report is the outcome of one simulated auction, with what the text, JSON
// and SVG reports show.
type Report struct {
	// Strategy is the strategy that ran.
	Strategy string
	// Seed is the seed that ran.
	Seed int64
	// Cells has one entry per scenario cell, in scenario order.
	Cells []CellReport
	// Zones has one entry per zone, sorted by name.
	Zones []ZoneReport
	// Placements are the engine's placements, in placement order.
	Placements []auctioneer.Placement
	// Failures are the engine's failures, in placement order.
	Failures []auctioneer.Failure
	// Requested counts the LRP instances and tasks to place.
	Requested int
	// Placed counts the items placed.
	Placed int
	// Failed counts the items not placed.
	Failed int
	// DistributionScore is the population standard deviation over the mean
	// of per-cell memory in use after the run, over the cells that took
	// part (not evacuating); 0 when nothing is in use.
	DistributionScore float64
	// InitialDistributionScore is the same before the run.
	InitialDistributionScore float64
	// FreeMemoryMB is the memory left on the cells that took part.
	FreeMemoryMB int
	// StrandedMemoryMB is the free memory on cells that cannot host even the
	// smallest request of the scenario (memory, disk or container slot short).
	StrandedMemoryMB int
	// Wall is the wall time of the engine's placement.
	Wall time.Duration
	// Engine holds the engine's own metrics.
	Engine auctioneer.Metrics

	// scenario is what ran, for the figures' view of each app's spread
	// (instances already running count); nil in a report built by hand.
	scenario *Scenario
	// Metadata records the run's inputs (the caller adds the scenario's
	// hash and Gavel's version).
	Metadata Metadata
	// Capacity is the free and stranded memory, disk and containers after
	// the run.
	Capacity CapacitySummary
	// Starting is the per-cell usage before the run.
	Starting StartingDistribution
}

// CellReport is one cell before and after the run.
type CellReport struct {
	// CellID, Zone and Index identify the cell.
	CellID, Zone string
	// Index is the reported cell index.
	Index int
	// Evacuating cells took no part.
	Evacuating bool
	// Total is the cell's capacity.
	Total Capacity
	// ExistingMemoryMB is the memory of the work already there.
	ExistingMemoryMB int
	// ExistingDiskMB is the disk of the work already there.
	ExistingDiskMB int
	// ExistingLRPs and ExistingTasks count the work already there.
	ExistingLRPs, ExistingTasks int
	// PlacedMemoryMB is the memory placed by the run.
	PlacedMemoryMB int
	// PlacedDiskMB is the disk placed by the run.
	PlacedDiskMB int
	// PlacedLRPs and PlacedTasks count the work placed by the run.
	PlacedLRPs, PlacedTasks int
	// Free is what is left after the run.
	Free Capacity
	// StrandedMemoryMB is Free.MemoryMB when no request could use it.
	StrandedMemoryMB int
}

// InUseMemoryMB is the memory in use after the run.
func (c CellReport) InUseMemoryMB() int { return c.ExistingMemoryMB + c.PlacedMemoryMB }

// ZoneReport totals one zone.
type ZoneReport struct {
	// Zone is the zone name.
	Zone string
	// Cells counts the zone's cells (evacuating ones included).
	Cells int
	// TotalMemoryMB, ExistingMemoryMB and PlacedMemoryMB sum the cells.
	TotalMemoryMB, ExistingMemoryMB, PlacedMemoryMB int
	// PlacedLRPs and PlacedTasks count the work placed in the zone.
	PlacedLRPs, PlacedTasks int
}

// Run places the scenario's work with the real engine and measures it.
func Run(s *Scenario, ro RunOptions) (*Report, error) {
	opts, file, check, err := s.engineOptionsFor(ro)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	a := s.Auction()
	start := time.Now()
	res, err := auctioneer.Run(a, opts)
	wall := time.Since(start)
	if err == nil && check != nil {
		err = check()
	}
	if err != nil {
		return nil, fmt.Errorf("simulate strategy %q: %w", opts.Strategy, err)
	}
	if opts.Strategy == "" {
		opts.Strategy = auctioneer.DefaultStrategy
	}
	r := &Report{
		Strategy:   opts.Strategy,
		Seed:       opts.Seed,
		Placements: res.Placements,
		Failures:   res.Failures,
		Requested:  len(s.LRPs) + len(s.Tasks),
		Placed:     len(res.Placements),
		Failed:     len(res.Failures),
		Wall:       wall,
		Engine:     res.Metrics,
	}
	r.summarise(s)
	r.scenario = s
	r.fillMetadata(s, opts, file)
	return r, nil
}

// engineOptionsFor is the scenario's engine options with ro's strategy
// (a name, or a strategy file with its parameters), seed and registry
// applied; check, when not nil, reports a strategy file's failed
// evaluations after the engine ran.
func (s *Scenario) engineOptionsFor(ro RunOptions) (opts auctioneer.Options, file *strategyfile.File, check func() error, err error) {
	opts = s.EngineOptions()
	if ro.Strategy != "" {
		opts.Strategy = ro.Strategy
	}
	if ro.Seed != nil {
		opts.Seed = *ro.Seed
	}
	opts.Registry = ro.Registry
	file, check, err = applyRunOptions(&opts, ro)
	return opts, file, check, err
}

// summarise fills the per-cell, per-zone and distribution figures.
func (r *Report) summarise(s *Scenario) {
	index := make(map[string]int, len(s.Cells))
	r.Cells = make([]CellReport, len(s.Cells))
	for i, c := range s.Cells {
		index[c.CellID] = i
		used := c.used()
		r.Cells[i] = CellReport{
			CellID: c.CellID, Zone: c.Zone, Index: c.Index, Evacuating: c.Evacuating,
			Total:            c.Total,
			ExistingMemoryMB: used.MemoryMB,
			ExistingDiskMB:   used.DiskMB,
			ExistingLRPs:     len(c.LRPs),
			ExistingTasks:    len(c.Tasks),
			Free: Capacity{
				MemoryMB:   c.Total.MemoryMB - used.MemoryMB,
				DiskMB:     c.Total.DiskMB - used.DiskMB,
				Containers: c.Total.Containers - used.Containers,
			},
		}
	}
	for _, p := range r.Placements {
		cr := &r.Cells[index[p.CellID]]
		var mem, disk int
		if p.Kind == auctioneer.KindLRP {
			mem, disk = s.LRPs[p.Request].MemoryMB, s.LRPs[p.Request].DiskMB
			cr.PlacedLRPs++
		} else {
			mem, disk = s.Tasks[p.Request].MemoryMB, s.Tasks[p.Request].DiskMB
			cr.PlacedTasks++
		}
		cr.PlacedMemoryMB += mem
		cr.PlacedDiskMB += disk
		cr.Free.MemoryMB -= mem
		cr.Free.DiskMB -= disk
		cr.Free.Containers--
	}

	minMem, minDisk := smallestRequest(s)
	var before, after []float64
	zones := map[string]*ZoneReport{}
	for i := range r.Cells {
		c := &r.Cells[i]
		z := zones[c.Zone]
		if z == nil {
			z = &ZoneReport{Zone: c.Zone}
			zones[c.Zone] = z
		}
		z.Cells++
		z.TotalMemoryMB += c.Total.MemoryMB
		z.ExistingMemoryMB += c.ExistingMemoryMB
		z.PlacedMemoryMB += c.PlacedMemoryMB
		z.PlacedLRPs += c.PlacedLRPs
		z.PlacedTasks += c.PlacedTasks
		if c.Evacuating {
			continue
		}
		before = append(before, float64(c.ExistingMemoryMB))
		after = append(after, float64(c.InUseMemoryMB()))
		r.FreeMemoryMB += c.Free.MemoryMB
		if c.Free.MemoryMB > 0 && (c.Free.Containers < 1 || c.Free.MemoryMB < minMem || c.Free.DiskMB < minDisk) {
			c.StrandedMemoryMB = c.Free.MemoryMB
			r.StrandedMemoryMB += c.StrandedMemoryMB
		}
	}
	for _, z := range zones {
		r.Zones = append(r.Zones, *z)
	}
	slices.SortFunc(r.Zones, func(a, b ZoneReport) int {
		switch {
		case a.Zone < b.Zone:
			return -1
		case a.Zone > b.Zone:
			return 1
		}
		return 0
	})
	r.InitialDistributionScore = coefficientOfVariation(before)
	r.DistributionScore = coefficientOfVariation(after)
}

// smallestRequest returns the least memory and the least disk any request
// of the scenario asks for (0, 0 when there is none).
func smallestRequest(s *Scenario) (mem, disk int) {
	first := true
	take := func(m, d int) {
		if first || m < mem {
			mem = m
		}
		if first || d < disk {
			disk = d
		}
		first = false
	}
	for _, l := range s.LRPs {
		take(l.MemoryMB, l.DiskMB)
	}
	for _, t := range s.Tasks {
		take(t.MemoryMB, t.DiskMB)
	}
	return mem, disk
}

// coefficientOfVariation is the population standard deviation over the
// mean; 0 for no values or a zero mean.
func coefficientOfVariation(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	if mean == 0 {
		return 0
	}
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return math.Sqrt(ss/float64(len(xs))) / mean
}

// Compare runs the scenario once per strategy on the identical workload
// and seed.
func Compare(s *Scenario, strategies []string, ro RunOptions) ([]*Report, error) {
	if len(strategies) == 0 {
		return nil, fmt.Errorf("compare: no strategies given")
	}
	reports := make([]*Report, 0, len(strategies))
	for _, name := range strategies {
		o := ro
		o.Strategy = name
		r, err := Run(s, o)
		if err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		reports = append(reports, r)
	}
	return reports, nil
}
