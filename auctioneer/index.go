package auctioneer

import (
	"math"
	"slices"
)

// ScoreForm declares how a strategy's score is built, so that the engine
// can keep the cells in an index and score only a handful of candidates
// per item instead of every fitting cell. A strategy that declares a form
// promises that, for every cell c and item w of the kind,
//
//	Score(c, w) = UsageSign × c.UsageAfter(w.MemoryMB() [+ c.ProxyMemoryMB() if ProxyInUsage], w.DiskMB())
//	            + StartingWeight × c.StartingContainers()
//	            + ZoneRankWeight × c.ZoneRank()
//	            + TaskWeight × c.TaskCount()
//	            + AppInstanceWeight × c.AppInstances()
//
// up to floating-point rounding (a relative error far below 1e-9), reads
// nothing else of the cell (cells alike in those inputs score alike, bit
// for bit), and does not decrease as AppInstances grows. Score is still
// the only function the engine compares, so ties and rounding break
// exactly as in a scan of every cell; the form only bounds scores from
// below to rule cells out, and groups cells that must score alike.
type ScoreForm struct {
	// UsageSign is +1 (emptier cells win) or -1 (fuller cells win).
	UsageSign float64
	// ProxyInUsage adds the cell's proxy allowance to the memory in the
	// usage term.
	ProxyInUsage bool
	// StartingWeight is the cost per starting container.
	StartingWeight float64
	// ZoneRankWeight is the cost per rank of the cell in its zone.
	ZoneRankWeight float64
	// TaskWeight is the cost per task on the cell.
	TaskWeight float64
	// AppInstanceWeight is the cost per instance of the item's app on the
	// cell; it must be >= 0 (the index leaves it out of its lower bound).
	AppInstanceWeight float64
}

// Indexable is the opt-in interface of strategies whose score has a
// ScoreForm. A Strategy that does not implement it, or returns false, is
// run by scoring every fitting cell.
type Indexable interface {
	Strategy
	// ScoreForm returns the form of Score for items of kind k, and whether
	// Score has that form.
	ScoreForm(k Kind) (ScoreForm, bool)
}

// valid reports whether the engine can index a strategy with this form.
func (f ScoreForm) valid() bool {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	return (f.UsageSign == 1 || f.UsageSign == -1) && finite(f.StartingWeight) && finite(f.ZoneRankWeight) &&
		finite(f.TaskWeight) && finite(f.AppInstanceWeight) && f.AppInstanceWeight >= 0
}

// Index bounds: beyond them the engine scans every cell for the
// constraint, which is always correct.
const (
	// maxIndexes caps the indexes of a run (one per constraint and kind),
	// so the index memory stays within maxIndexes × cells nodes.
	maxIndexes = 64
	// maxClassesPerZone caps the distinct cell shapes (capacity and proxy
	// allowance) per zone; each shape is its own heap.
	maxClassesPerZone = 32
	// boundSlack is the relative slack of the lower bound, far above the
	// rounding error of a score (~1e-15 relative).
	boundSlack = 1e-9
)

// cellIndex holds one constraint's eligible cells for items of one kind,
// as one heap per (zone, cell shape). Cells of a heap that agree on every
// input of the score but the app's instances (free resources, and the
// counts with a non-zero weight) score alike, so they share one node: a
// group holding them in scan order. A node's key is the part of the lower
// bound that does not depend on the item.
type cellIndex struct {
	form    ScoreForm
	isLRP   bool
	streams []*stream
	byZone  [][]int32 // zone → its streams
	stream  []int32   // cell → its stream, -1 if not eligible
	group   []int32   // cell → its group in its stream
}

// stream is one heap of groups of cells of the same shape in one zone.
// Each node also keeps the largest free memory (less the proxy allowance
// for LRPs), disk and containers in its subtree, so a walk skips subtrees
// where nothing fits.
type stream struct {
	totMem, totDisk, totCont, proxy int
	nodes                           []node
	groups                          []group
	free                            []int32 // unused groups
	bySig                           map[signature]int32
	// maxAbs bounds the magnitude of every key term this stream has held,
	// for the rounding slack.
	maxAbs float64
}

// signature is what the score of a cell of a stream depends on, besides
// the app's instances: counts whose weight is zero are left at 0.
type signature struct {
	mem, disk, cont, starting, tasks, rank int
}

type node struct {
	group                   int32
	key                     float64
	mem, disk, cont         int
	subMem, subDisk, subCon int
}

// group is the cells of one signature, sorted by scan position.
type group struct {
	sig     signature
	cells   []int32
	heapPos int32
}

// newCellIndex builds the index of f's cells for one kind, or returns nil
// when a zone has too many cell shapes.
func (r *run) newCellIndex(f *filterResult, form ScoreForm, isLRP bool) *cellIndex {
	x := &cellIndex{form: form, isLRP: isLRP, byZone: make([][]int32, len(r.zoneNames)),
		stream: make([]int32, len(r.cells)), group: make([]int32, len(r.cells))}
	for i := range x.stream {
		x.stream[i] = -1
	}
	type shape struct{ mem, disk, cont, proxy int }
	for _, zc := range f.zones {
		shapes := map[shape]int32{}
		for _, ci := range zc.cells { // in scan order
			c := &r.cells[ci]
			sh := shape{c.total.MemoryMB, c.total.DiskMB, c.total.Containers, c.proxy}
			si, ok := shapes[sh]
			if !ok {
				if len(shapes) == maxClassesPerZone {
					return nil
				}
				si = int32(len(x.streams))
				shapes[sh] = si
				x.streams = append(x.streams, &stream{totMem: sh.mem, totDisk: sh.disk, totCont: sh.cont, proxy: sh.proxy,
					bySig: map[signature]int32{}})
				x.byZone[zc.zone] = append(x.byZone[zc.zone], si)
			}
			x.stream[ci] = si
			x.join(r, x.streams[si], ci, false)
		}
	}
	for _, s := range x.streams {
		for i := len(s.nodes)/2 - 1; i >= 0; i-- {
			s.down(i)
		}
		for i := len(s.nodes) - 1; i >= 0; i-- {
			s.fixSub(i)
		}
	}
	return x
}

// join adds cell ci to the group of its signature in s, creating the
// group's node if needed; heap restores the heap order (false while
// building).
func (x *cellIndex) join(r *run, s *stream, ci int32, heap bool) {
	c := &r.cells[ci]
	f := &x.form
	sig := signature{mem: c.avail.MemoryMB, disk: c.avail.DiskMB, cont: c.avail.Containers}
	if f.StartingWeight != 0 {
		sig.starting = c.starting
	}
	if f.TaskWeight != 0 {
		sig.tasks = c.tasks
	}
	if f.ZoneRankWeight != 0 {
		sig.rank = c.zoneRank
	}
	if gi, ok := s.bySig[sig]; ok {
		g := &s.groups[gi]
		pos := r.orderPos[ci]
		at, _ := slices.BinarySearchFunc(g.cells, pos, func(e int32, p int32) int { return int(r.orderPos[e] - p) })
		g.cells = slices.Insert(g.cells, at, ci)
		x.group[ci] = gi
		return
	}
	var gi int32
	if n := len(s.free); n > 0 {
		gi, s.free = s.free[n-1], s.free[:n-1]
		s.groups[gi] = group{sig: sig, cells: append(s.groups[gi].cells[:0], ci)}
	} else {
		gi = int32(len(s.groups))
		s.groups = append(s.groups, group{sig: sig, cells: []int32{ci}})
	}
	s.bySig[sig] = gi
	x.group[ci] = gi

	terms := f.StartingWeight*float64(c.starting) + f.ZoneRankWeight*float64(c.zoneRank) + f.TaskWeight*float64(c.tasks)
	free := 0.0
	for _, d := range [3][2]int{{c.avail.MemoryMB, c.total.MemoryMB}, {c.avail.DiskMB, c.total.DiskMB}, {c.avail.Containers, c.total.Containers}} {
		if d[1] > 0 {
			free += float64(d[0]) / float64(d[1])
		}
	}
	free /= 3
	abs := math.Abs(f.StartingWeight*float64(c.starting)) + math.Abs(f.ZoneRankWeight*float64(c.zoneRank)) +
		math.Abs(f.TaskWeight*float64(c.tasks)) + math.Abs(free)
	s.maxAbs = max(s.maxAbs, abs)
	mem := c.avail.MemoryMB
	if x.isLRP {
		mem -= c.proxy
	}
	i := len(s.nodes)
	s.groups[gi].heapPos = int32(i)
	s.nodes = append(s.nodes, node{group: gi, key: terms - f.UsageSign*free, mem: mem, disk: c.avail.DiskMB, cont: c.avail.Containers})
	if heap {
		s.up(i)
		s.fixPath(i)
	}
}

// leave takes cell ci out of its group in s, dropping the group's node
// when it empties.
func (x *cellIndex) leave(r *run, s *stream, ci int32) {
	gi := x.group[ci]
	g := &s.groups[gi]
	pos := r.orderPos[ci]
	at, found := slices.BinarySearchFunc(g.cells, pos, func(e int32, p int32) int { return int(r.orderPos[e] - p) })
	if !found {
		panic("auctioneer: cell index lost a cell")
	}
	g.cells = slices.Delete(g.cells, at, at+1)
	if len(g.cells) > 0 {
		return
	}
	delete(s.bySig, g.sig)
	s.free = append(s.free, gi)
	s.remove(int(g.heapPos))
}

// offset is the item-dependent part of the score's lower bound on s's
// cells: the usage term's constant, which depends on the cell shape.
func (x *cellIndex) offset(s *stream, memoryMB, diskMB int) float64 {
	if x.form.ProxyInUsage {
		memoryMB += s.proxy
	}
	o := 0.0
	for _, d := range [3][2]int{{memoryMB, s.totMem}, {diskMB, s.totDisk}, {1, s.totCont}} {
		o++
		if d[1] > 0 {
			o += float64(d[0]) / float64(d[1])
		}
	}
	return x.form.UsageSign * o / 3
}

// update moves cell ci to the group of its new state after a reservation.
func (x *cellIndex) update(r *run, ci int32) {
	si := x.stream[ci]
	if si < 0 {
		return
	}
	s := x.streams[si]
	x.leave(r, s, ci)
	x.join(r, s, ci, true)
}

func (s *stream) swap(i, j int) {
	s.nodes[i], s.nodes[j] = s.nodes[j], s.nodes[i]
	s.groups[s.nodes[i].group].heapPos = int32(i)
	s.groups[s.nodes[j].group].heapPos = int32(j)
}

func (s *stream) up(i int) int {
	for i > 0 {
		p := (i - 1) / 2
		if !(s.nodes[i].key < s.nodes[p].key) {
			break
		}
		s.swap(i, p)
		i = p
	}
	return i
}

func (s *stream) down(i int) int {
	n := len(s.nodes)
	for {
		m := i
		if l := 2*i + 1; l < n && s.nodes[l].key < s.nodes[m].key {
			m = l
		}
		if rc := 2*i + 2; rc < n && s.nodes[rc].key < s.nodes[m].key {
			m = rc
		}
		if m == i {
			return i
		}
		s.swap(i, m)
		i = m
	}
}

// remove deletes the node at i, keeping the heap order and the subtree
// maxima.
func (s *stream) remove(i int) {
	last := len(s.nodes) - 1
	if i != last {
		s.swap(i, last)
	}
	s.nodes = s.nodes[:last]
	if last > 0 {
		s.fixPath((last - 1) / 2)
	}
	if i < last {
		j := s.up(i)
		if j == i {
			j = s.down(i)
		}
		s.fixPath(max(i, j))
	}
}

// fixSub recomputes node i's subtree maxima from its children.
func (s *stream) fixSub(i int) {
	nd := &s.nodes[i]
	nd.subMem, nd.subDisk, nd.subCon = nd.mem, nd.disk, nd.cont
	for _, ch := range [2]int{2*i + 1, 2*i + 2} {
		if ch < len(s.nodes) {
			c := &s.nodes[ch]
			nd.subMem, nd.subDisk, nd.subCon = max(nd.subMem, c.subMem), max(nd.subDisk, c.subDisk), max(nd.subCon, c.subCon)
		}
	}
}

// fixPath recomputes the subtree maxima from node i up to the root.
func (s *stream) fixPath(i int) {
	for {
		s.fixSub(i)
		if i == 0 {
			return
		}
		i = (i - 1) / 2
	}
}

// candidate is the best cell found so far by an indexed search, compared
// as the full scan compares: by score, then by position in the scan.
type candidate struct {
	cell  int32
	score float64
	pos   int64
}

func (b *candidate) offer(ci int32, score float64, pos int64) {
	if b.cell < 0 || score < b.score || (score == b.score && pos < b.pos) {
		b.cell, b.score, b.pos = ci, score, pos
	}
}

// search finds, among the cells of streams, the cell the full scan would
// pick: walking each heap in key order, it scores the cells that fit and
// stops once a cell's lower bound exceeds the best score, since every
// later cell's bound is at least as high. posBase orders the streams'
// cells after or before other zones' (the zone walk scans zone by zone).
func (r *run) search(x *cellIndex, streams []int32, w *Work, posBase int64, b *candidate) {
	mem, disk := w.MemoryMB(), w.DiskMB()
	isLRP := w.kind == KindLRP
	n := int64(len(r.cells))
	for _, si := range streams {
		s := x.streams[si]
		if len(s.nodes) == 0 {
			continue
		}
		off := x.offset(s, mem, disk)
		fits := func(i int) bool {
			nd := &s.nodes[i]
			return nd.subMem >= mem && nd.subDisk >= disk && nd.subCon >= 1
		}
		if !fits(0) {
			continue
		}
		fr := append(r.frontier[:0], 0)
		for len(fr) > 0 {
			i := int(fr[0])
			fr = popFrontier(s, fr)
			nd := &s.nodes[i]
			if b.cell >= 0 {
				slack := boundSlack * (1 + math.Abs(off) + s.maxAbs + 3 + math.Abs(b.score))
				if off+nd.key-slack > b.score {
					break
				}
			}
			// A group's cells score alike but for the app's instances: the
			// first with none beats the later ones, so the walk stops there.
			for _, ci := range s.groups[nd.group].cells {
				c := &r.cells[ci]
				need := mem
				if isLRP {
					need += c.proxy
				}
				if c.misfit(need, disk) != 0 {
					break // the group's cells have the same free resources
				}
				score := r.strategy.Score(c, w)
				r.res.Metrics.CellsScored++
				b.offer(ci, score, posBase*n+int64(r.orderPos[ci]))
				if c.appInstances == 0 || x.form.AppInstanceWeight == 0 {
					break
				}
			}
			for _, ch := range [2]int{2*i + 1, 2*i + 2} {
				if ch < len(s.nodes) && fits(ch) {
					fr = pushFrontier(s, fr, int32(ch))
				}
			}
		}
		r.frontier = fr
	}
}

// pushFrontier and popFrontier keep fr, a set of heap positions of s, as a
// binary heap on their keys.
func pushFrontier(s *stream, fr []int32, i int32) []int32 {
	fr = append(fr, i)
	k := len(fr) - 1
	for k > 0 {
		p := (k - 1) / 2
		if !(s.nodes[fr[k]].key < s.nodes[fr[p]].key) {
			break
		}
		fr[k], fr[p] = fr[p], fr[k]
		k = p
	}
	return fr
}

func popFrontier(s *stream, fr []int32) []int32 {
	last := len(fr) - 1
	fr[0] = fr[last]
	fr = fr[:last]
	k := 0
	for {
		m := k
		if l := 2*k + 1; l < len(fr) && s.nodes[fr[l]].key < s.nodes[fr[m]].key {
			m = l
		}
		if rc := 2*k + 2; rc < len(fr) && s.nodes[fr[rc]].key < s.nodes[fr[m]].key {
			m = rc
		}
		if m == k {
			return fr
		}
		fr[k], fr[m] = fr[m], fr[k]
		k = m
	}
}

// indexFor returns the index of f's cells for w's kind, building it on
// first use; nil when the strategy has no form for the kind, the run
// scans every cell, or the bounds are reached.
func (r *run) indexFor(f *filterResult, w *Work) *cellIndex {
	if r.fullScan {
		return nil
	}
	k := 0
	if w.kind == KindTask {
		k = 1
	}
	if f.indexTried[k] {
		return f.index[k]
	}
	f.indexTried[k] = true
	ix, ok := r.strategy.(Indexable)
	if !ok || len(r.indexes) >= maxIndexes {
		return nil
	}
	form, ok := ix.ScoreForm(w.kind)
	if !ok || !form.valid() {
		return nil
	}
	x := r.newCellIndex(f, form, w.kind == KindLRP)
	if x == nil {
		return nil
	}
	f.index[k] = x
	r.indexes = append(r.indexes, x)
	return x
}

// placeIndexed looks for w's cell with the index, walking zone groups as
// walkZones does when the strategy balances zones; -1 when no cell fits.
func (r *run) placeIndexed(x *cellIndex, f *filterResult, w *Work) int32 {
	b := candidate{cell: -1}
	if w.kind != KindLRP || !r.strategy.BalanceZones() {
		all := r.streamScratch[:0]
		for _, zc := range f.zones {
			all = append(all, x.byZone[zc.zone]...)
		}
		r.streamScratch = r.orderStreams(x, all, w)
		r.search(x, r.streamScratch, w, 0, &b)
		return b.cell
	}
	zs := r.sortedZones(w, f)
	for i := 0; i < len(zs); {
		j := i + 1
		for j < len(zs) && w.app.zones[zs[j].zone] == w.app.zones[zs[i].zone] {
			j++
		}
		for k := i; k < j; k++ {
			r.streamScratch = r.orderStreams(x, append(r.streamScratch[:0], x.byZone[zs[k].zone]...), w)
			r.search(x, r.streamScratch, w, int64(k), &b)
		}
		if b.cell >= 0 {
			return b.cell
		}
		i = j
	}
	return -1
}

// orderStreams sorts streams by their lowest bound for w, so the most
// promising heap is searched first and prunes the others best.
func (r *run) orderStreams(x *cellIndex, streams []int32, w *Work) []int32 {
	if len(streams) < 2 {
		return streams
	}
	bound := func(si int32) float64 {
		s := x.streams[si]
		if len(s.nodes) == 0 {
			return math.Inf(1)
		}
		return x.offset(s, w.MemoryMB(), w.DiskMB()) + s.nodes[0].key
	}
	slices.SortFunc(streams, func(a, b int32) int {
		ba, bb := bound(a), bound(b)
		switch {
		case ba < bb:
			return -1
		case ba > bb:
			return 1
		}
		return 0
	})
	return streams
}
