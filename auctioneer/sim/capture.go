package sim

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/bbs/models"
)

// CaptureWork selects the work a captured scenario asks to place.
type CaptureWork string

// The work a capture can ask to place.
const (
	// WorkNone places nothing: the scenario is the cluster's cells and
	// what runs on them.
	WorkNone CaptureWork = "none"
	// WorkDesired places every instance of every desired LRP and every
	// pending or running task; it needs the existing work cleared, or the
	// instances already running would count twice.
	WorkDesired CaptureWork = "desired"
	// WorkUnplaced places what is desired but on no captured cell: missing,
	// unclaimed or crashed instances and tasks not yet on a cell.
	WorkUnplaced CaptureWork = "unplaced"
)

// CaptureWorks lists the accepted CaptureWork values.
func CaptureWorks() []CaptureWork { return []CaptureWork{WorkNone, WorkDesired, WorkUnplaced} }

// ClusterState is a running cluster in the engine's terms: what a capture
// reads from the BBS and the reps.
type ClusterState struct {
	// Cells are the cells' states as their reps reported them (what the
	// auctioneer sees, auctionrunner.CellState), in any order.
	Cells []auctioneer.CellState
	// DesiredLRPs are the instances of every desired LRP, each index from 0
	// to its instance count minus one, as the BBS would request them.
	DesiredLRPs []auctioneer.LRPStart
	// Tasks are the tasks that are pending or running, as the BBS would
	// request them.
	Tasks []auctioneer.TaskStart
}

// CaptureOptions shape a captured scenario.
type CaptureOptions struct {
	// Work selects the work to place (default WorkNone).
	Work CaptureWork
	// ClearExisting empties the cells: no existing LRPs or tasks and no
	// starting containers, as the cluster was before any placement.
	ClearExisting bool
	// Replace names process guids whose instances leave the cells and whose
	// desired instances become work to place: "where would this app go".
	// A cell's starting-container count is kept as reported.
	Replace []string
	// Options are written as the scenario's options (strategy, weights,
	// seed) as they are, except that an empty Strategy is written as
	// "diego". Set them as the cluster's auctioneer is configured (its
	// defaults: auctioneer.DefaultOptions) for a replay of its auctions.
	Options ScenarioOptions
	// MaxCells bounds the cells (default and at most MaxCells).
	MaxCells int
	// MaxWork bounds the LRP instances to place and, separately, the tasks
	// (default and at most MaxWork).
	MaxWork int
}

// ErrCaptureTooLarge is wrapped by a capture refused for its size.
var ErrCaptureTooLarge = errors.New("cluster too large to capture")

// Validate checks the options, naming the field and the rule.
func (o CaptureOptions) Validate() error {
	var errs []error
	switch o.Work {
	case "", WorkNone, WorkDesired, WorkUnplaced:
	default:
		errs = append(errs, fmt.Errorf("work: must be one of none, desired, unplaced (got %q)", o.Work))
	}
	if o.Work == WorkDesired && !o.ClearExisting {
		errs = append(errs, errors.New("work: desired places every desired instance, so the existing work must be cleared (or the running instances count twice); use unplaced to keep it"))
	}
	if o.MaxCells < 0 || o.MaxCells > MaxCells {
		errs = append(errs, fmt.Errorf("max cells: must be between 0 (default %d) and %d (got %d)", MaxCells, MaxCells, o.MaxCells))
	}
	if o.MaxWork < 0 || o.MaxWork > MaxWork {
		errs = append(errs, fmt.Errorf("max work: must be between 0 (default %d) and %d (got %d)", MaxWork, MaxWork, o.MaxWork))
	}
	if len(o.Replace) > models.MaxSmallList {
		errs = append(errs, fmt.Errorf("replace: at most %d process guids (got %d)", models.MaxSmallList, len(o.Replace)))
	}
	for i, g := range o.Replace {
		if g == "" || len(g) > models.MaxGUIDBytes {
			errs = append(errs, fmt.Errorf("replace[%d]: a process guid must be 1 to %d bytes", i, models.MaxGUIDBytes))
		}
	}
	return errors.Join(errs...)
}

// CaptureNote is something a capture could not carry over exactly.
type CaptureNote struct {
	// CellID is the cell concerned ("" for the whole capture).
	CellID string
	// Message says what differs.
	Message string
}

// Capture builds a scenario from a cluster's state: one scenario cell per
// cell, sorted by cell id as the auctioneer lists them (the engine's seeded
// shuffle runs over that order, so a replay with the auction's seed
// places as the auction did), with its capacity, zone, index, tags, rootfs
// providers, volume drivers, proxy allowance, starting containers,
// evacuation and, unless cleared, the LRP instances (process guid and index,
// so app locality counts) and tasks on it; then the work o.Work selects,
// LRPs sorted by process guid and index, tasks by guid. It returns notes
// for what a scenario cannot express (a cell whose reported free capacity
// is not its total minus its work) and an error, naming the field, for
// options that are invalid or a cluster beyond the bounds.
func Capture(st ClusterState, o CaptureOptions) (*Scenario, []CaptureNote, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, fmt.Errorf("capture: %w", err)
	}
	maxCells, maxWork := cmp.Or(o.MaxCells, MaxCells), cmp.Or(o.MaxWork, MaxWork)
	if len(st.Cells) > maxCells {
		return nil, nil, fmt.Errorf("capture: %w: cells: %d, more than the %d allowed", ErrCaptureTooLarge, len(st.Cells), maxCells)
	}
	opts := o.Options
	if opts.Strategy == "" {
		opts.Strategy = auctioneer.DefaultStrategy
	}
	replace := make(map[string]bool, len(o.Replace))
	for _, g := range o.Replace {
		replace[g] = true
	}

	s := &Scenario{Options: opts, Cells: make([]Cell, 0, len(st.Cells)), LRPs: []LRP{}, Tasks: []Task{}}
	var notes []CaptureNote
	onCell := map[lrpKey]bool{}
	taskOnCell := map[string]bool{}
	cells := slices.Clone(st.Cells)
	slices.SortFunc(cells, func(a, b auctioneer.CellState) int { return strings.Compare(a.CellID, b.CellID) })
	for i := range cells {
		if i > 0 && cells[i].CellID == cells[i-1].CellID {
			return nil, nil, fmt.Errorf("capture: cells: duplicate cell id %q", cells[i].CellID)
		}
		c, err := captureCell(&cells[i], o.ClearExisting, replace)
		if err != nil {
			return nil, nil, fmt.Errorf("capture: cell %s: %w", cells[i].CellID, err)
		}
		for _, l := range cells[i].LRPs {
			onCell[lrpKey{l.ProcessGUID, l.Index}] = true
		}
		for _, t := range cells[i].Tasks {
			taskOnCell[t.TaskGUID] = true
		}
		if n := freeMismatch(&cells[i], o.ClearExisting, replace); n != "" {
			notes = append(notes, CaptureNote{CellID: c.CellID, Message: n})
		}
		s.Cells = append(s.Cells, c)
	}

	lrps := slices.Clone(st.DesiredLRPs)
	slices.SortStableFunc(lrps, func(a, b auctioneer.LRPStart) int {
		if c := strings.Compare(a.ProcessGUID, b.ProcessGUID); c != 0 {
			return c
		}
		return a.Index - b.Index
	})
	for _, l := range lrps {
		key := lrpKey{l.ProcessGUID, l.Index}
		take := replace[l.ProcessGUID] || o.Work == WorkDesired || (o.Work == WorkUnplaced && !onCell[key])
		if !take {
			continue
		}
		if len(s.LRPs) == maxWork {
			return nil, nil, fmt.Errorf("capture: %w: lrps: more than the %d instances allowed", ErrCaptureTooLarge, maxWork)
		}
		if n := len(s.LRPs); n > 0 && s.LRPs[n-1].ProcessGUID == l.ProcessGUID && s.LRPs[n-1].Index == l.Index {
			continue // the same instance twice: the first wins, as in the auctioneer's batch
		}
		s.LRPs = append(s.LRPs, LRP{
			ProcessGUID: l.ProcessGUID, Index: l.Index, Domain: l.Domain,
			MemoryMB: l.MemoryMB, DiskMB: l.DiskMB, MaxPids: l.MaxPids,
			RootFS: cmp.Or(l.RootFS, DefaultRootFS), PlacementTags: nonNil(l.PlacementTags), VolumeDrivers: nonNil(l.VolumeDrivers),
		})
	}
	tasks := slices.Clone(st.Tasks)
	slices.SortStableFunc(tasks, func(a, b auctioneer.TaskStart) int { return strings.Compare(a.TaskGUID, b.TaskGUID) })
	for _, t := range tasks {
		if o.Work != WorkDesired && (o.Work != WorkUnplaced || taskOnCell[t.TaskGUID]) {
			continue
		}
		if n := len(s.Tasks); n > 0 && s.Tasks[n-1].TaskGUID == t.TaskGUID {
			continue
		}
		if len(s.Tasks) == maxWork {
			return nil, nil, fmt.Errorf("capture: %w: tasks: more than the %d allowed", ErrCaptureTooLarge, maxWork)
		}
		s.Tasks = append(s.Tasks, Task{
			TaskGUID: t.TaskGUID, Domain: t.Domain, MemoryMB: t.MemoryMB, DiskMB: t.DiskMB, MaxPids: t.MaxPids,
			RootFS: cmp.Or(t.RootFS, DefaultRootFS), PlacementTags: nonNil(t.PlacementTags), VolumeDrivers: nonNil(t.VolumeDrivers),
		})
	}
	return s, notes, nil
}

// captureCell converts one cell, dropping its work when clear and the
// instances of replaced apps.
func captureCell(st *auctioneer.CellState, clear bool, replace map[string]bool) (Cell, error) {
	c := Cell{
		CellID: st.CellID, Zone: st.Zone, Index: st.Index,
		Total:                 Capacity{MemoryMB: st.Total.MemoryMB, DiskMB: st.Total.DiskMB, Containers: st.Total.Containers},
		RootFSProviders:       make(map[string][]string, len(st.RootFSProviders)),
		PlacementTags:         nonNil(st.PlacementTags),
		OptionalPlacementTags: nonNil(st.OptionalPlacementTags),
		VolumeDrivers:         nonNil(st.VolumeDrivers),
		ProxyMemoryMB:         st.ProxyMemoryMB,
		StartingContainers:    st.StartingContainers,
		Evacuating:            st.Evacuating,
		LRPs:                  []CellLRP{},
		Tasks:                 []CellTask{},
	}
	for scheme, stacks := range st.RootFSProviders {
		c.RootFSProviders[scheme] = nonNil(stacks)
	}
	if clear {
		c.StartingContainers = 0
		return c, nil
	}
	if len(st.LRPs) > models.MaxListItems || len(st.Tasks) > models.MaxListItems {
		return Cell{}, fmt.Errorf("%w: a cell holds at most %d lrps and %d tasks in a scenario (got %d and %d)",
			ErrCaptureTooLarge, models.MaxListItems, models.MaxListItems, len(st.LRPs), len(st.Tasks))
	}
	for _, l := range st.LRPs {
		if replace[l.ProcessGUID] {
			continue
		}
		c.LRPs = append(c.LRPs, CellLRP{ProcessGUID: l.ProcessGUID, Index: l.Index, MemoryMB: l.MemoryMB, DiskMB: l.DiskMB})
	}
	for _, t := range st.Tasks {
		c.Tasks = append(c.Tasks, CellTask{TaskGUID: t.TaskGUID, MemoryMB: t.MemoryMB, DiskMB: t.DiskMB})
	}
	return c, nil
}

// freeMismatch says how the cell's reported free capacity differs from its
// total minus the work it keeps in the scenario ("" when it does not): a
// scenario derives free capacity from the work, so such a cell replays
// with the derived figures (a rep counts, say, each LRP's proxy memory).
func freeMismatch(st *auctioneer.CellState, clear bool, replace map[string]bool) string {
	if clear || len(replace) > 0 {
		return "" // the reported figures describe work the scenario left out on purpose
	}
	var mem, disk, containers int
	for _, l := range st.LRPs {
		mem, disk, containers = mem+l.MemoryMB, disk+l.DiskMB, containers+1
	}
	for _, t := range st.Tasks {
		mem, disk, containers = mem+t.MemoryMB, disk+t.DiskMB, containers+1
	}
	want := auctioneer.Resources{MemoryMB: st.Total.MemoryMB - mem, DiskMB: st.Total.DiskMB - disk, Containers: st.Total.Containers - containers}
	if want == st.Available {
		return ""
	}
	return fmt.Sprintf("reports %d MB memory, %d MB disk, %d containers free; the scenario derives %d MB, %d MB, %d from its total and work",
		st.Available.MemoryMB, st.Available.DiskMB, st.Available.Containers, want.MemoryMB, want.DiskMB, want.Containers)
}

// nonNil returns a copy of s, never nil (a scenario writes [] not null).
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}
