package auctioneer

// Cell is the read-only view of one cell that a Strategy scores: the cell's
// reported state plus every reservation this run has made on it so far
// (the batch overlay). A Strategy must not retain a *Cell after Score
// returns.
type Cell struct {
	state *CellState

	// The overlay: updated by the engine after every reservation.
	avail    Resources
	starting int
	lrps     int
	tasks    int
	// appInstances is stamped by the engine before an LRP is scored: the
	// number of that LRP's process instances on this cell.
	appInstances int

	total    Resources
	proxy    int
	zone     int32
	zoneRank int
}

// ID returns the cell id.
func (c *Cell) ID() string { return c.state.CellID }

// Zone returns the cell's zone.
func (c *Cell) Zone() string { return c.state.Zone }

// Index returns the cell index the rep reported.
func (c *Cell) Index() int { return c.state.Index }

// ZoneRank returns the cell's position (0..n-1) among its zone's cells
// sorted by reported index: Diego's normalised cell index for the bin-pack
// term.
func (c *Cell) ZoneRank() int { return c.zoneRank }

// Total returns the cell's capacity.
func (c *Cell) Total() Resources { return c.total }

// Available returns what is left on the cell, this run's reservations
// subtracted.
func (c *Cell) Available() Resources { return c.avail }

// StartingContainers returns the reported starting containers plus one per
// reservation this run made on the cell.
func (c *Cell) StartingContainers() int { return c.starting }

// ProxyMemoryMB returns the per-LRP proxy memory allowance.
func (c *Cell) ProxyMemoryMB() int { return c.proxy }

// LRPCount returns the LRP instances on the cell, reserved ones included.
func (c *Cell) LRPCount() int { return c.lrps }

// TaskCount returns the tasks on the cell, reserved ones included.
func (c *Cell) TaskCount() int { return c.tasks }

// AppInstances returns, while an LRP is being scored, how many instances of
// its process guid are on the cell (reserved ones included); 0 for tasks.
func (c *Cell) AppInstances() int { return c.appInstances }

// State returns the state the cell reported, without this run's
// reservations. The caller must not modify it.
func (c *Cell) State() *CellState { return c.state }

// UsageAfter returns the cell's mean utilisation of memory, disk and
// containers after placing memoryMB, diskMB and one container: Diego's
// resource score without its starting-container term (rep
// Resources.ComputeScore, evaluated in the same order). A dimension with
// zero capacity counts as fully used.
func (c *Cell) UsageAfter(memoryMB, diskMB int) float64 {
	return (usedFraction(c.avail.MemoryMB-memoryMB, c.total.MemoryMB) +
		usedFraction(c.avail.DiskMB-diskMB, c.total.DiskMB) +
		usedFraction(c.avail.Containers-1, c.total.Containers)) / 3.0
}

func usedFraction(remaining, total int) float64 {
	if total <= 0 {
		return 1
	}
	return 1.0 - float64(remaining)/float64(total)
}

// misfit returns the resources the cell lacks for memoryMB, diskMB and one
// container (reference §1.6 fit check); 0 when it fits.
func (c *Cell) misfit(memoryMB, diskMB int) problem {
	var p problem
	if c.avail.DiskMB < diskMB {
		p |= problemDisk
	}
	if c.avail.MemoryMB < memoryMB {
		p |= problemMemory
	}
	if c.avail.Containers < 1 {
		p |= problemContainers
	}
	return p
}

// Work is the read-only view of the item being placed that a Strategy
// scores.
type Work struct {
	kind     Kind
	request  int
	memoryMB int
	diskMB   int
	lrp      *LRPStart
	task     *TaskStart
	app      *app
}

// Kind returns whether the item is an LRP instance or a task.
func (w *Work) Kind() Kind { return w.kind }

// ProcessGUID returns the LRP's process guid ("" for tasks).
func (w *Work) ProcessGUID() string {
	if w.lrp != nil {
		return w.lrp.ProcessGUID
	}
	return ""
}

// Index returns the LRP instance index (0 for tasks).
func (w *Work) Index() int {
	if w.lrp != nil {
		return w.lrp.Index
	}
	return 0
}

// TaskGUID returns the task guid ("" for LRPs).
func (w *Work) TaskGUID() string {
	if w.task != nil {
		return w.task.TaskGUID
	}
	return ""
}

// MemoryMB returns the memory the item needs (without proxy allowance).
func (w *Work) MemoryMB() int { return w.memoryMB }

// DiskMB returns the disk the item needs.
func (w *Work) DiskMB() int { return w.diskMB }

// LRP returns the LRP request, or nil for a task. Do not modify it.
func (w *Work) LRP() *LRPStart { return w.lrp }

// Task returns the task request, or nil for an LRP. Do not modify it.
func (w *Work) Task() *TaskStart { return w.task }

// ZoneInstances returns, while an LRP is being scored, how many instances
// of its process guid are in c's zone (reserved ones included); 0 for
// tasks.
func (w *Work) ZoneInstances(c *Cell) int {
	if w.app == nil {
		return 0
	}
	return int(w.app.zones[c.zone])
}
