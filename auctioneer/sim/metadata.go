package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/strategyfile"
)

// Engine parameters a run (or a sweep's --param) may set, besides a
// strategy file's own params.
const (
	// ParamStartingContainerWeight is options.starting_container_weight.
	ParamStartingContainerWeight = strategyfile.ParamStartingContainerWeight
	// ParamBinPackFirstFitWeight is options.bin_pack_first_fit_weight.
	ParamBinPackFirstFitWeight = strategyfile.ParamBinPackFirstFitWeight
	// ParamMaxInflightStarts is options.max_inflight_starts (an integer).
	ParamMaxInflightStarts = "max_inflight_starts"
)

// EngineParams are the parameter names every strategy accepts.
func EngineParams() []string {
	return []string{ParamBinPackFirstFitWeight, ParamMaxInflightStarts, ParamStartingContainerWeight}
}

// Metadata records every input of a run, so that a result can be
// reproduced and compared: the strategy (with the file's bytes), the
// parameters it ran with, the seed, the scenario's hash and Gavel's
// version.
type Metadata struct {
	// Strategy is what ran.
	Strategy StrategyInfo `json:"strategy"`
	// Parameters are the engine parameters and a strategy file's params,
	// as the run used them.
	Parameters map[string]float64 `json:"parameters"`
	// Seed is the tie-breaking seed.
	Seed int64 `json:"seed"`
	// ScenarioFile is the scenario's path, when read from a file.
	ScenarioFile string `json:"scenario_file,omitempty"`
	// ScenarioSHA256 is the hex sha256 of the scenario file's bytes.
	ScenarioSHA256 string `json:"scenario_sha256,omitempty"`
	// GavelVersion is the version of the gavel binary that ran.
	GavelVersion string `json:"gavel_version,omitempty"`
}

// StrategyInfo names a strategy; for a strategy file it carries the file.
type StrategyInfo struct {
	// Name is the registered name (a file's name, or file-<hash prefix>).
	Name string `json:"name"`
	// File is the strategy file's path.
	File string `json:"file,omitempty"`
	// SHA256 is the hex sha256 of the strategy file's bytes.
	SHA256 string `json:"sha256,omitempty"`
	// Source is the strategy file's content.
	Source string `json:"source,omitempty"`
}

// Resources is an amount of memory, disk and container slots in a report.
type Resources struct {
	// MemoryMB is memory in MB.
	MemoryMB int `json:"memory_mb"`
	// DiskMB is disk in MB.
	DiskMB int `json:"disk_mb"`
	// Containers is container slots.
	Containers int `json:"containers"`
}

// CapacitySummary is the capacity left after a run over the cells that
// took part (not evacuating).
//
// A cell is stranded when what is free on it cannot hold the smallest
// request of the scenario: less free memory than the least memory any
// request asks for, less free disk than the least disk any request asks
// for, or no free container slot (each minimum taken separately; proxy
// allowances not counted; with no request at all only a full container
// count strands a cell). All the free memory, disk and containers of a
// stranded cell are stranded.
type CapacitySummary struct {
	// Free is the capacity left.
	Free Resources `json:"free"`
	// Stranded is the free capacity on stranded cells.
	Stranded Resources `json:"stranded"`
	// StrandedCells counts the stranded cells.
	StrandedCells int `json:"stranded_cells"`
	// SmallestRequest is the threshold: the least memory and disk any
	// request asks for, and one container.
	SmallestRequest Resources `json:"smallest_request"`
}

// StartingCell is one cell's usage before the run: the work already on it.
type StartingCell struct {
	// CellID identifies the cell.
	CellID string `json:"cell_id"`
	// Zone is the cell's zone.
	Zone string `json:"zone"`
	// Evacuating cells took no part.
	Evacuating bool `json:"evacuating,omitempty"`
	// Total is the cell's capacity.
	Total Resources `json:"total"`
	// Used is what the existing work uses.
	Used Resources `json:"used"`
	// LRPs and Tasks count the existing work.
	LRPs int `json:"lrps"`
	// Tasks counts the existing tasks.
	Tasks int `json:"tasks"`
	// StartingContainers is the cell's reported starting containers.
	StartingContainers int `json:"starting_containers"`
}

// StartingDistribution is the cluster before the run.
type StartingDistribution struct {
	// DistributionScore is stddev/mean of per-cell memory in use before the
	// run, over the cells that took part.
	DistributionScore float64 `json:"distribution_score"`
	// Used sums the existing work over the cells that took part.
	Used Resources `json:"used"`
	// Cells lists every cell in scenario order.
	Cells []StartingCell `json:"cells"`
}

// applyRunOptions resolves a strategy file and parameter overrides into
// opts. It returns the strategy file with the parameters applied (nil
// without one) and a check that reports a score that failed during the
// run.
func applyRunOptions(opts *auctioneer.Options, ro RunOptions) (file *strategyfile.File, check func() error, err error) {
	file = ro.StrategyFile
	params := maps.Clone(ro.Params)
	if v, ok := params[ParamMaxInflightStarts]; ok {
		if v != float64(int(v)) || v < 0 {
			return nil, nil, fmt.Errorf("param %s: must be an integer >= 0 (got %v)", ParamMaxInflightStarts, v)
		}
		opts.MaxInflightStarts = int(v)
		delete(params, ParamMaxInflightStarts)
	}
	if file == nil {
		for _, k := range slices.Sorted(maps.Keys(params)) {
			switch k {
			case ParamStartingContainerWeight:
				opts.StartingContainerWeight = params[k]
			case ParamBinPackFirstFitWeight:
				opts.BinPackFirstFitWeight = params[k]
			default:
				return nil, nil, fmt.Errorf("param %q: strategy %q reads only %s", k, opts.Strategy, strings.Join(EngineParams(), ", "))
			}
		}
		return nil, nil, nil
	}
	if len(params) > 0 {
		if file, err = file.WithParams(params); err != nil {
			return nil, nil, err
		}
	}
	// Only the file runs, so a fresh registry serves; the caller's is not
	// modified.
	reg := auctioneer.NewRegistry()
	var ran auctioneer.Strategy
	if err := reg.Register(file.Name(), func(o auctioneer.Options) (auctioneer.Strategy, error) {
		s, err := file.New(o)
		ran = s
		return s, err
	}); err != nil {
		return nil, nil, err
	}
	opts.Strategy, opts.Registry = file.Name(), reg
	return file, func() error {
		if sc, ok := ran.(*strategyfile.Scorer); ok {
			return sc.Err()
		}
		return nil
	}, nil
}

// fillMetadata records the run's inputs, capacity and starting point.
func (r *Report) fillMetadata(s *Scenario, opts auctioneer.Options, f *strategyfile.File) {
	r.Metadata = Metadata{
		Strategy: StrategyInfo{Name: r.Strategy},
		Parameters: map[string]float64{
			ParamStartingContainerWeight: opts.StartingContainerWeight,
			ParamBinPackFirstFitWeight:   opts.BinPackFirstFitWeight,
			ParamMaxInflightStarts:       float64(opts.MaxInflightStarts),
		},
		Seed: r.Seed,
	}
	if f != nil {
		r.Metadata.Strategy = StrategyInfo{Name: f.Name(), File: f.Path(), SHA256: f.SHA256(), Source: string(f.Source())}
		maps.Copy(r.Metadata.Parameters, f.Parameters(opts))
	}
	r.Capacity, r.Starting = capacityAndStart(s, r.Cells)
}

// capacityAndStart computes the free and stranded capacity after the run
// and the starting distribution.
func capacityAndStart(s *Scenario, cells []CellReport) (CapacitySummary, StartingDistribution) {
	minMem, minDisk := smallestRequest(s)
	cs := CapacitySummary{SmallestRequest: Resources{MemoryMB: minMem, DiskMB: minDisk, Containers: 1}}
	sd := StartingDistribution{Cells: make([]StartingCell, len(s.Cells))}
	var before []float64
	for i := range s.Cells {
		c := &s.Cells[i]
		used := c.used()
		sd.Cells[i] = StartingCell{
			CellID: c.CellID, Zone: c.Zone, Evacuating: c.Evacuating,
			Total:              Resources(c.Total),
			Used:               Resources(used),
			LRPs:               len(c.LRPs),
			Tasks:              len(c.Tasks),
			StartingContainers: c.StartingContainers,
		}
		if c.Evacuating {
			continue
		}
		before = append(before, float64(used.MemoryMB))
		sd.Used.MemoryMB += used.MemoryMB
		sd.Used.DiskMB += used.DiskMB
		sd.Used.Containers += used.Containers
		if i >= len(cells) {
			continue
		}
		free := cells[i].Free
		cs.Free.MemoryMB += free.MemoryMB
		cs.Free.DiskMB += free.DiskMB
		cs.Free.Containers += free.Containers
		if free.Containers < 1 || free.MemoryMB < minMem || free.DiskMB < minDisk {
			cs.StrandedCells++
			cs.Stranded.MemoryMB += free.MemoryMB
			cs.Stranded.DiskMB += free.DiskMB
			cs.Stranded.Containers += free.Containers
		}
	}
	sd.DistributionScore = coefficientOfVariation(before)
	return cs, sd
}

// FullJSONReport is the --format json output of gavel sim run: issue 4's
// placements, failures and metrics, plus the run's inputs, the capacity
// left and the starting distribution.
type FullJSONReport struct {
	JSONReport
	// Metadata records the run's inputs.
	Metadata Metadata `json:"metadata"`
	// Capacity is the free and stranded capacity after the run.
	Capacity CapacitySummary `json:"capacity"`
	// StartingDistribution is the cluster before the run.
	StartingDistribution StartingDistribution `json:"starting_distribution"`
}

// FullJSON returns the report in the --format json shape.
func (r *Report) FullJSON() FullJSONReport {
	return FullJSONReport{JSONReport: r.JSON(), Metadata: r.Metadata, Capacity: r.Capacity, StartingDistribution: r.Starting}
}

// HashFile returns the hex sha256 of the file at path, read in a stream.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
