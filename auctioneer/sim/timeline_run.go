package sim

import (
	"container/heap"
	"fmt"
	"math"
	"time"

	"github.com/gavelhq/gavel/auctioneer"
)

// Diego's crash restart policy (reference bbs.md §2.5).
const (
	crashImmediateRestarts = 3
	crashMaxRestarts       = 200
	crashBackoffMinMS      = 30_000
	crashBackoffMaxMS      = 16 * 60_000
	crashResetMS           = 5 * 60_000
)

// crashBackoffMS is the wait before a crashed instance with count crashes
// restarts: 30 s doubling per crash from the third, capped at 16 min.
func crashBackoffMS(count int) int64 {
	if count < crashImmediateRestarts {
		return 0
	}
	shift := count - crashImmediateRestarts
	if shift >= 6 {
		return crashBackoffMaxMS
	}
	return min(int64(crashBackoffMinMS)<<shift, crashBackoffMaxMS)
}

// Causes of a placement request, as reported in TimelineReport.Waits.
const (
	CauseArrival     = "arrival"
	CauseScale       = "scale"
	CauseTask        = "task"
	CauseCrash       = "crash"
	CauseCellFailure = "cell_failure"
	CauseEvacuation  = "evacuation"
	CauseDeploy      = "deploy"
)

var causeNames = []string{CauseArrival, CauseScale, CauseTask, CauseCrash, CauseCellFailure, CauseEvacuation, CauseDeploy}

const (
	causeArrival uint8 = iota
	causeScale
	causeTask
	causeCrash
	causeCellFailure
	causeEvacuation
	causeDeploy
)

type instState uint8

const (
	stUnclaimed instState = iota // waiting for a placement
	stStarting                   // placed, container starting
	stRunning
	stCrashed // waiting for its crash back-off
	stLost    // its cell failed; replaced at the next convergence pass
	stGivenUp // crashed too often (or task failed): never placed again
	stGone    // removed
	stDone    // task completed
	numStates
)

type cellStatus uint8

const (
	cellUp cellStatus = iota
	cellEvacuating
	cellFailed
	cellDrained
)

// tlRequest is one open placement request: from when the work was asked
// for until it runs.
type tlRequest struct {
	cause    uint8
	at       int64
	placedAt int64
}

type tlApp struct {
	guid             string
	domain           string
	memoryMB, diskMB int
	rootfs           string
	tags, drivers    []string
	instances        []*tlInstance // by index; len is the desired count
	running          int
	gone             bool
	deploy           *tlDeploy // the deploy that brings this app in
	mark             uint64
}

type tlInstance struct {
	app          *tlApp
	index        int
	memoryMB     int
	diskMB       int
	state        instState
	cont         *tlContainer // the ordinary container
	evac         *tlContainer // the copy kept on an evacuating cell
	since        int64
	runningSince int64
	crashCount   int
	inBatch      bool
	inRetry      bool
	req          *tlRequest
}

type tlTask struct {
	guid             string
	domain           string
	memoryMB, diskMB int
	rootfs           string
	tags, drivers    []string
	runMS            int64
	state            instState
	cont             *tlContainer
	createdAt        int64
	rejections       int
	inBatch          bool
	req              *tlRequest
}

// tlContainer is a container on a cell; its position in the cell's
// CellState.LRPs or Tasks is pos.
type tlContainer struct {
	inst     *tlInstance
	task     *tlTask
	cell     int32
	pos      int32
	memoryMB int
	diskMB   int
	starting bool
	dead     bool
}

type tlCell struct {
	status     cellStatus
	lrps       []*tlContainer // parallel to the CellState's LRPs
	tasks      []*tlContainer // parallel to the CellState's Tasks
	anonStart  int            // the scenario's starting containers
	evacGen    uint32
	failedAtMS int64
}

type tlDeploy struct {
	from, to *tlApp
	target   int
	step     int
	started  int64
	done     bool
}

type evKind uint8

const (
	evDrain evKind = iota
	evStarted
	evTaskDone
	evConverge
	evSample
	evDeployTick
	evEvacTimeout
	evAnonStarted
)

type tlEvent struct {
	at   int64
	seq  uint64
	kind evKind
	gen  uint32
	cell int32
	cont *tlContainer
}

type evHeap []tlEvent

func (h evHeap) Len() int { return len(h) }
func (h evHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h evHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *evHeap) Push(x any)   { *h = append(*h, x.(tlEvent)) }
func (h *evHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// lostCell is a failed cell whose instances wait for the convergence pass
// after its presence lapses.
type lostCell struct {
	lapse int64
	insts []*tlInstance
}

// TimelineRunOptions configure RunTimeline.
type TimelineRunOptions struct {
	// RunOptions override the scenario's strategy and seed, as for Run.
	RunOptions
	// Progress, when set, is called now and then with the simulated time
	// reached and the latest end the run can have, both in ms.
	Progress func(simMS, endMS int64)
}

// tlSim is the state of one dynamic run.
type tlSim struct {
	o      TimelineOptions
	sc     *Scenario
	engine auctioneer.Options
	tl     *Timeline
	now    int64
	seq    uint64
	queue  evHeap
	next   int // next timeline event

	cells    []tlCell
	states   []auctioneer.CellState
	cellByID map[string]int32
	notUp    int
	liveBuf  []auctioneer.CellState
	// perCell and touched hold an auction's per-cell instance lists of the
	// batch's apps; mark stamps the apps already listed.
	perCell       [][]auctioneer.RunningLRP
	touched       []int32
	mark          uint64
	fullCellLists bool

	apps  map[string]*tlApp
	tasks map[string]*tlTask

	batchLRPs      []*tlInstance
	batchTasks     []*tlTask
	drainScheduled bool
	busyUntil      int64
	auctionSeq     int64
	lrpBuf         []auctioneer.LRPStart
	lrpItems       []*tlInstance
	taskBuf        []auctioneer.TaskStart
	taskItems      []*tlTask

	retry        []*tlInstance // placement failed: convergence re-auctions
	crashed      []*tlInstance // waiting for their back-off
	pendingTasks []*tlTask
	lost         []lostCell
	deploys      []*tlDeploy
	tickPending  bool

	instCount [numStates]int
	taskCount [numStates]int
	starting  int

	minMem, minDisk int

	rep      *TimelineReport
	interval TimelineSample
	ivWaits  []int64
	waitsRun []int64
	waitsPl  []int64
	waitsBy  [][]int64
	deployMS []int64
}

// RunTimeline replays the timeline on the scenario's cluster through the
// real engine on a virtual clock and reports what happened over time. It
// checks the timeline against the scenario first (CheckTimeline). The
// same scenario, timeline and options give the same report, Wall aside.
func RunTimeline(s *Scenario, tl *Timeline, ro TimelineRunOptions) (*TimelineReport, error) {
	if err := CheckTimeline(s, tl); err != nil {
		return nil, err
	}
	// The same strategy resolution as a static run: a name, or a strategy
	// file with its parameters.
	opts, _, check, err := s.engineOptionsFor(ro.RunOptions)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	// The engine validates its options on every run; an empty auction
	// checks them once, up front.
	if _, err := auctioneer.Run(auctioneer.Auction{}, opts); err != nil {
		return nil, fmt.Errorf("simulate strategy %q: %w", opts.Strategy, err)
	}
	if opts.Strategy == "" {
		opts.Strategy = auctioneer.DefaultStrategy
	}
	start := time.Now()
	sim := newTimelineSim(s, tl, opts)
	sim.run(ro.Progress)
	sim.rep.Wall = time.Since(start)
	if check != nil {
		if err := check(); err != nil {
			return nil, fmt.Errorf("simulate strategy %q: %w", opts.Strategy, err)
		}
	}
	return sim.rep, nil
}

func newTimelineSim(s *Scenario, tl *Timeline, opts auctioneer.Options) *tlSim {
	o := tl.Options.withDefaults()
	sim := &tlSim{
		o:        o,
		sc:       s,
		engine:   opts,
		tl:       tl,
		cells:    make([]tlCell, len(s.Cells)),
		states:   make([]auctioneer.CellState, len(s.Cells)),
		cellByID: make(map[string]int32, len(s.Cells)),
		apps:     map[string]*tlApp{},
		tasks:    map[string]*tlTask{},
		waitsBy:  make([][]int64, len(causeNames)),
		rep: &TimelineReport{
			Strategy: opts.Strategy, Seed: opts.Seed, Options: o,
			Events: len(tl.Events), Cells: len(s.Cells),
		},
	}
	sim.rep.Totals.FailuresByReason = map[string]int{}
	sim.minMem, sim.minDisk = math.MaxInt, math.MaxInt
	take := func(m, d int) {
		sim.minMem, sim.minDisk = min(sim.minMem, m), min(sim.minDisk, d)
	}
	for _, l := range s.LRPs {
		take(l.MemoryMB, l.DiskMB)
	}
	for _, t := range s.Tasks {
		take(t.MemoryMB, t.DiskMB)
	}
	for i := range tl.Events {
		e := &tl.Events[i]
		if e.Type == EventDesireLRP || e.Type == EventDesireTask || (e.Type == EventDeploy && e.MemoryMB > 0) {
			take(e.MemoryMB, eventDisk(e, e.MemoryMB))
		}
	}

	// Cells and the work already on them: running since long ago.
	for i, c := range s.Cells {
		total := auctioneer.Resources{MemoryMB: c.Total.MemoryMB, DiskMB: c.Total.DiskMB, Containers: c.Total.Containers}
		sim.cellByID[c.CellID] = int32(i)
		sim.states[i] = auctioneer.CellState{
			CellID: c.CellID, Zone: c.Zone, Index: c.Index,
			Total: total, Available: total,
			RootFSProviders:       c.RootFSProviders,
			PlacementTags:         c.PlacementTags,
			OptionalPlacementTags: c.OptionalPlacementTags,
			VolumeDrivers:         c.VolumeDrivers,
			ProxyMemoryMB:         c.ProxyMemoryMB,
			StartingContainers:    c.StartingContainers,
			LRPs:                  make([]auctioneer.RunningLRP, 0, len(c.LRPs)),
			Tasks:                 make([]auctioneer.RunningTask, 0, len(c.Tasks)),
		}
		sim.cells[i].anonStart = c.StartingContainers
		for _, l := range c.LRPs {
			app := sim.appFor(l.ProcessGUID, l.MemoryMB, l.DiskMB, "", DefaultRootFS, nil, nil)
			take(l.MemoryMB, l.DiskMB)
			inst := sim.instance(app, l.Index, l.MemoryMB, l.DiskMB)
			sim.setState(inst, stRunning)
			inst.runningSince = -crashResetMS - 1
			inst.cont = sim.addContainer(int32(i), &tlContainer{inst: inst, memoryMB: l.MemoryMB, diskMB: l.DiskMB})
		}
		for _, t := range c.Tasks {
			task := &tlTask{guid: t.TaskGUID, memoryMB: t.MemoryMB, diskMB: t.DiskMB, rootfs: DefaultRootFS}
			sim.tasks[t.TaskGUID] = task
			sim.setTaskState(task, stRunning)
			take(t.MemoryMB, t.DiskMB)
			task.cont = sim.addContainer(int32(i), &tlContainer{task: task, memoryMB: t.MemoryMB, diskMB: t.DiskMB})
		}
	}
	if sim.minMem == math.MaxInt {
		sim.minMem, sim.minDisk = 0, 0
	}
	return sim
}

// eventDisk is an event's disk: disk_mb, or def when not given.
func eventDisk(e *TimelineEvent, def int) int {
	if e.DiskMB > 0 {
		return e.DiskMB
	}
	return def
}

// appFor returns the app named guid, creating it with these resources.
func (s *tlSim) appFor(guid string, mem, disk int, domain, rootfs string, tags, drivers []string) *tlApp {
	if a := s.apps[guid]; a != nil {
		return a
	}
	if rootfs == "" {
		rootfs = DefaultRootFS
	}
	a := &tlApp{guid: guid, domain: domain, memoryMB: mem, diskMB: disk, rootfs: rootfs, tags: tags, drivers: drivers}
	s.apps[guid] = a
	return a
}

// instance returns app's instance at index, creating it (unclaimed) and
// any missing lower indices' slots.
func (s *tlSim) instance(a *tlApp, index, mem, disk int) *tlInstance {
	for len(a.instances) <= index {
		a.instances = append(a.instances, nil)
	}
	if a.instances[index] == nil {
		a.instances[index] = &tlInstance{app: a, index: index, memoryMB: mem, diskMB: disk, state: stGone}
		s.instCount[stGone]++
	}
	return a.instances[index]
}

func (s *tlSim) setState(inst *tlInstance, st instState) {
	if inst.state == stRunning {
		inst.app.running--
	}
	if st == stRunning {
		inst.app.running++
	}
	s.instCount[inst.state]--
	s.instCount[st]++
	inst.state = st
}

func (s *tlSim) setTaskState(t *tlTask, st instState) {
	s.taskCount[t.state]--
	s.taskCount[st]++
	t.state = st
}

func (s *tlSim) push(at int64, e tlEvent) {
	e.at = at
	e.seq = s.seq
	s.seq++
	heap.Push(&s.queue, e)
}

// run is the event loop: timeline events and scheduled ones in time order
// (a timeline event goes first at equal times), until the end.
func (s *tlSim) run(progress func(simMS, endMS int64)) {
	o := s.o
	maxEnd := s.tl.maxEnd(o)
	s.sample() // the starting point, before anything happens
	s.push(o.ConvergenceIntervalMS, tlEvent{kind: evConverge})
	s.push(o.SampleIntervalMS, tlEvent{kind: evSample})
	for i := range s.cells {
		if s.cells[i].anonStart > 0 {
			s.push(o.ContainerStartMS, tlEvent{kind: evAnonStarted, cell: int32(i)})
		}
	}
	// Evacuating scenario cells start their drain at time 0, then the
	// scenario's work to place arrives.
	for i := range s.cells {
		if s.states[i].Evacuating {
			s.states[i].Evacuating = false
			s.drainCell(int32(i))
		}
	}
	s.scenarioArrivals()

	for steps := 0; ; steps++ {
		if progress != nil && steps%4096 == 0 {
			progress(s.now, maxEnd)
		}
		userNext := s.next < len(s.tl.Events)
		var at int64
		if userNext {
			at = s.tl.Events[s.next].AtMS
		}
		if len(s.queue) > 0 && (!userNext || s.queue[0].at < at) {
			at = s.queue[0].at
			userNext = false
		}
		if o.EndMS > 0 && at > o.EndMS {
			s.now = o.EndMS
			break
		}
		if o.EndMS == 0 {
			if s.next >= len(s.tl.Events) && s.settled() {
				break
			}
			if at > maxEnd {
				s.now = maxEnd
				break
			}
		}
		s.now = at
		if userNext {
			s.userEvent(&s.tl.Events[s.next])
			s.next++
			continue
		}
		s.handle(heap.Pop(&s.queue).(tlEvent))
	}
	if progress != nil {
		progress(s.now, maxEnd)
	}
	s.finish()
}

// settled reports whether nothing is left to happen but periodic passes:
// no work waiting or starting, no deploy or drain under way.
func (s *tlSim) settled() bool {
	c, t := &s.instCount, &s.taskCount
	return c[stUnclaimed]+c[stStarting]+c[stCrashed]+c[stLost] == 0 &&
		t[stUnclaimed]+t[stStarting] == 0 && len(s.deploys) == 0 && !s.drainScheduled &&
		!s.anyEvacuating()
}

func (s *tlSim) anyEvacuating() bool {
	if s.notUp == 0 {
		return false
	}
	for i := range s.cells {
		if s.cells[i].status == cellEvacuating {
			return true
		}
	}
	return false
}

// scenarioArrivals asks for the scenario's LRPs and tasks at time 0.
func (s *tlSim) scenarioArrivals() {
	for _, l := range s.sc.LRPs {
		app := s.appFor(l.ProcessGUID, l.MemoryMB, l.DiskMB, l.Domain, l.RootFS, l.PlacementTags, l.VolumeDrivers)
		inst := s.instance(app, l.Index, l.MemoryMB, l.DiskMB)
		if inst.state != stGone {
			continue // already running on a cell
		}
		s.request(inst, causeArrival)
	}
	for _, t := range s.sc.Tasks {
		if s.tasks[t.TaskGUID] != nil {
			continue
		}
		s.newTask(t.TaskGUID, t.Domain, t.MemoryMB, t.DiskMB, t.RootFS, t.PlacementTags, t.VolumeDrivers, 0)
	}
}
