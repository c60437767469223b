package auctioneer

// Resources is an amount of memory, disk and container slots.
type Resources struct {
	// MemoryMB is memory in megabytes.
	MemoryMB int
	// DiskMB is disk in megabytes.
	DiskMB int
	// Containers is a number of container slots.
	Containers int
}

// CellState is one cell's state as its rep reports it (reference §4.2).
// The engine never modifies a CellState it is given.
type CellState struct {
	// CellID identifies the cell; it must be unique within an auction.
	CellID string
	// Zone is the cell's availability zone.
	Zone string
	// Index is the cell's reported index (BOSH spec.index). The engine
	// renumbers cells 0..n-1 within each zone by this index (Cell.ZoneRank).
	Index int
	// Total is the cell's capacity.
	Total Resources
	// Available is what is left of Total after the work already on the cell.
	Available Resources
	// RootFSProviders maps a rootfs URL scheme to the stacks the cell offers
	// for it; an empty list means any URL of that scheme.
	RootFSProviders map[string][]string
	// PlacementTags are the tags every request placed here must carry.
	PlacementTags []string
	// OptionalPlacementTags are tags a request may carry to land here.
	OptionalPlacementTags []string
	// VolumeDrivers are the volume drivers the cell offers.
	VolumeDrivers []string
	// ProxyMemoryMB is the per-LRP proxy memory allowance added to an LRP's
	// memory in the fit check and in Diego's score (0 when the proxy is off).
	ProxyMemoryMB int
	// StartingContainers counts containers reserved, initializing or created.
	StartingContainers int
	// Evacuating cells are excluded from the auction.
	Evacuating bool
	// LRPs are the LRP instances already on the cell, in any state.
	LRPs []RunningLRP
	// LRPCount, when above len(LRPs), is the number of LRP instances on
	// the cell (Cell.LRPCount). The engine reads LRPs only for the apps
	// of the auction, so a caller that keeps its own index (the
	// simulator's dynamic runs) may list only those apps' instances and
	// give the full count here. 0 means len(LRPs).
	LRPCount int
	// Tasks are the tasks already on the cell, in any state.
	Tasks []RunningTask
}

// RunningLRP is an LRP instance already on a cell.
type RunningLRP struct {
	// ProcessGUID is the LRP's process guid.
	ProcessGUID string
	// Index is the instance index.
	Index int
	// MemoryMB is the instance's memory.
	MemoryMB int
	// DiskMB is the instance's disk.
	DiskMB int
}

// RunningTask is a task already on a cell.
type RunningTask struct {
	// TaskGUID is the task's guid.
	TaskGUID string
	// MemoryMB is the task's memory.
	MemoryMB int
	// DiskMB is the task's disk.
	DiskMB int
}

// LRPStart asks for one LRP instance to be placed.
type LRPStart struct {
	// ProcessGUID is the desired LRP's process guid.
	ProcessGUID string
	// Index is the instance index; index 0 is placed before tasks.
	Index int
	// Domain is the LRP's domain (carried, not used for placement).
	Domain string
	// MemoryMB is the memory the instance needs.
	MemoryMB int
	// DiskMB is the disk the instance needs.
	DiskMB int
	// MaxPids is carried but, as in Diego, not checked.
	MaxPids int
	// RootFS is the rootfs URL, e.g. "preloaded:cflinuxfs4" or "docker:///busybox".
	RootFS string
	// PlacementTags are the tags the instance requires.
	PlacementTags []string
	// VolumeDrivers are the volume drivers the instance requires.
	VolumeDrivers []string
	// DesiredEpoch and RunInfoRevision name the run info version the BBS
	// sent (carried to the cell, not used for placement).
	DesiredEpoch    string
	RunInfoRevision int64
	// Repair marks an instance that should be running and is not (a lost
	// cell's, a crash restarted at once, an evacuated one): a busy
	// auctioneer never holds a batch with one past min_auction_interval.
	Repair bool
}

// TaskStart asks for one task to be placed.
type TaskStart struct {
	// TaskGUID identifies the task.
	TaskGUID string
	// Domain is the task's domain (carried, not used for placement).
	Domain string
	// MemoryMB is the memory the task needs.
	MemoryMB int
	// DiskMB is the disk the task needs.
	DiskMB int
	// MaxPids is carried but, as in Diego, not checked.
	MaxPids int
	// RootFS is the rootfs URL.
	RootFS string
	// PlacementTags are the tags the task requires.
	PlacementTags []string
	// VolumeDrivers are the volume drivers the task requires.
	VolumeDrivers []string
}

// Auction is the input of one run: the cell snapshot and the batch.
// Identifiers are assumed unique (batching de-duplicates them).
type Auction struct {
	// Cells are the live cells' states.
	Cells []CellState
	// LRPs are the LRP instances to place.
	LRPs []LRPStart
	// Tasks are the tasks to place.
	Tasks []TaskStart
}

// Kind says whether a work item is an LRP instance or a task.
type Kind string

const (
	// KindLRP marks an LRP instance.
	KindLRP Kind = "lrp"
	// KindTask marks a task.
	KindTask Kind = "task"
)

// Placement is one work item won by a cell.
type Placement struct {
	// Kind is the item's kind.
	Kind Kind
	// Request is the item's position in Auction.LRPs or Auction.Tasks.
	Request int
	// ProcessGUID is set for LRPs.
	ProcessGUID string
	// Index is the LRP instance index (0 for tasks).
	Index int
	// TaskGUID is set for tasks.
	TaskGUID string
	// CellID is the winning cell.
	CellID string
}

// Failure is one work item that could not be placed.
type Failure struct {
	// Kind is the item's kind.
	Kind Kind
	// Request is the item's position in Auction.LRPs or Auction.Tasks.
	Request int
	// ProcessGUID is set for LRPs.
	ProcessGUID string
	// Index is the LRP instance index (0 for tasks).
	Index int
	// TaskGUID is set for tasks.
	TaskGUID string
	// Reason classifies the failure.
	Reason Reason
	// Message is Diego's exact placement error string (reference §1.10).
	Message string
	// Rejections explains the failure: how many cells each filter or fit
	// problem rejected. A cell short of several resources counts once per
	// resource. Empty for the communication and in-flight failures.
	Rejections []Rejection
}

// Rejection counts the cells turned down for one reason.
type Rejection struct {
	// Reason is a short phrase such as "rootfs mismatch" or "insufficient memory".
	Reason string
	// Cells is how many cells it turned down.
	Cells int
}

// Metrics summarises a run.
type Metrics struct {
	// LRPsPlaced counts LRP instances placed.
	LRPsPlaced int
	// LRPsFailed counts LRP instances not placed.
	LRPsFailed int
	// TasksPlaced counts tasks placed.
	TasksPlaced int
	// TasksFailed counts tasks not placed.
	TasksFailed int
	// CellsConsidered counts the cells that took part (not evacuating).
	CellsConsidered int
	// CellsExcluded counts the evacuating cells left out.
	CellsExcluded int
	// InflightStarts is the in-flight start count at the end of the run:
	// the cells' starting containers plus this run's placements.
	InflightStarts int
	// CellsScored counts calls to Strategy.Score: work × fitting cells
	// for a strategy without a ScoreForm, far fewer with the cell index
	// (index.go), which places identically.
	CellsScored int64
}

// Result is the output of Run.
type Result struct {
	// Placements are the items placed, in placement order.
	Placements []Placement
	// Failures are the items not placed, in placement order.
	Failures []Failure
	// Metrics summarise the run.
	Metrics Metrics
}
