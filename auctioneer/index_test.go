package auctioneer

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// requireSameAsFullScan runs a with and without the cell index and
// requires the same placements, failures and metrics. CellsScored counts
// Score calls, which the index exists to cut, so it only has to be no
// higher. It returns the two counts.
func requireSameAsFullScan(t *testing.T, a Auction, opts Options) (indexed, full int64) {
	t.Helper()
	want, err := run1(a, opts, scanFull)
	require.NoError(t, err)
	got, err := run1(a, opts, scanIndex)
	require.NoError(t, err)
	indexed, full = got.Metrics.CellsScored, want.Metrics.CellsScored
	require.LessOrEqual(t, indexed, full, "the index scored more cells than the full scan")
	got.Metrics.CellsScored, want.Metrics.CellsScored = 0, 0
	require.Equal(t, want, got)
	return indexed, full
}

// diegoFixture is Diego's simulation fixture (reference auction.md §3.1):
// the first n of 100 cells of 100 MB / 100 MB / 100 containers, index i,
// zone Z<i mod 2>, with an optional initial distribution.
func diegoFixture(n int, initial func(i int) []RunningLRP) []CellState {
	cells := make([]CellState, n)
	for i := range cells {
		c := CellState{
			CellID: fmt.Sprintf("REP-%d", i+1), Zone: fmt.Sprintf("Z%d", i%2), Index: i,
			Total:           Resources{MemoryMB: 100, DiskMB: 100, Containers: 100},
			RootFSProviders: map[string][]string{"preloaded": {"linux"}},
			VolumeDrivers:   []string{"my-driver"},
		}
		if initial != nil {
			c.LRPs = initial(i)
		}
		c.Available = c.Total
		for _, l := range c.LRPs {
			c.Available.MemoryMB -= l.MemoryMB
			c.Available.DiskMB -= l.DiskMB
			c.Available.Containers--
		}
		cells[i] = c
	}
	return cells
}

// diegoWork is a simulation-style batch: apps of instances of memMB (disk
// 1), single-instance apps named after their number, multi-instance apps
// after a colour.
func diegoWork(apps, instances, memMB int, prefix string) []LRPStart {
	var out []LRPStart
	for a := range apps {
		guid := fmt.Sprintf("%s-%d", prefix, a)
		for i := range instances {
			out = append(out, LRPStart{ProcessGUID: guid, Index: i, Domain: "auction", MemoryMB: memMB, DiskMB: 1,
				MaxPids: 10, RootFS: "preloaded:linux"})
		}
	}
	return out
}

// TestIndexMatchesFullScanDiegoSimulation runs the shapes of Diego's
// auction simulation (1, 2, 4 and 50 MB instances on 10 to 100 cells,
// cold and with an initial distribution, with the default, bin-pack and
// in-flight-capped runners) through both the index and the full scan.
func TestIndexMatchesFullScanDiegoSimulation(t *testing.T) {
	initial := func(i int) []RunningLRP {
		var l []RunningLRP
		for k := range i % 7 {
			l = append(l, RunningLRP{ProcessGUID: fmt.Sprintf("red-%d", k%3), Index: k, MemoryMB: 1 + 3*(i%4), DiskMB: 1})
		}
		return l
	}
	type workload struct {
		name  string
		cells int
		lrps  []LRPStart
	}
	var workloads []workload
	for _, n := range []int{10, 30, 100} {
		workloads = append(workloads,
			workload{fmt.Sprintf("%d cells, %d one-instance 1 MB apps", n, 4*n), n, diegoWork(4*n, 1, 1, "BBB")},
			workload{fmt.Sprintf("%d cells, %d 50-instance 1 MB apps", n, n/10+1), n, diegoWork(n/10+1, 50, 1, "red")},
			workload{fmt.Sprintf("%d cells, mixed 1/2/4 MB", n), n, append(append(diegoWork(n, 2, 1, "a"), diegoWork(n, 3, 2, "b")...), diegoWork(n/2, 5, 4, "c")...)},
			workload{fmt.Sprintf("%d cells, 50 MB instances past capacity", n), n, diegoWork(n/2, 5, 50, "big")},
		)
	}
	runners := map[string]func(*Options){
		"default":   func(*Options) {},
		"bin-pack":  func(o *Options) { o.BinPackFirstFitWeight = 0.5 },
		"first-fit": func(o *Options) { o.BinPackFirstFitWeight = 1 },
		"in-flight": func(o *Options) { o.MaxInflightStarts = 150 },
	}
	checked := 0
	for _, wl := range workloads {
		for _, withInitial := range []bool{false, true} {
			var init func(int) []RunningLRP
			if withInitial {
				init = initial
			}
			for rname, mod := range runners {
				for seed := range int64(3) {
					opts := diegoOpts(mod)
					opts.Seed = seed
					t.Run(fmt.Sprintf("%s/initial=%v/%s/seed=%d", wl.name, withInitial, rname, seed), func(t *testing.T) {
						requireSameAsFullScan(t, Auction{Cells: diegoFixture(wl.cells, init), LRPs: wl.lrps}, opts)
					})
					checked++
				}
			}
		}
	}
	require.Equal(t, 12*2*4*3, checked)
}

// randomAuction draws a scenario with mixed cell shapes, zones, rootfs
// stacks, placement tags, volume drivers, proxy allowances, evacuating
// cells, starting containers, work already on the cells, apps of several
// instances, tasks and requests too big for any cell.
func randomAuction(rng *rand.Rand) Auction {
	type shape struct{ mem, disk, cont, proxy int }
	shapes := []shape{{100, 100, 100, 0}}
	for range rng.IntN(3) {
		shapes = append(shapes, shape{50 + rng.IntN(400), 50 + rng.IntN(400), 5 + rng.IntN(60), []int{0, 0, 8}[rng.IntN(3)]})
	}
	if rng.IntN(20) == 0 { // more shapes than one zone's index takes
		for i := range maxClassesPerZone + 5 {
			shapes = append(shapes, shape{100 + i, 100, 50, 0})
		}
	}
	nZones := 1 + rng.IntN(4)
	nCells := 1 + rng.IntN(60)
	if rng.IntN(4) == 0 {
		nCells = 100 + rng.IntN(300)
	}
	nApps := 1 + rng.IntN(25)
	appGUID := func(i int) string { return fmt.Sprintf("app-%d", i) }
	var a Auction
	for i := range nCells {
		sh := shapes[rng.IntN(len(shapes))]
		c := CellState{
			CellID: fmt.Sprintf("cell-%d", i), Zone: fmt.Sprintf("z%d", rng.IntN(nZones)), Index: rng.IntN(nCells),
			Total:           Resources{MemoryMB: sh.mem, DiskMB: sh.disk, Containers: sh.cont},
			RootFSProviders: map[string][]string{"preloaded": {"cflinuxfs4"}},
			ProxyMemoryMB:   sh.proxy,
			Evacuating:      rng.IntN(12) == 0,
		}
		if rng.IntN(3) == 0 {
			c.StartingContainers = rng.IntN(6)
		}
		switch rng.IntN(8) {
		case 0:
			c.RootFSProviders = map[string][]string{"preloaded": {"cflinuxfs3"}}
		case 1:
			c.RootFSProviders["docker"] = nil
		}
		switch rng.IntN(8) {
		case 0:
			c.PlacementTags = []string{"gpu"}
		case 1:
			c.OptionalPlacementTags = []string{"ssd"}
		}
		if rng.IntN(6) == 0 {
			c.VolumeDrivers = []string{"nfs"}
		}
		c.Available = c.Total
		for k := range rng.IntN(5) {
			l := RunningLRP{ProcessGUID: appGUID(rng.IntN(nApps + 3)), Index: k, MemoryMB: 1 + rng.IntN(20), DiskMB: 1 + rng.IntN(20)}
			if c.Available.MemoryMB < l.MemoryMB || c.Available.DiskMB < l.DiskMB || c.Available.Containers < 1 {
				break
			}
			c.LRPs = append(c.LRPs, l)
			c.Available.MemoryMB -= l.MemoryMB
			c.Available.DiskMB -= l.DiskMB
			c.Available.Containers--
		}
		for k := range rng.IntN(3) {
			tk := RunningTask{TaskGUID: fmt.Sprintf("old-%d-%d", i, k), MemoryMB: 1 + rng.IntN(10), DiskMB: 1 + rng.IntN(10)}
			if c.Available.MemoryMB < tk.MemoryMB || c.Available.DiskMB < tk.DiskMB || c.Available.Containers < 1 {
				break
			}
			c.Tasks = append(c.Tasks, tk)
			c.Available.MemoryMB -= tk.MemoryMB
			c.Available.DiskMB -= tk.DiskMB
			c.Available.Containers--
		}
		a.Cells = append(a.Cells, c)
	}
	constraint := func() (rootfs string, tags, drivers []string) {
		rootfs = "preloaded:cflinuxfs4"
		switch rng.IntN(12) {
		case 0:
			rootfs = "docker:///busybox"
		case 1:
			tags = []string{"gpu"}
		case 2:
			tags = []string{"ssd"}
		case 3:
			drivers = []string{"nfs"}
		case 4:
			rootfs = "preloaded:cflinuxfs3"
		case 5:
			rootfs = "preloaded:windows" // no cell offers it
		}
		return rootfs, tags, drivers
	}
	size := func() int {
		switch rng.IntN(10) {
		case 0:
			return 50 + rng.IntN(400) // may fit nowhere
		case 1, 2:
			return []int{1, 2, 4, 50}[rng.IntN(4)]
		}
		return 1 + rng.IntN(30)
	}
	perApp := 1 + rng.IntN(12)
	for i := range nApps {
		rootfs, tags, drivers := constraint()
		mem, disk := size(), size()
		if rng.IntN(10) == 0 {
			disk = 0
		}
		for k := range 1 + rng.IntN(perApp) {
			a.LRPs = append(a.LRPs, LRPStart{ProcessGUID: appGUID(i), Index: k, MemoryMB: mem, DiskMB: disk,
				RootFS: rootfs, PlacementTags: tags, VolumeDrivers: drivers})
		}
	}
	for i := range rng.IntN(40) {
		rootfs, tags, drivers := constraint()
		a.Tasks = append(a.Tasks, TaskStart{TaskGUID: fmt.Sprintf("task-%d", i), MemoryMB: size(), DiskMB: size(),
			RootFS: rootfs, PlacementTags: tags, VolumeDrivers: drivers})
	}
	return a
}

// TestIndexMatchesFullScanRandom compares the index with the full scan on
// 300 random scenarios, each under every built-in strategy with drawn
// weights, in-flight caps and seeds.
func TestIndexMatchesFullScanRandom(t *testing.T) {
	const scenarios = 300
	rng := rand.New(rand.NewPCG(18, 2026))
	var indexed, full int64
	for n := range scenarios {
		a := randomAuction(rng)
		for _, strategy := range []string{"diego", "binpack", "spread"} {
			opts := DefaultOptions()
			opts.Strategy = strategy
			opts.Seed = rng.Int64N(1000)
			opts.StartingContainerWeight = []float64{0, 0.25, 0.25, 1, 3}[rng.IntN(5)]
			opts.BinPackFirstFitWeight = []float64{0, 0, 0.1, 1}[rng.IntN(4)]
			if rng.IntN(4) == 0 {
				opts.MaxInflightStarts = 1 + rng.IntN(len(a.LRPs)+len(a.Tasks)+10)
			}
			t.Run(fmt.Sprintf("%d/%s/seed=%d", n, strategy, opts.Seed), func(t *testing.T) {
				i, f := requireSameAsFullScan(t, a, opts)
				indexed += i
				full += f
			})
		}
	}
	// The comparison means something only if the index did the placing.
	require.Less(t, indexed, full/2, "the index scored %d cells, the full scan %d", indexed, full)
}

// TestIndexScoresAHandfulOfCells shows the point of the index on the
// benchmark workload: far fewer Score calls, the same result.
func TestIndexScoresAHandfulOfCells(t *testing.T) {
	for _, strategy := range []string{"diego", "binpack", "spread"} {
		t.Run(strategy, func(t *testing.T) {
			opts := DefaultOptions()
			opts.Strategy = strategy
			opts.Seed = 3
			a := benchAuction(5000, 500, 16)
			indexed, full := requireSameAsFullScan(t, a, opts)
			require.Less(t, indexed, full/20, "index %d, full %d", indexed, full)
		})
	}
}

// plainStrategy hides Diego's ScoreForm: a strategy that does not opt in.
type plainStrategy struct{ d Strategy }

func (p plainStrategy) Score(c *Cell, w *Work) float64 { return p.d.Score(c, w) }
func (p plainStrategy) BalanceZones() bool             { return true }

// TestStrategyWithoutFormScansEveryCell checks the fallback: a strategy
// that does not implement Indexable is run by the full scan.
func TestStrategyWithoutFormScansEveryCell(t *testing.T) {
	reg := NewRegistry()
	require.NoError(t, reg.Register("plain", func(o Options) (Strategy, error) {
		d, err := NewDiego(o)
		return plainStrategy{d}, err
	}))
	opts := DefaultOptions()
	opts.Registry = reg
	a := benchAuction(2000, 100, 64)
	full, err := run1(a, opts, scanFull)
	require.NoError(t, err)

	opts.Strategy = "plain"
	plain, err := Run(a, opts)
	require.NoError(t, err)
	require.Equal(t, full, plain, "same placements and the full scan's Score calls")
}

// TestScoreFormsMatchScore checks each built-in strategy's declared form
// against its Score on random cells and work, to within the index's slack.
func TestScoreFormsMatchScore(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, strategy := range []string{"diego", "binpack", "spread"} {
		opts := DefaultOptions()
		opts.Strategy = strategy
		opts.StartingContainerWeight, opts.BinPackFirstFitWeight = 0.75, 0.3
		s, err := NewRegistry().New(opts)
		require.NoError(t, err)
		for range 2000 {
			c := &Cell{
				total:    Resources{MemoryMB: 1 + rng.IntN(1000), DiskMB: rng.IntN(1000), Containers: 1 + rng.IntN(100)},
				starting: rng.IntN(50), tasks: rng.IntN(5), zoneRank: rng.IntN(100), appInstances: rng.IntN(4),
				proxy: rng.IntN(40),
			}
			c.avail = Resources{MemoryMB: rng.IntN(c.total.MemoryMB + 1), DiskMB: rng.IntN(c.total.DiskMB + 1), Containers: rng.IntN(c.total.Containers + 1)}
			w := &Work{kind: []Kind{KindLRP, KindTask}[rng.IntN(2)], memoryMB: rng.IntN(100), diskMB: rng.IntN(100)}
			form, ok := s.(Indexable).ScoreForm(w.kind)
			require.True(t, ok)
			mem := w.memoryMB
			if form.ProxyInUsage {
				mem += c.proxy
			}
			if w.kind == KindTask {
				c.appInstances = 0
			}
			want := form.UsageSign*c.UsageAfter(mem, w.diskMB) + form.StartingWeight*float64(c.starting) +
				form.ZoneRankWeight*float64(c.zoneRank) + form.TaskWeight*float64(c.tasks) + form.AppInstanceWeight*float64(c.appInstances)
			require.InDelta(t, want, s.Score(c, w), 1e-9*(1+abs(want)), "%s %s", strategy, w.kind)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestIndexBounds checks the index's bounds: at most maxIndexes indexes
// per run (later constraints are scanned in full) and no index for a zone
// with more than maxClassesPerZone cell shapes, with placements unchanged.
func TestIndexBounds(t *testing.T) {
	var a Auction
	var tags []string
	for i := range maxIndexes + 10 {
		tags = append(tags, fmt.Sprintf("tag-%d", i))
	}
	for i := range maxClassesPerZone + 8 {
		c := testCell(fmt.Sprintf("c%d", i), "z1", withTotal(100+i, 100, 50))
		c.OptionalPlacementTags = tags
		a.Cells = append(a.Cells, c)
	}
	a.Cells = append(a.Cells, testCell("same-1", "z2"), testCell("same-2", "z2"))
	a.Cells[len(a.Cells)-1].OptionalPlacementTags = tags
	a.Cells[len(a.Cells)-2].OptionalPlacementTags = tags
	for i, tag := range tags {
		a.LRPs = append(a.LRPs, LRPStart{ProcessGUID: fmt.Sprintf("app-%d", i), MemoryMB: 5, DiskMB: 5,
			RootFS: "preloaded:cflinuxfs4", PlacementTags: []string{tag}})
	}
	opts := diegoOpts()
	requireSameAsFullScan(t, a, opts)

	s, err := NewRegistry().New(opts)
	require.NoError(t, err)
	r, err := newRun(a, s, opts)
	require.NoError(t, err)
	for i := range r.work {
		r.place(&r.work[i])
	}
	require.Len(t, r.indexes, 0, "zone z1 has %d shapes: no index", maxClassesPerZone+8)

	// Without z1's many shapes every constraint gets an index, up to the cap.
	a.Cells = a.Cells[maxClassesPerZone+8:]
	r, err = newRun(a, s, opts)
	require.NoError(t, err)
	for i := range r.work {
		r.place(&r.work[i])
	}
	require.Len(t, r.indexes, maxIndexes)
	requireSameAsFullScan(t, a, opts)
}
