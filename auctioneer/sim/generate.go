package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/gavelhq/gavel/bbs/models"
)

// AppMix is one line of a workload: Count apps of Instances instances of
// MemoryMB each (disk = memory).
type AppMix struct {
	// Count is the number of apps.
	Count int
	// Instances is the number of instances per app.
	Instances int
	// MemoryMB is each instance's memory (and disk).
	MemoryMB int
}

// ParseAppMix reads "COUNTxINSTANCES@MEMORY[,...]", e.g.
// "40x4@256,10x10@512,100x1@128": 40 apps of 4 instances of 256 MB, and so on.
func ParseAppMix(spec string) ([]AppMix, error) {
	var mix []AppMix
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		count, rest, ok1 := strings.Cut(part, "x")
		inst, mem, ok2 := strings.Cut(rest, "@")
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("app mix %q: want COUNTxINSTANCES@MEMORY_MB, e.g. 10x4@256", part)
		}
		var m AppMix
		var err error
		for _, f := range []struct {
			name string
			s    string
			dst  *int
		}{{"count", count, &m.Count}, {"instances", inst, &m.Instances}, {"memory", mem, &m.MemoryMB}} {
			*f.dst, err = strconv.Atoi(f.s)
			if err != nil || *f.dst <= 0 {
				return nil, fmt.Errorf("app mix %q: %s must be a positive integer", part, f.name)
			}
		}
		mix = append(mix, m)
	}
	if len(mix) == 0 {
		return nil, errors.New("app mix: empty")
	}
	return mix, nil
}

// GenerateOptions describe a generated workload.
type GenerateOptions struct {
	// Cells is the number of cells (> 0).
	Cells int
	// Zones is the number of zones the cells are dealt into (> 0).
	Zones int
	// MemoryMB is each cell's memory (> 0).
	MemoryMB int
	// DiskMB is each cell's disk; 0 means twice the memory.
	DiskMB int
	// Containers is each cell's container slots (> 0).
	Containers int
	// Fill is the fraction of each cell's memory already in use, 0..1;
	// each cell's fill varies by up to ±0.1 around it.
	Fill float64
	// Apps is the mix of apps to place; the same sizes fill the cells.
	Apps []AppMix
	// Tasks is the number of tasks to place.
	Tasks int
	// TaskMemoryMB is each task's memory (and disk).
	TaskMemoryMB int
	// Seed makes the workload reproducible.
	Seed int64
}

// Validate checks the options, naming the first bad flag.
func (o GenerateOptions) Validate() error {
	switch {
	case o.Cells <= 0:
		return errors.New("cells: must be > 0")
	case o.Zones <= 0:
		return errors.New("zones: must be > 0")
	case o.MemoryMB <= 0:
		return errors.New("memory-mb: must be > 0")
	case o.DiskMB < 0:
		return errors.New("disk-mb: must be >= 0")
	case o.Containers <= 0:
		return errors.New("containers: must be > 0")
	case o.Fill < 0 || o.Fill > 1:
		return errors.New("fill: must be between 0 and 1")
	case len(o.Apps) == 0 && o.Tasks == 0:
		return errors.New("apps: give at least one app or task")
	case o.Tasks < 0:
		return errors.New("tasks: must be >= 0")
	case o.Cells > MaxCells:
		return fmt.Errorf("cells: must be at most %d (got %d)", MaxCells, o.Cells)
	case o.Tasks > MaxWork:
		return fmt.Errorf("tasks: must be at most %d (got %d)", MaxWork, o.Tasks)
	case o.Zones > o.Cells:
		return fmt.Errorf("zones: must be at most cells (%d; got %d)", o.Cells, o.Zones)
	case o.Tasks > 0 && o.TaskMemoryMB <= 0:
		return errors.New("task-memory-mb: must be > 0")
	case o.Containers > MaxWork/o.Cells:
		return fmt.Errorf("containers: cells × containers (the existing work a generated scenario may hold) must be at most %d (got %d × %d)", MaxWork, o.Cells, o.Containers)
	case o.MemoryMB > math.MaxInt32 || o.DiskMB > math.MaxInt32 || o.TaskMemoryMB > math.MaxInt32:
		return fmt.Errorf("memory-mb, disk-mb, task-memory-mb: must be at most %d", math.MaxInt32)
	}
	return checkMix(o.Apps)
}

// checkMix bounds an app mix: each app's instances by the BBS's default
// max_desired_instances, all instances together by MaxWork.
func checkMix(mix []AppMix) error {
	total := 0
	for _, m := range mix {
		if m.Instances > models.DefaultMaxInstances {
			return fmt.Errorf("apps: %dx%d@%d: an app's instances must be at most %d (the BBS's default max_desired_instances)", m.Count, m.Instances, m.MemoryMB, models.DefaultMaxInstances)
		}
		if m.Count > MaxWork || m.MemoryMB > math.MaxInt32 {
			return fmt.Errorf("apps: %dx%d@%d: at most %d apps of at most %d MB", m.Count, m.Instances, m.MemoryMB, MaxWork, math.MaxInt32)
		}
		total += m.Count * m.Instances
		if total > MaxWork {
			return fmt.Errorf("apps: must add up to at most %d instances", MaxWork)
		}
	}
	return nil
}

// Generate builds a scenario: cells named cell-1..N dealt round-robin into
// zones z1..zZ, each pre-filled to about Fill of its memory with instances
// of existing apps sized from the mix, then the mix's apps (app-1, …) and
// tasks (task-1, …) to place. The same options give the same scenario.
func Generate(o GenerateOptions) (*Scenario, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	disk := o.DiskMB
	if disk == 0 {
		disk = 2 * o.MemoryMB
	}
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x5eed))
	s := &Scenario{
		Options: ScenarioOptions{Strategy: "diego", StartingContainerWeight: 0.25, Seed: o.Seed},
		Cells:   make([]Cell, 0, o.Cells),
		LRPs:    []LRP{},
		Tasks:   []Task{},
	}
	sizes := make([]int, 0, len(o.Apps))
	for _, a := range o.Apps {
		sizes = append(sizes, a.MemoryMB)
	}
	if len(sizes) == 0 {
		sizes = append(sizes, o.TaskMemoryMB)
	}
	existingApps := max(1, o.Cells*2)
	nextIndex := make([]int, existingApps)
	for i := range o.Cells {
		c := Cell{
			CellID:                fmt.Sprintf("cell-%d", i+1),
			Zone:                  fmt.Sprintf("z%d", i%o.Zones+1),
			Index:                 i,
			Total:                 Capacity{MemoryMB: o.MemoryMB, DiskMB: disk, Containers: o.Containers},
			RootFSProviders:       DefaultRootFSProviders(),
			PlacementTags:         []string{},
			OptionalPlacementTags: []string{},
			VolumeDrivers:         []string{},
			LRPs:                  []CellLRP{},
			Tasks:                 []CellTask{},
		}
		fill := min(1, max(0, o.Fill+(rng.Float64()*0.2-0.1)))
		if o.Fill == 0 {
			fill = 0
		}
		target := int(fill * float64(o.MemoryMB))
		used, usedDisk := 0, 0
		for len(c.LRPs) < o.Containers {
			size := sizes[rng.IntN(len(sizes))]
			if used+size > target || usedDisk+size > disk {
				size = slices.Min(sizes) // top up with the smallest size
				if used+size > target || usedDisk+size > disk {
					break
				}
			}
			guid := rng.IntN(existingApps)
			c.LRPs = append(c.LRPs, CellLRP{
				ProcessGUID: fmt.Sprintf("existing-%d", guid+1),
				Index:       nextIndex[guid],
				MemoryMB:    size,
				DiskMB:      size,
			})
			nextIndex[guid]++
			used += size
			usedDisk += size
		}
		s.Cells = append(s.Cells, c)
	}
	app := 0
	for _, a := range o.Apps {
		for range a.Count {
			app++
			for idx := range a.Instances {
				s.LRPs = append(s.LRPs, LRP{
					ProcessGUID: fmt.Sprintf("app-%d", app), Index: idx, Domain: "sim",
					MemoryMB: a.MemoryMB, DiskMB: a.MemoryMB, RootFS: DefaultRootFS,
					PlacementTags: []string{}, VolumeDrivers: []string{},
				})
			}
		}
	}
	for i := range o.Tasks {
		s.Tasks = append(s.Tasks, Task{
			TaskGUID: fmt.Sprintf("task-%d", i+1), Domain: "sim",
			MemoryMB: o.TaskMemoryMB, DiskMB: o.TaskMemoryMB, RootFS: DefaultRootFS,
			PlacementTags: []string{}, VolumeDrivers: []string{},
		})
	}
	return s, nil
}
