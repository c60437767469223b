package sim

import (
	"github.com/gavelhq/gavel/auctioneer"
)

// request opens a placement request for inst (unless one is open: a
// re-placement keeps the original request time) and puts it in the batch.
func (s *tlSim) request(inst *tlInstance, cause uint8) {
	if inst.req == nil {
		inst.req = &tlRequest{cause: cause, at: s.now}
		s.rep.Totals.Requested++
		s.interval.Requested++
	}
	s.setState(inst, stUnclaimed)
	inst.since = s.now
	s.batchLRP(inst)
}

func (s *tlSim) batchLRP(inst *tlInstance) {
	if inst.inBatch {
		return
	}
	inst.inBatch = true
	s.batchLRPs = append(s.batchLRPs, inst)
	s.wake()
}

func (s *tlSim) batchTask(t *tlTask) {
	if t.inBatch {
		return
	}
	t.inBatch = true
	s.batchTasks = append(s.batchTasks, t)
	s.wake()
}

// wake schedules the next auction's drain, as a request waking the
// auctioneer does: after the auction in flight, the batch window and the
// cell-state fetch. Work added before the drain joins it.
func (s *tlSim) wake() {
	if s.drainScheduled {
		return
	}
	s.drainScheduled = true
	s.push(max(s.now, s.busyUntil)+s.o.BatchWindowMS+s.o.FetchMS, tlEvent{kind: evDrain})
}

func (s *tlSim) newTask(guid, domain string, mem, disk int, rootfs string, tags, drivers []string, runMS int64) {
	if rootfs == "" {
		rootfs = DefaultRootFS
	}
	t := &tlTask{guid: guid, domain: domain, memoryMB: mem, diskMB: disk, rootfs: rootfs, tags: tags, drivers: drivers, runMS: runMS, createdAt: s.now, state: stGone}
	s.taskCount[stGone]++
	s.tasks[guid] = t
	t.req = &tlRequest{cause: causeTask, at: s.now}
	s.rep.Totals.Requested++
	s.interval.Requested++
	s.setTaskState(t, stUnclaimed)
	s.batchTask(t)
}

// addContainer puts c on cell ci, taking its resources (and, while it
// starts, a starting-container slot).
func (s *tlSim) addContainer(ci int32, c *tlContainer) *tlContainer {
	st := &s.states[ci]
	cell := &s.cells[ci]
	c.cell = ci
	if c.inst != nil {
		c.pos = int32(len(st.LRPs))
		st.LRPs = append(st.LRPs, auctioneer.RunningLRP{ProcessGUID: c.inst.app.guid, Index: c.inst.index, MemoryMB: c.memoryMB, DiskMB: c.diskMB})
		cell.lrps = append(cell.lrps, c)
	} else {
		c.pos = int32(len(st.Tasks))
		st.Tasks = append(st.Tasks, auctioneer.RunningTask{TaskGUID: c.task.guid, MemoryMB: c.memoryMB, DiskMB: c.diskMB})
		cell.tasks = append(cell.tasks, c)
	}
	st.Available.MemoryMB -= c.memoryMB
	st.Available.DiskMB -= c.diskMB
	st.Available.Containers--
	if c.starting {
		st.StartingContainers++
		s.starting++
	}
	return c
}

// removeContainer frees c's resources; a draining cell left empty is done.
func (s *tlSim) removeContainer(c *tlContainer) {
	if c == nil || c.dead {
		return
	}
	c.dead = true
	st := &s.states[c.cell]
	cell := &s.cells[c.cell]
	if c.inst != nil {
		last := len(st.LRPs) - 1
		st.LRPs[c.pos] = st.LRPs[last]
		cell.lrps[c.pos] = cell.lrps[last]
		cell.lrps[c.pos].pos = c.pos
		st.LRPs = st.LRPs[:last]
		cell.lrps[last] = nil
		cell.lrps = cell.lrps[:last]
	} else {
		last := len(st.Tasks) - 1
		st.Tasks[c.pos] = st.Tasks[last]
		cell.tasks[c.pos] = cell.tasks[last]
		cell.tasks[c.pos].pos = c.pos
		st.Tasks = st.Tasks[:last]
		cell.tasks[last] = nil
		cell.tasks = cell.tasks[:last]
	}
	st.Available.MemoryMB += c.memoryMB
	st.Available.DiskMB += c.diskMB
	st.Available.Containers++
	if c.starting {
		st.StartingContainers--
		s.starting--
	}
	if cell.status == cellEvacuating && len(cell.lrps)+len(cell.tasks) == 0 {
		cell.status = cellDrained
		cell.evacGen++
	}
}

// userEvent applies one timeline event.
func (s *tlSim) userEvent(e *TimelineEvent) {
	switch e.Type {
	case EventDesireLRP:
		if a := s.apps[e.ProcessGUID]; a != nil && !a.gone {
			s.rep.Totals.EventsIgnored++
			return
		}
		delete(s.apps, e.ProcessGUID)
		a := s.appFor(e.ProcessGUID, e.MemoryMB, eventDisk(e, e.MemoryMB), e.Domain, e.RootFS, e.PlacementTags, e.VolumeDrivers)
		s.scaleApp(a, *e.Instances, causeArrival)
	case EventDesireTask:
		s.newTask(e.TaskGUID, e.Domain, e.MemoryMB, eventDisk(e, e.MemoryMB), e.RootFS, e.PlacementTags, e.VolumeDrivers, e.RunMS)
	case EventScale:
		if a := s.liveApp(e.ProcessGUID); a != nil {
			if d := a.deploy; d != nil && !d.done {
				d.target = *e.Instances // a scale during a deploy moves its goal
				s.scaleApp(a, min(len(a.instances), d.target), causeScale)
				return
			}
			s.scaleApp(a, *e.Instances, causeScale)
		}
	case EventRemoveLRP:
		if a := s.liveApp(e.ProcessGUID); a != nil {
			if d := a.deploy; d != nil && !d.done {
				// Removing the new version of a deploy removes the old too.
				s.endDeploy(d, false)
				s.removeApp(d.from)
			}
			s.removeApp(a)
		}
	case EventCrash:
		s.crash(e)
	case EventDeploy:
		s.startDeploy(e)
	case EventCellFail:
		s.failCell(s.cellByID[e.CellID])
	case EventCellDrain:
		ci := s.cellByID[e.CellID]
		if s.cells[ci].status != cellUp {
			s.rep.Totals.EventsIgnored++
			return
		}
		s.drainCell(ci)
	case EventCellRecover:
		s.recoverCell(s.cellByID[e.CellID])
	}
}

// liveApp returns the app named guid, or nil (counted) when it is gone.
func (s *tlSim) liveApp(guid string) *tlApp {
	a := s.apps[guid]
	if a == nil || a.gone {
		s.rep.Totals.EventsIgnored++
		return nil
	}
	return a
}

// scaleApp makes a's desired count n: new indices are requested, indices
// from n up removed.
func (s *tlSim) scaleApp(a *tlApp, n int, cause uint8) {
	for i := len(a.instances); i < n; i++ {
		s.request(s.instance(a, i, a.memoryMB, a.diskMB), cause)
	}
	for i := len(a.instances) - 1; i >= n; i-- {
		if inst := a.instances[i]; inst != nil {
			s.removeInstance(inst)
		}
		a.instances[i] = nil
		a.instances = a.instances[:i]
	}
}

// removeInstance stops inst wherever it is; an open request is cancelled.
func (s *tlSim) removeInstance(inst *tlInstance) {
	s.removeContainer(inst.cont)
	s.removeContainer(inst.evac)
	inst.cont, inst.evac = nil, nil
	if inst.req != nil {
		inst.req = nil
		s.rep.Totals.Cancelled++
	}
	s.setState(inst, stGone)
}

func (s *tlSim) removeApp(a *tlApp) {
	s.scaleApp(a, 0, causeScale)
	a.gone = true
	delete(s.apps, a.guid)
}

// crash applies Diego's crash handling (reference bbs.md §2.5): the
// container goes; the crash count restarts at 1 after 5 minutes of
// running; the first two crashes restart at once, later ones after a
// back-off checked by convergence; after 200 the instance stays crashed.
func (s *tlSim) crash(e *TimelineEvent) {
	a := s.apps[e.ProcessGUID]
	if a == nil || a.gone || *e.Index >= len(a.instances) || a.instances[*e.Index] == nil {
		s.rep.Totals.CrashesIgnored++
		return
	}
	inst := a.instances[*e.Index]
	if inst.state != stStarting && inst.state != stRunning {
		s.rep.Totals.CrashesIgnored++
		return
	}
	count := inst.crashCount + 1
	if inst.state == stRunning && s.now-inst.runningSince > crashResetMS {
		count = 1
	}
	inst.crashCount = count
	s.removeContainer(inst.cont)
	inst.cont = nil
	s.rep.Totals.Crashed++
	s.interval.Crashed++
	if inst.req == nil {
		inst.req = &tlRequest{cause: causeCrash, at: s.now}
		s.rep.Totals.Requested++
		s.interval.Requested++
	}
	switch {
	case count < crashImmediateRestarts:
		s.request(inst, causeCrash)
	case count >= crashMaxRestarts:
		s.setState(inst, stGivenUp)
	default:
		s.setState(inst, stCrashed)
		inst.since = s.now
		s.crashed = append(s.crashed, inst)
	}
}

// failCell loses the cell at once: the auctioneer cannot reach it, its
// containers are gone, its tasks fail ("cell disappeared before
// completion") and its instances are replaced at the first convergence
// pass after its presence lapses.
func (s *tlSim) failCell(ci int32) {
	cell := &s.cells[ci]
	if cell.status == cellFailed {
		s.rep.Totals.EventsIgnored++
		return
	}
	if cell.status == cellUp {
		s.notUp++
	}
	cell.status = cellFailed
	cell.evacGen++
	cell.failedAtMS = s.now
	lc := lostCell{lapse: s.now + s.o.PresenceTTLMS}
	for len(cell.lrps) > 0 {
		c := cell.lrps[len(cell.lrps)-1]
		inst := c.inst
		s.removeContainer(c)
		if inst.evac == c {
			inst.evac = nil // the evacuating copy: its replacement is already asked for
			continue
		}
		inst.cont = nil
		s.rep.Totals.Lost++
		s.interval.Lost++
		if inst.req == nil {
			inst.req = &tlRequest{cause: causeCellFailure, at: s.now}
			s.rep.Totals.Requested++
			s.interval.Requested++
		}
		s.setState(inst, stLost)
		lc.insts = append(lc.insts, inst)
	}
	for len(cell.tasks) > 0 {
		c := cell.tasks[len(cell.tasks)-1]
		s.removeContainer(c)
		s.failTask(c.task)
	}
	s.states[ci].StartingContainers = 0
	s.starting -= cell.anonStart
	cell.anonStart = 0
	if len(lc.insts) > 0 {
		s.lost = append(s.lost, lc)
	}
}

func (s *tlSim) failTask(t *tlTask) {
	t.cont = nil
	if t.req != nil {
		t.req = nil
		s.rep.Totals.RequestsFailed++
	}
	s.setTaskState(t, stGivenUp)
	s.rep.Totals.TasksFailed++
	s.interval.TasksFailed++
}

// drainCell starts an evacuation (reference bbs.md §4.4, auction.md §4.7):
// the cell leaves the auction; a starting instance is unclaimed and
// re-auctioned; a running one keeps running on the cell until its
// replacement runs; tasks run on; whatever is left at the evacuation
// timeout is destroyed.
func (s *tlSim) drainCell(ci int32) {
	cell := &s.cells[ci]
	if cell.status == cellUp {
		s.notUp++
	}
	cell.status = cellEvacuating
	cell.evacGen++
	// Walk a copy: unclaiming removes containers from the cell's list.
	conts := append([]*tlContainer(nil), cell.lrps...)
	for _, c := range conts {
		inst := c.inst
		if inst.cont != c {
			continue // already an evacuating copy
		}
		s.rep.Totals.Evacuated++
		s.interval.Evacuated++
		inst.cont = nil
		if c.starting {
			s.removeContainer(c)
		} else {
			inst.evac = c
		}
		if inst.req == nil {
			inst.req = &tlRequest{cause: causeEvacuation, at: s.now}
			s.rep.Totals.Requested++
			s.interval.Requested++
		}
		s.request(inst, causeEvacuation)
	}
	if len(cell.lrps)+len(cell.tasks) == 0 {
		cell.status = cellDrained
		return
	}
	s.push(s.now+s.o.EvacuationTimeoutMS, tlEvent{kind: evEvacTimeout, cell: ci, gen: cell.evacGen})
}

// evacuationTimeout destroys what is left on a draining cell.
func (s *tlSim) evacuationTimeout(ci int32) {
	cell := &s.cells[ci]
	for len(cell.lrps) > 0 {
		c := cell.lrps[len(cell.lrps)-1]
		s.removeContainer(c)
		if c.inst.evac == c {
			c.inst.evac = nil
		}
		s.rep.Totals.EvacuationTimeouts++
	}
	for len(cell.tasks) > 0 {
		c := cell.tasks[len(cell.tasks)-1]
		s.removeContainer(c)
		s.failTask(c.task)
		s.rep.Totals.EvacuationTimeouts++
	}
	cell.status = cellDrained
	cell.evacGen++
}

// recoverCell brings a failed or drained cell back, empty.
func (s *tlSim) recoverCell(ci int32) {
	cell := &s.cells[ci]
	switch cell.status {
	case cellUp:
		s.rep.Totals.EventsIgnored++
		return
	case cellEvacuating:
		s.evacuationTimeout(ci)
	}
	cell.status = cellUp
	cell.evacGen++
	s.notUp--
}

// startDeploy begins a rolling deploy of e.ProcessGUID to
// e.NewProcessGUID, as Cloud Controller's deployment updater runs it: the
// new app starts max_in_flight instances; on each deploy tick at which
// all of them run, the old app loses max_in_flight instances and the new
// one gains as many, until the new one has the old one's count; then the
// old app is removed.
func (s *tlSim) startDeploy(e *TimelineEvent) {
	from := s.liveApp(e.ProcessGUID)
	if from == nil {
		return
	}
	if d := from.deploy; d != nil && !d.done {
		// Deploying again before the last deploy finished: the last one's
		// old version goes now.
		s.endDeploy(d, false)
		s.removeApp(d.from)
	}
	if a := s.apps[e.NewProcessGUID]; a != nil && !a.gone {
		s.rep.Totals.EventsIgnored++
		return
	}
	mem := from.memoryMB
	if e.MemoryMB > 0 {
		mem = e.MemoryMB
	}
	disk := from.diskMB
	if e.DiskMB > 0 {
		disk = e.DiskMB
	} else if e.MemoryMB > 0 {
		disk = e.MemoryMB
	}
	to := s.appFor(e.NewProcessGUID, mem, disk, from.domain, from.rootfs, from.tags, from.drivers)
	d := &tlDeploy{from: from, to: to, target: len(from.instances), step: max(1, e.MaxInFlight), started: s.now}
	to.deploy = d
	s.deploys = append(s.deploys, d)
	s.rep.Deploys.Started++
	s.scaleApp(to, min(d.step, d.target), causeDeploy)
	if !s.tickPending {
		s.tickPending = true
		tick := s.o.DeployTickMS
		s.push((s.now/tick+1)*tick, tlEvent{kind: evDeployTick})
	}
}

// deployTick advances every deploy whose new instances all run.
func (s *tlSim) deployTick() {
	live := s.deploys[:0]
	for _, d := range s.deploys {
		if d.done {
			continue
		}
		to := d.to
		if to.running == len(to.instances) {
			if len(to.instances) >= d.target {
				s.removeApp(d.from)
				s.endDeploy(d, true)
				continue
			}
			s.scaleApp(d.from, max(0, len(d.from.instances)-d.step), causeScale)
			s.scaleApp(to, min(d.target, len(to.instances)+d.step), causeDeploy)
		}
		live = append(live, d)
	}
	clear(s.deploys[len(live):])
	s.deploys = live
	s.tickPending = len(live) > 0
	if s.tickPending {
		s.push(s.now+s.o.DeployTickMS, tlEvent{kind: evDeployTick})
	}
}

func (s *tlSim) endDeploy(d *tlDeploy, completed bool) {
	d.done = true
	if completed {
		s.rep.Deploys.Completed++
		s.interval.DeploysCompleted++
		s.deployMS = append(s.deployMS, s.now-d.started)
	} else {
		s.rep.Deploys.Superseded++
		// Drop it from the active list now so that settling sees it gone.
		for i, x := range s.deploys {
			if x == d {
				s.deploys = append(s.deploys[:i], s.deploys[i+1:]...)
				break
			}
		}
	}
}

// handle runs one scheduled event.
func (s *tlSim) handle(e tlEvent) {
	switch e.kind {
	case evDrain:
		s.drain()
	case evStarted:
		s.started(e.cont)
	case evTaskDone:
		if c := e.cont; !c.dead {
			s.removeContainer(c)
			c.task.cont = nil
			s.setTaskState(c.task, stDone)
			s.rep.Totals.TasksCompleted++
			s.interval.TasksCompleted++
		}
	case evConverge:
		s.converge()
		s.push(s.now+s.o.ConvergenceIntervalMS, tlEvent{kind: evConverge})
	case evSample:
		s.sample()
		s.push(s.now+s.o.SampleIntervalMS, tlEvent{kind: evSample})
	case evDeployTick:
		s.deployTick()
	case evEvacTimeout:
		if cell := &s.cells[e.cell]; cell.status == cellEvacuating && cell.evacGen == e.gen {
			s.evacuationTimeout(e.cell)
		}
	case evAnonStarted:
		cell := &s.cells[e.cell]
		s.states[e.cell].StartingContainers -= cell.anonStart
		s.starting -= cell.anonStart
		cell.anonStart = 0
	}
}

// started moves a container from starting to running; the request it
// served is done, and an evacuating copy it replaces stops.
func (s *tlSim) started(c *tlContainer) {
	if c.dead || !c.starting {
		return
	}
	c.starting = false
	s.states[c.cell].StartingContainers--
	s.starting--
	if inst := c.inst; inst != nil {
		s.setState(inst, stRunning)
		inst.runningSince = s.now
		s.closeRequest(inst.req)
		inst.req = nil
		if inst.evac != nil {
			s.removeContainer(inst.evac)
			inst.evac = nil
		}
		return
	}
	t := c.task
	s.setTaskState(t, stRunning)
	s.closeRequest(t.req)
	t.req = nil
	if t.runMS > 0 {
		s.push(s.now+t.runMS, tlEvent{kind: evTaskDone, cont: c})
	}
}

// closeRequest records a request's waits.
func (s *tlSim) closeRequest(r *tlRequest) {
	if r == nil {
		return
	}
	s.rep.Totals.Running++
	s.interval.Running++
	wait := s.now - r.at
	s.ivWaits = append(s.ivWaits, wait)
	if len(s.waitsRun) >= MaxWaitSamples {
		s.rep.WaitsDropped++
		return
	}
	s.waitsRun = append(s.waitsRun, wait)
	s.waitsPl = append(s.waitsPl, r.placedAt-r.at)
	s.waitsBy[r.cause] = append(s.waitsBy[r.cause], wait)
}

// drain runs one auction on the batch: the real engine on the live cells
// (failed, evacuating and drained ones are left out, as the auctioneer
// leaves out cells that do not answer or evacuate), then the placements
// start and the failures go back as Diego writes them back.
func (s *tlSim) drain() {
	s.drainScheduled = false
	s.lrpBuf, s.lrpItems = s.lrpBuf[:0], s.lrpItems[:0]
	s.taskBuf, s.taskItems = s.taskBuf[:0], s.taskItems[:0]
	for _, inst := range s.batchLRPs {
		inst.inBatch = false
		if inst.state != stUnclaimed {
			continue
		}
		a := inst.app
		s.lrpBuf = append(s.lrpBuf, auctioneer.LRPStart{
			ProcessGUID: a.guid, Index: inst.index, Domain: a.domain,
			MemoryMB: inst.memoryMB, DiskMB: inst.diskMB,
			RootFS: a.rootfs, PlacementTags: a.tags, VolumeDrivers: a.drivers,
		})
		s.lrpItems = append(s.lrpItems, inst)
	}
	for _, t := range s.batchTasks {
		t.inBatch = false
		if t.state != stUnclaimed {
			continue
		}
		s.taskBuf = append(s.taskBuf, auctioneer.TaskStart{
			TaskGUID: t.guid, Domain: t.domain, MemoryMB: t.memoryMB, DiskMB: t.diskMB,
			RootFS: t.rootfs, PlacementTags: t.tags, VolumeDrivers: t.drivers,
		})
		s.taskItems = append(s.taskItems, t)
	}
	clear(s.batchLRPs)
	clear(s.batchTasks)
	s.batchLRPs, s.batchTasks = s.batchLRPs[:0], s.batchTasks[:0]
	n := len(s.lrpBuf) + len(s.taskBuf)
	if n == 0 {
		return
	}
	s.busyUntil = s.now + s.o.PerformMS

	cells := s.auctionCells()
	opts := s.engine
	opts.Seed += s.auctionSeq
	s.auctionSeq++
	res, err := auctioneer.Run(auctioneer.Auction{Cells: cells, LRPs: s.lrpBuf, Tasks: s.taskBuf}, opts)
	if err != nil {
		// Options were checked up front and cell ids are unique, so this
		// cannot happen; count it rather than lose it silently.
		s.rep.Totals.EngineErrors++
		return
	}
	s.rep.Totals.Auctions++
	s.interval.Auctions++
	s.rep.Totals.AuctionItems += n
	s.rep.Totals.MaxBatch = max(s.rep.Totals.MaxBatch, n)

	for _, p := range res.Placements {
		ci := s.cellByID[p.CellID]
		s.rep.Totals.Placed++
		s.interval.Placed++
		if p.Kind == auctioneer.KindLRP {
			inst := s.lrpItems[p.Request]
			s.setState(inst, stStarting)
			inst.cont = s.addContainer(ci, &tlContainer{inst: inst, memoryMB: inst.memoryMB + s.states[ci].ProxyMemoryMB, diskMB: inst.diskMB, starting: true})
			if inst.req != nil {
				inst.req.placedAt = s.now
			}
			s.push(s.now+s.o.ContainerStartMS, tlEvent{kind: evStarted, cont: inst.cont})
			continue
		}
		t := s.taskItems[p.Request]
		s.setTaskState(t, stStarting)
		t.cont = s.addContainer(ci, &tlContainer{task: t, memoryMB: t.memoryMB, diskMB: t.diskMB, starting: true})
		if t.req != nil {
			t.req.placedAt = s.now
		}
		s.push(s.now+s.o.ContainerStartMS, tlEvent{kind: evStarted, cont: t.cont})
	}
	for _, f := range res.Failures {
		s.rep.Totals.PlacementFailures++
		s.interval.PlacementFailures++
		s.rep.Totals.FailuresByReason[f.Message]++
		if f.Kind == auctioneer.KindLRP {
			// FailActualLRP: the instance stays unclaimed with a newer
			// since; convergence re-auctions it once it is stale.
			inst := s.lrpItems[f.Request]
			inst.since = s.now
			if !inst.inRetry {
				inst.inRetry = true
				s.retry = append(s.retry, inst)
			}
			continue
		}
		// RejectTask: failed once the rejections before this one reach
		// max_task_retries, else pending again for convergence.
		t := s.taskItems[f.Request]
		if t.rejections >= *s.o.MaxTaskRetries {
			s.failTask(t)
			continue
		}
		t.rejections++
		s.pendingTasks = append(s.pendingTasks, t)
	}
	clear(s.lrpItems)
	clear(s.taskItems)
	for _, ci := range s.touched {
		s.perCell[ci] = s.perCell[ci][:0]
	}
	s.touched = s.touched[:0]
}

// auctionCells returns the cells up, as the engine gets them. Each lists
// only the instances of the batch's apps, with CellState.LRPCount giving
// the full count: the engine reads nothing else of the list, and scanning
// every instance of a large cluster on every auction would dominate a
// long run. fullCellLists turns this off (tests compare both).
func (s *tlSim) auctionCells() []auctioneer.CellState {
	if s.fullCellLists {
		if s.notUp == 0 {
			return s.states
		}
		s.liveBuf = s.liveBuf[:0]
		for i := range s.states {
			if s.cells[i].status == cellUp {
				s.liveBuf = append(s.liveBuf, s.states[i])
			}
		}
		return s.liveBuf
	}
	if s.perCell == nil {
		s.perCell = make([][]auctioneer.RunningLRP, len(s.cells))
	}
	s.mark++
	for _, inst := range s.lrpItems {
		a := inst.app
		if a.mark == s.mark {
			continue
		}
		a.mark = s.mark
		for _, in := range a.instances {
			if in == nil {
				continue
			}
			for _, c := range [2]*tlContainer{in.cont, in.evac} {
				if c == nil || c.dead {
					continue
				}
				if len(s.perCell[c.cell]) == 0 {
					s.touched = append(s.touched, c.cell)
				}
				s.perCell[c.cell] = append(s.perCell[c.cell], s.states[c.cell].LRPs[c.pos])
			}
		}
	}
	s.liveBuf = s.liveBuf[:0]
	for i := range s.states {
		if s.cells[i].status != cellUp {
			continue
		}
		st := s.states[i]
		st.LRPCount = len(st.LRPs)
		st.LRPs = s.perCell[i]
		s.liveBuf = append(s.liveBuf, st)
	}
	return s.liveBuf
}

// converge is one BBS convergence pass (reference bbs.md §3.2, §3.4):
// instances of cells whose presence lapsed get replacements; unclaimed
// instances older than stale_unclaimed_ms and crashed ones past their
// back-off are auctioned; pending tasks are auctioned again, or fail once
// older than pending_task_expiry_ms.
func (s *tlSim) converge() {
	keepLost := s.lost[:0]
	for _, lc := range s.lost {
		if lc.lapse > s.now {
			keepLost = append(keepLost, lc)
			continue
		}
		for _, inst := range lc.insts {
			if inst.state == stLost {
				s.request(inst, causeCellFailure)
			}
		}
	}
	clear(s.lost[len(keepLost):])
	s.lost = keepLost

	keep := s.retry[:0]
	for _, inst := range s.retry {
		if inst.state != stUnclaimed {
			inst.inRetry = false
			continue
		}
		if !inst.inBatch && s.now-inst.since >= s.o.StaleUnclaimedMS {
			inst.inRetry = false
			s.batchLRP(inst)
			continue
		}
		keep = append(keep, inst)
	}
	clear(s.retry[len(keep):])
	s.retry = keep

	keepCrashed := s.crashed[:0]
	for _, inst := range s.crashed {
		if inst.state != stCrashed {
			continue
		}
		if s.now-inst.since >= crashBackoffMS(inst.crashCount) {
			s.request(inst, causeCrash)
			continue
		}
		keepCrashed = append(keepCrashed, inst)
	}
	clear(s.crashed[len(keepCrashed):])
	s.crashed = keepCrashed

	keepTasks := s.pendingTasks[:0]
	for _, t := range s.pendingTasks {
		switch {
		case t.state != stUnclaimed:
		case s.now-t.createdAt >= s.o.PendingTaskExpiryMS:
			s.failTask(t)
		default:
			s.batchTask(t)
		}
	}
	clear(s.pendingTasks[len(keepTasks):])
	s.pendingTasks = keepTasks
}
