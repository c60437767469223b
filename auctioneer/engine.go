package auctioneer

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
)

// Run places the auction's work on its cells and returns the placements,
// the failures and the metrics. It is a pure function of its arguments:
// the same auction and options (seed included) give the same result. It
// returns an error only for invalid options (wrapping ErrInvalidOptions or
// ErrUnknownStrategy) or an invalid auction (ErrInvalidAuction); placement
// failures are part of the Result.
func Run(a Auction, opts Options) (Result, error) {
	return run1(a, opts, scanAuto)
}

// scanMode chooses between the cell index and the full scan.
type scanMode int

const (
	// scanAuto uses the index for batches of at least minIndexWork items.
	scanAuto scanMode = iota
	// scanFull scores every fitting cell for every item: the reference
	// the index is tested against.
	scanFull
	// scanIndex uses the index whatever the batch size (tests).
	scanIndex
)

// minIndexWork is the smallest batch that builds cell indexes: building
// one costs about as much as scanning every cell for a few dozen items,
// and both place alike.
const minIndexWork = 32

// run1 is Run with a choice of scan.
func run1(a Auction, opts Options, mode scanMode) (Result, error) {
	reg := opts.Registry
	if reg == nil {
		reg = NewRegistry()
	}
	strategy, err := reg.New(opts)
	if err != nil {
		return Result{}, fmt.Errorf("auction: %w", err)
	}
	r, err := newRun(a, strategy, opts)
	if err != nil {
		return Result{}, fmt.Errorf("auction: %w", err)
	}
	r.fullScan = mode == scanFull || (mode == scanAuto && len(r.work) < minIndexWork)
	for i := range r.work {
		r.place(&r.work[i])
	}
	r.res.Metrics.InflightStarts = r.inflight
	return r.res, nil
}

// app tracks where one requested process's instances are, reservations
// included: per cell (sparse, for anti-affinity) and per zone.
type app struct {
	cells []appCell
	pos   map[int32]int32
	zones []int32
}

type appCell struct {
	cell int32
	n    int32
}

func (a *app) add(cell, zone int32) {
	if i, ok := a.pos[cell]; ok {
		a.cells[i].n++
	} else {
		a.pos[cell] = int32(len(a.cells))
		a.cells = append(a.cells, appCell{cell: cell, n: 1})
	}
	a.zones[zone]++
}

// run is the state of one auction: the snapshot of cells with the batch's
// reservations applied, the filter cache and the output.
type run struct {
	strategy    Strategy
	cells       []Cell
	order       []int32 // global iteration order, a seeded shuffle
	zoneNames   []string
	zoneOrder   []int32 // zone iteration order, a seeded shuffle
	filters     map[string]*filterResult
	apps        map[string]*app
	work        []Work
	zoneScratch []zoneCells
	inflight    int
	maxInflight int
	res         Result

	// failed remembers insufficient-resources failures until the next
	// reservation (reservations counts them).
	failed       map[failKey]failure
	reservations int

	// The cell index (index.go): off when fullScan is set.
	fullScan      bool
	orderPos      []int32 // cell → its position in order
	indexes       []*cellIndex
	frontier      []int32
	streamScratch []int32
}

func newRun(a Auction, strategy Strategy, opts Options) (*run, error) {
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x9e3779b97f4a7c15))
	r := &run{
		strategy:    strategy,
		filters:     map[string]*filterResult{},
		apps:        map[string]*app{},
		maxInflight: opts.MaxInflightStarts,
	}

	// Cells: evacuating ones are left out (reference §1.3).
	seen := make(map[string]struct{}, len(a.Cells))
	zoneIDs := map[string]int32{}
	for i := range a.Cells {
		st := &a.Cells[i]
		if _, dup := seen[st.CellID]; dup {
			return nil, fmt.Errorf("%w: duplicate cell id %q", ErrInvalidAuction, st.CellID)
		}
		seen[st.CellID] = struct{}{}
		if st.Evacuating {
			r.res.Metrics.CellsExcluded++
			continue
		}
		if _, ok := zoneIDs[st.Zone]; !ok {
			zoneIDs[st.Zone] = -1
			r.zoneNames = append(r.zoneNames, st.Zone)
		}
		r.cells = append(r.cells, Cell{
			state:    st,
			avail:    st.Available,
			starting: st.StartingContainers,
			lrps:     max(len(st.LRPs), st.LRPCount),
			tasks:    len(st.Tasks),
			total:    st.Total,
			proxy:    st.ProxyMemoryMB,
		})
		r.inflight += st.StartingContainers
	}
	r.res.Metrics.CellsConsidered = len(r.cells)
	slices.Sort(r.zoneNames)
	byZone := make([][]int32, len(r.zoneNames))
	for z, name := range r.zoneNames {
		zoneIDs[name] = int32(z)
		r.zoneOrder = append(r.zoneOrder, int32(z))
	}
	for i := range r.cells {
		z := zoneIDs[r.cells[i].state.Zone]
		r.cells[i].zone = z
		byZone[z] = append(byZone[z], int32(i))
		r.order = append(r.order, int32(i))
	}
	// Diego's per-zone normalised cell index (reference §1.3).
	for _, members := range byZone {
		slices.SortFunc(members, func(x, y int32) int {
			a, b := r.cells[x].state, r.cells[y].state
			return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.CellID, b.CellID))
		})
		for rank, ci := range members {
			r.cells[ci].zoneRank = rank
		}
	}
	// Diego breaks ties by the order cell states arrive and by map order;
	// a seeded shuffle stands in for both.
	rng.Shuffle(len(r.order), func(i, j int) { r.order[i], r.order[j] = r.order[j], r.order[i] })
	rng.Shuffle(len(r.zoneOrder), func(i, j int) { r.zoneOrder[i], r.zoneOrder[j] = r.zoneOrder[j], r.zoneOrder[i] })
	r.orderPos = make([]int32, len(r.cells))
	for i, ci := range r.order {
		r.orderPos[ci] = int32(i)
	}

	r.buildWork(a)
	r.res.Placements = make([]Placement, 0, len(r.work))
	return r, nil
}

// buildWork orders the batch as Diego does (reference §1.4): index-0 LRPs,
// then tasks, then LRPs with index ≥ 1 in index order; larger memory first
// within each group. Equal keys keep their input order.
func (r *run) buildWork(a Auction) {
	lrps := make([]int, len(a.LRPs))
	for i := range lrps {
		lrps[i] = i
	}
	slices.SortStableFunc(lrps, func(x, y int) int {
		a, b := &a.LRPs[x], &a.LRPs[y]
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(b.MemoryMB, a.MemoryMB))
	})
	tasks := make([]int, len(a.Tasks))
	for i := range tasks {
		tasks[i] = i
	}
	slices.SortStableFunc(tasks, func(x, y int) int {
		return cmp.Compare(a.Tasks[y].MemoryMB, a.Tasks[x].MemoryMB)
	})
	split := len(lrps)
	for i, li := range lrps {
		if a.LRPs[li].Index > 0 {
			split = i
			break
		}
	}

	r.work = make([]Work, 0, len(lrps)+len(tasks))
	addLRP := func(li int) {
		lrp := &a.LRPs[li]
		ap := r.apps[lrp.ProcessGUID]
		if ap == nil {
			ap = &app{pos: map[int32]int32{}, zones: make([]int32, len(r.zoneNames))}
			r.apps[lrp.ProcessGUID] = ap
		}
		r.work = append(r.work, Work{kind: KindLRP, request: li, memoryMB: lrp.MemoryMB, diskMB: lrp.DiskMB, lrp: lrp, app: ap})
	}
	for _, li := range lrps[:split] {
		addLRP(li)
	}
	for _, ti := range tasks {
		task := &a.Tasks[ti]
		r.work = append(r.work, Work{kind: KindTask, request: ti, memoryMB: task.MemoryMB, diskMB: task.DiskMB, task: task})
	}
	for _, li := range lrps[split:] {
		addLRP(li)
	}

	// Instances already running count for anti-affinity and zones; only
	// requested apps need tracking.
	for ci := range r.cells {
		c := &r.cells[ci]
		for _, l := range c.state.LRPs {
			if ap := r.apps[l.ProcessGUID]; ap != nil {
				ap.add(int32(ci), c.zone)
			}
		}
	}
}

// place runs one item through the pipeline: in-flight cap, filters, fit,
// score, reservation.
func (r *run) place(w *Work) {
	if len(r.cells) == 0 {
		r.fail(w, ReasonCellCommunication, MsgCellCommunication, nil)
		return
	}
	if r.maxInflight > 0 && r.inflight >= r.maxInflight {
		r.fail(w, ReasonInflightLimit, MsgInflightLimit, nil)
		return
	}
	rootfs, tags, drivers := w.constraint()
	key := constraintKey(rootfs, tags, drivers)
	f := r.filters[key]
	if f == nil {
		f = r.filter(rootfs, tags, drivers)
		r.filters[key] = f
	}
	if len(f.flat) == 0 {
		reason, msg := f.failure(tags)
		r.fail(w, reason, msg, f.rejections())
		return
	}

	// The same request failing again on unchanged cells fails alike (not
	// remembered by the full scan, the reference the shortcuts are tested
	// against).
	fk := failKey{f: f, isLRP: w.kind == KindLRP, memoryMB: w.memoryMB, diskMB: w.diskMB}
	if e, ok := r.failed[fk]; ok && e.reservations == r.reservations && !r.fullScan {
		r.fail(w, ReasonInsufficientResources, e.msg, slices.Clone(e.rejections))
		return
	}

	sc := scan{best: -1, common: allProblems}
	isLRP := w.kind == KindLRP
	if isLRP {
		for _, ac := range w.app.cells {
			r.cells[ac.cell].appInstances = int(ac.n)
		}
	}
	// The index finds the full scan's winner; when no cell fits, the scan
	// below runs anyway for the failure's exact rejections.
	if x := r.indexFor(f, w); x != nil {
		sc.best = r.placeIndexed(x, f, w)
	}
	if sc.best < 0 {
		if isLRP && r.strategy.BalanceZones() {
			r.walkZones(w, f, &sc)
		} else {
			r.scanCells(f.flat, w, &sc)
		}
	}
	if isLRP {
		for _, ac := range w.app.cells {
			r.cells[ac.cell].appInstances = 0
		}
	}

	if sc.best < 0 {
		e := failure{reservations: r.reservations, msg: insufficientResourcesMessage(sc.common),
			rejections: append(f.rejections(), sc.rejections()...)}
		if r.failed == nil {
			r.failed = map[failKey]failure{}
		}
		r.failed[fk] = e
		r.fail(w, ReasonInsufficientResources, e.msg, slices.Clone(e.rejections))
		return
	}
	r.reserve(w, sc.best)
}

// failKey identifies requests that fit the same cells: one constraint,
// kind (the proxy allowance) and size.
type failKey struct {
	f                *filterResult
	isLRP            bool
	memoryMB, diskMB int
}

// failure is a remembered insufficient-resources failure.
type failure struct {
	reservations int
	msg          string
	rejections   []Rejection
}

// scan accumulates the winner and the fit problems while cells are scored.
type scan struct {
	best      int32
	bestScore float64
	common    problem // problems shared by every cell that did not fit
	short     [3]int  // cells short of disk, memory, containers
	scored    int64
}

func (s *scan) rejections() []Rejection {
	var out []Rejection
	for i, name := range [3]string{"insufficient disk", "insufficient memory", "no free container"} {
		if s.short[i] > 0 {
			out = append(out, Rejection{Reason: name, Cells: s.short[i]})
		}
	}
	return out
}

// scanCells checks the fit of each cell and scores those that fit; a
// strictly lower score replaces the winner, so the first cell seen keeps a
// tie (reference §1.6).
func (r *run) scanCells(cells []int32, w *Work, sc *scan) {
	mem, disk := w.MemoryMB(), w.DiskMB()
	isLRP := w.kind == KindLRP
	for _, ci := range cells {
		c := &r.cells[ci]
		need := mem
		if isLRP {
			need += c.proxy
		}
		if p := c.misfit(need, disk); p != 0 {
			sc.common &= p
			for bit := range 3 {
				if p&(1<<bit) != 0 {
					sc.short[bit]++
				}
			}
			continue
		}
		s := r.strategy.Score(c, w)
		sc.scored++
		if sc.best < 0 || s < sc.bestScore {
			sc.best, sc.bestScore = ci, s
		}
	}
	r.res.Metrics.CellsScored += sc.scored
	sc.scored = 0
}

// walkZones is Diego's AZ balancing (reference §1.7): zones sorted by the
// app's instances, ascending; zones with equal counts compete on score;
// the walk stops after a zone group that produced a winner, and falls
// through to more loaded zones when nothing fits.
func (r *run) walkZones(w *Work, f *filterResult, sc *scan) {
	counts := w.app.zones
	zs := r.sortedZones(w, f)
	for i := range zs {
		r.scanCells(zs[i].cells, w, sc)
		if i+1 < len(zs) && counts[zs[i+1].zone] == counts[zs[i].zone] {
			continue
		}
		if sc.best >= 0 {
			return
		}
	}
}

// sortedZones returns f's zones sorted by w's app instances, ascending,
// stable over the seeded zone order.
func (r *run) sortedZones(w *Work, f *filterResult) []zoneCells {
	counts := w.app.zones
	zs := append(r.zoneScratch[:0], f.zones...)
	r.zoneScratch = zs
	// Insertion sort: few zones, and it is stable over the seeded zone order.
	for i := 1; i < len(zs); i++ {
		for j := i; j > 0 && counts[zs[j].zone] < counts[zs[j-1].zone]; j-- {
			zs[j], zs[j-1] = zs[j-1], zs[j]
		}
	}
	return zs
}

// reserve applies the placement to the snapshot: resources (without the
// proxy allowance, as Diego's in-memory state does), one more starting
// container, and the item's presence for anti-affinity and zones.
func (r *run) reserve(w *Work, ci int32) {
	c := &r.cells[ci]
	c.avail.MemoryMB -= w.MemoryMB()
	c.avail.DiskMB -= w.DiskMB()
	c.avail.Containers--
	c.starting++
	r.inflight++
	r.reservations++
	p := Placement{Kind: w.kind, Request: w.request, CellID: c.state.CellID}
	if w.kind == KindLRP {
		c.lrps++
		w.app.add(ci, c.zone)
		p.ProcessGUID, p.Index = w.lrp.ProcessGUID, w.lrp.Index
		r.res.Metrics.LRPsPlaced++
	} else {
		c.tasks++
		p.TaskGUID = w.task.TaskGUID
		r.res.Metrics.TasksPlaced++
	}
	for _, x := range r.indexes {
		x.update(r, ci)
	}
	r.res.Placements = append(r.res.Placements, p)
}

func (r *run) fail(w *Work, reason Reason, msg string, rejections []Rejection) {
	f := Failure{Kind: w.kind, Request: w.request, Reason: reason, Message: msg, Rejections: rejections}
	if w.kind == KindLRP {
		f.ProcessGUID, f.Index = w.lrp.ProcessGUID, w.lrp.Index
		r.res.Metrics.LRPsFailed++
	} else {
		f.TaskGUID = w.task.TaskGUID
		r.res.Metrics.TasksFailed++
	}
	r.res.Failures = append(r.res.Failures, f)
}

// constraint returns the item's placement constraint.
func (w *Work) constraint() (rootfs string, tags, drivers []string) {
	if w.lrp != nil {
		return w.lrp.RootFS, w.lrp.PlacementTags, w.lrp.VolumeDrivers
	}
	return w.task.RootFS, w.task.PlacementTags, w.task.VolumeDrivers
}
