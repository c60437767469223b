package sim

import (
	"github.com/gavelhq/gavel/auctioneer"
)

// Defaults taken by omitted scenario fields.
const (
	// DefaultRootFS is the rootfs of a request that names none.
	DefaultRootFS = "preloaded:cflinuxfs4"
	// DefaultStack is the preloaded stack a cell offers when it names no providers.
	DefaultStack = "cflinuxfs4"
)

// DefaultRootFSProviders returns the providers of a cell that names none:
// the cflinuxfs4 preloaded stack and any docker image.
func DefaultRootFSProviders() map[string][]string {
	return map[string][]string{"preloaded": {DefaultStack}, "docker": {}}
}

// Scenario is a simulator input: options, cells with the work already on
// them, and the work to place. Its JSON form is a contract (issue 4); Parse
// reads it, json.Marshal writes it.
type Scenario struct {
	// Options are the engine options.
	Options ScenarioOptions `json:"options"`
	// Cells are the cells and what already runs on them.
	Cells []Cell `json:"cells"`
	// LRPs are the LRP instances to place.
	LRPs []LRP `json:"lrps"`
	// Tasks are the tasks to place.
	Tasks []Task `json:"tasks"`
}

// ScenarioOptions are the engine options of a scenario.
type ScenarioOptions struct {
	// Strategy names the strategy (default "diego").
	Strategy string `json:"strategy"`
	// StartingContainerWeight is Diego's starting-container weight (default 0.25).
	StartingContainerWeight float64 `json:"starting_container_weight"`
	// BinPackFirstFitWeight is Diego's bin-pack weight (default 0, 0..1).
	BinPackFirstFitWeight float64 `json:"bin_pack_first_fit_weight"`
	// MaxInflightStarts caps starting containers; 0 is unlimited (default 0).
	MaxInflightStarts int `json:"max_inflight_starts"`
	// Seed drives the tie-breaking shuffle (default 0).
	Seed int64 `json:"seed"`
}

// Capacity is a cell's total resources.
type Capacity struct {
	// MemoryMB is memory in MB (required, > 0).
	MemoryMB int `json:"memory_mb"`
	// DiskMB is disk in MB (required, > 0).
	DiskMB int `json:"disk_mb"`
	// Containers is the number of container slots (required, > 0).
	Containers int `json:"containers"`
}

// Cell is one simulated cell.
type Cell struct {
	// CellID identifies the cell (required, unique).
	CellID string `json:"cell_id"`
	// Zone is the availability zone (default "").
	Zone string `json:"zone"`
	// Index is the reported cell index (default 0).
	Index int `json:"index"`
	// Total is the cell's capacity (required).
	Total Capacity `json:"total"`
	// RootFSProviders maps a scheme to stacks, [] meaning any URL of the
	// scheme (default DefaultRootFSProviders()).
	RootFSProviders map[string][]string `json:"rootfs_providers"`
	// PlacementTags are the cell's required tags.
	PlacementTags []string `json:"placement_tags"`
	// OptionalPlacementTags are the cell's optional tags.
	OptionalPlacementTags []string `json:"optional_placement_tags"`
	// VolumeDrivers are the cell's volume drivers.
	VolumeDrivers []string `json:"volume_drivers"`
	// ProxyMemoryMB is the per-LRP proxy allowance (default 0).
	ProxyMemoryMB int `json:"proxy_memory_mb"`
	// StartingContainers counts containers still starting (default 0).
	StartingContainers int `json:"starting_containers"`
	// Evacuating cells take no work (default false).
	Evacuating bool `json:"evacuating"`
	// LRPs already run on the cell.
	LRPs []CellLRP `json:"lrps"`
	// Tasks already run on the cell.
	Tasks []CellTask `json:"tasks"`
}

// CellLRP is an LRP instance already on a cell.
type CellLRP struct {
	// ProcessGUID is the instance's process guid (required).
	ProcessGUID string `json:"process_guid"`
	// Index is the instance index.
	Index int `json:"index"`
	// MemoryMB is the memory it uses.
	MemoryMB int `json:"memory_mb"`
	// DiskMB is the disk it uses.
	DiskMB int `json:"disk_mb"`
}

// CellTask is a task already on a cell.
type CellTask struct {
	// TaskGUID is the task's guid (required).
	TaskGUID string `json:"task_guid"`
	// MemoryMB is the memory it uses.
	MemoryMB int `json:"memory_mb"`
	// DiskMB is the disk it uses.
	DiskMB int `json:"disk_mb"`
}

// LRP is one LRP instance to place.
type LRP struct {
	// ProcessGUID is the process guid (required; with Index, unique).
	ProcessGUID string `json:"process_guid"`
	// Index is the instance index.
	Index int `json:"index"`
	// Domain is the LRP's domain.
	Domain string `json:"domain"`
	// MemoryMB is the memory it needs.
	MemoryMB int `json:"memory_mb"`
	// DiskMB is the disk it needs.
	DiskMB int `json:"disk_mb"`
	// MaxPids is carried, not checked (optional).
	MaxPids int `json:"max_pids,omitempty"`
	// RootFS is the rootfs URL (default DefaultRootFS).
	RootFS string `json:"rootfs"`
	// PlacementTags are the tags it requires.
	PlacementTags []string `json:"placement_tags"`
	// VolumeDrivers are the drivers it requires.
	VolumeDrivers []string `json:"volume_drivers"`
}

// Task is one task to place.
type Task struct {
	// TaskGUID is the task guid (required, unique).
	TaskGUID string `json:"task_guid"`
	// Domain is the task's domain.
	Domain string `json:"domain"`
	// MemoryMB is the memory it needs.
	MemoryMB int `json:"memory_mb"`
	// DiskMB is the disk it needs.
	DiskMB int `json:"disk_mb"`
	// MaxPids is carried, not checked (optional).
	MaxPids int `json:"max_pids,omitempty"`
	// RootFS is the rootfs URL (default DefaultRootFS).
	RootFS string `json:"rootfs"`
	// PlacementTags are the tags it requires.
	PlacementTags []string `json:"placement_tags"`
	// VolumeDrivers are the drivers it requires (optional).
	VolumeDrivers []string `json:"volume_drivers,omitempty"`
}

// EngineOptions returns the engine options the scenario asks for.
func (s *Scenario) EngineOptions() auctioneer.Options {
	return auctioneer.Options{
		Strategy:                s.Options.Strategy,
		StartingContainerWeight: s.Options.StartingContainerWeight,
		BinPackFirstFitWeight:   s.Options.BinPackFirstFitWeight,
		MaxInflightStarts:       s.Options.MaxInflightStarts,
		Seed:                    s.Options.Seed,
	}
}

// Auction converts the scenario to the engine's input: each cell's
// available resources are its total minus the work already on it.
func (s *Scenario) Auction() auctioneer.Auction {
	a := auctioneer.Auction{
		Cells: make([]auctioneer.CellState, len(s.Cells)),
		LRPs:  make([]auctioneer.LRPStart, len(s.LRPs)),
		Tasks: make([]auctioneer.TaskStart, len(s.Tasks)),
	}
	for i, c := range s.Cells {
		total := auctioneer.Resources{MemoryMB: c.Total.MemoryMB, DiskMB: c.Total.DiskMB, Containers: c.Total.Containers}
		st := auctioneer.CellState{
			CellID: c.CellID, Zone: c.Zone, Index: c.Index,
			Total: total, Available: total,
			RootFSProviders:       c.RootFSProviders,
			PlacementTags:         c.PlacementTags,
			OptionalPlacementTags: c.OptionalPlacementTags,
			VolumeDrivers:         c.VolumeDrivers,
			ProxyMemoryMB:         c.ProxyMemoryMB,
			StartingContainers:    c.StartingContainers,
			Evacuating:            c.Evacuating,
		}
		for _, l := range c.LRPs {
			st.LRPs = append(st.LRPs, auctioneer.RunningLRP{ProcessGUID: l.ProcessGUID, Index: l.Index, MemoryMB: l.MemoryMB, DiskMB: l.DiskMB})
		}
		for _, t := range c.Tasks {
			st.Tasks = append(st.Tasks, auctioneer.RunningTask{TaskGUID: t.TaskGUID, MemoryMB: t.MemoryMB, DiskMB: t.DiskMB})
		}
		used := c.used()
		st.Available.MemoryMB -= used.MemoryMB
		st.Available.DiskMB -= used.DiskMB
		st.Available.Containers -= used.Containers
		a.Cells[i] = st
	}
	for i, l := range s.LRPs {
		a.LRPs[i] = auctioneer.LRPStart{
			ProcessGUID: l.ProcessGUID, Index: l.Index, Domain: l.Domain,
			MemoryMB: l.MemoryMB, DiskMB: l.DiskMB, MaxPids: l.MaxPids,
			RootFS: l.RootFS, PlacementTags: l.PlacementTags, VolumeDrivers: l.VolumeDrivers,
		}
	}
	for i, t := range s.Tasks {
		a.Tasks[i] = auctioneer.TaskStart{
			TaskGUID: t.TaskGUID, Domain: t.Domain,
			MemoryMB: t.MemoryMB, DiskMB: t.DiskMB, MaxPids: t.MaxPids,
			RootFS: t.RootFS, PlacementTags: t.PlacementTags, VolumeDrivers: t.VolumeDrivers,
		}
	}
	return a
}

// used sums the resources of the work already on the cell.
func (c *Cell) used() Capacity {
	var u Capacity
	for _, l := range c.LRPs {
		u.MemoryMB += l.MemoryMB
		u.DiskMB += l.DiskMB
		u.Containers++
	}
	for _, t := range c.Tasks {
		u.MemoryMB += t.MemoryMB
		u.DiskMB += t.DiskMB
		u.Containers++
	}
	return u
}
