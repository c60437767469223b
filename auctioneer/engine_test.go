package auctioneer

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOrdering covers reference §1.4: index-0 LRPs, then tasks, then LRPs
// with index ≥ 1 in index order; larger memory first within each group.
func TestOrdering(t *testing.T) {
	tests := []struct {
		name      string
		cells     []CellState
		lrps      []LRPStart
		tasks     []TaskStart
		wantOrder []string
		wantFail  map[string]string
	}{
		{
			name:  "three groups, memory descending within each",
			cells: []CellState{testCell("c1", "z1", withTotal(1000, 1000, 100))},
			lrps: []LRPStart{
				lrpReq("a", 1, 10), lrpReq("b", 0, 5), lrpReq("c", 0, 20),
				lrpReq("a", 2, 50), lrpReq("d", 1, 40), lrpReq("a", 0, 1),
			},
			tasks:     []TaskStart{taskReq("t1", 5), taskReq("t2", 30)},
			wantOrder: []string{"c.0", "b.0", "a.0", "t2", "t1", "d.1", "a.1", "a.2"},
		},
		{
			name:      "every app's instance 1 before any instance 2",
			cells:     []CellState{testCell("c1", "z1", withTotal(1000, 1000, 100))},
			lrps:      []LRPStart{lrpReq("a", 2, 90), lrpReq("a", 1, 1), lrpReq("b", 2, 1), lrpReq("b", 1, 2)},
			wantOrder: []string{"b.1", "a.1", "a.2", "b.2"},
		},
		{
			name:      "equal keys keep their input order",
			cells:     []CellState{testCell("c1", "z1")},
			lrps:      []LRPStart{lrpReq("x", 0, 5), lrpReq("y", 0, 5), lrpReq("z", 0, 5)},
			wantOrder: []string{"x.0", "y.0", "z.0"},
		},
		{
			name:      "scarce memory: index 0 beats a larger task, a task beats index 1",
			cells:     []CellState{testCell("c1", "z1", withTotal(60, 100, 100))},
			lrps:      []LRPStart{lrpReq("a", 1, 30), lrpReq("b", 0, 30)},
			tasks:     []TaskStart{taskReq("t", 30)},
			wantOrder: []string{"b.0", "t"},
			wantFail:  map[string]string{"a.1": "insufficient resources: memory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustRun(t, Auction{Cells: tt.cells, LRPs: tt.lrps, Tasks: tt.tasks}, diegoOpts())
			require.Equal(t, tt.wantOrder, order(res))
			if tt.wantFail == nil {
				tt.wantFail = map[string]string{}
			}
			require.Equal(t, tt.wantFail, failures(res))
		})
	}
}

// TestFilters covers each hard filter of reference §1.5 on one cell.
func TestFilters(t *testing.T) {
	fixed := map[string][]string{"preloaded": {"cflinuxfs3", "cflinuxfs4"}}
	tests := []struct {
		name    string
		cell    CellState
		rootfs  string
		tags    []string
		drivers []string
		wantErr string // "" means placed
	}{
		{name: "rootfs: stack in the fixed set", cell: testCell("c", "z", withProviders(fixed)), rootfs: "preloaded:cflinuxfs3"},
		{name: "rootfs: stack not in the fixed set", cell: testCell("c", "z", withProviders(fixed)), rootfs: "preloaded:windows", wantErr: MsgRootFS},
		{name: "rootfs: empty list serves any URL of the scheme", cell: testCell("c", "z"), rootfs: "docker:///cloudfoundry/grace"},
		{name: "rootfs: unknown scheme", cell: testCell("c", "z"), rootfs: "oci:///busybox", wantErr: MsgRootFS},
		{name: "rootfs: unparseable URL", cell: testCell("c", "z"), rootfs: "%zz:bad", wantErr: MsgRootFS},
		{name: "rootfs: empty", cell: testCell("c", "z"), rootfs: "", wantErr: MsgRootFS},
		{name: "drivers: requested subset offered", cell: testCell("c", "z", withDrivers("nfs", "smb")), rootfs: "preloaded:cflinuxfs4", drivers: []string{"smb"}},
		{name: "drivers: one missing", cell: testCell("c", "z", withDrivers("nfs")), rootfs: "preloaded:cflinuxfs4", drivers: []string{"nfs", "smb"}, wantErr: MsgVolumeDrivers},
		{name: "tags: untagged request, untagged cell", cell: testCell("c", "z"), rootfs: "preloaded:cflinuxfs4"},
		{name: "tags: untagged request, cell requires a tag", cell: testCell("c", "z", withTags([]string{"gpu"}, nil)), rootfs: "preloaded:cflinuxfs4", wantErr: "found no compatible cell with no placement tags"},
		{name: "tags: untagged request, cell with optional tags only", cell: testCell("c", "z", withTags(nil, []string{"ssd"})), rootfs: "preloaded:cflinuxfs4"},
		{name: "tags: request carries required and optional tag", cell: testCell("c", "z", withTags([]string{"gpu"}, []string{"ssd"})), rootfs: "preloaded:cflinuxfs4", tags: []string{"ssd", "gpu"}},
		{name: "tags: request lacks a required tag", cell: testCell("c", "z", withTags([]string{"gpu", "fast"}, nil)), rootfs: "preloaded:cflinuxfs4", tags: []string{"gpu"}, wantErr: `found no compatible cell with placement tag "gpu"`},
		{name: "tags: request tag unknown to the cell", cell: testCell("c", "z", withTags([]string{"gpu"}, nil)), rootfs: "preloaded:cflinuxfs4", tags: []string{"gpu", "arm"}, wantErr: `found no compatible cell with placement tags "gpu" and "arm"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lrp := lrpReq("app", 0, 10)
			lrp.RootFS, lrp.PlacementTags, lrp.VolumeDrivers = tt.rootfs, tt.tags, tt.drivers
			task := taskReq("task", 10)
			task.RootFS, task.PlacementTags, task.VolumeDrivers = tt.rootfs, tt.tags, tt.drivers
			res := mustRun(t, Auction{Cells: []CellState{tt.cell}, LRPs: []LRPStart{lrp}, Tasks: []TaskStart{task}}, diegoOpts())
			if tt.wantErr == "" {
				require.Equal(t, map[string]string{"app.0": "c", "task": "c"}, winners(res))
				require.Empty(t, res.Failures)
				return
			}
			require.Empty(t, res.Placements)
			require.Equal(t, map[string]string{"app.0": tt.wantErr, "task": tt.wantErr}, failures(res))
		})
	}
}

// TestFailureStrings covers every placement error of reference §1.10 and
// the "problems common to all cells" rule.
func TestFailureStrings(t *testing.T) {
	tagged := func(req ...string) cellOpt { return withTags(req, nil) }
	tests := []struct {
		name    string
		cells   []CellState
		lrp     LRPStart
		opts    Options
		wantErr string
		wantWhy []Rejection
	}{
		{name: "no cells", lrp: lrpReq("a", 0, 10), wantErr: "unable to communicate to compatible cells"},
		{name: "every cell evacuating", cells: []CellState{testCell("c1", "z", evacuating())}, lrp: lrpReq("a", 0, 10), wantErr: "unable to communicate to compatible cells"},
		{
			name:    "no cell with the rootfs",
			cells:   []CellState{testCell("c1", "z"), testCell("c2", "z")},
			lrp:     LRPStart{ProcessGUID: "a", MemoryMB: 1, RootFS: "preloaded:windows2016"},
			wantErr: "found no compatible cell for required rootfs",
			wantWhy: []Rejection{{Reason: "rootfs mismatch", Cells: 2}},
		},
		{
			name:    "drivers missing beats a rootfs mismatch elsewhere",
			cells:   []CellState{testCell("c1", "z1", withProviders(map[string][]string{"docker": {}})), testCell("c2", "z2")},
			lrp:     LRPStart{ProcessGUID: "a", MemoryMB: 1, RootFS: "preloaded:cflinuxfs4", VolumeDrivers: []string{"nfs"}},
			wantErr: "found no compatible cell with required volume drivers",
			wantWhy: []Rejection{{Reason: "rootfs mismatch", Cells: 1}, {Reason: "volume drivers missing", Cells: 1}},
		},
		{
			name:    "no placement tags",
			cells:   []CellState{testCell("c1", "z", tagged("gpu"))},
			lrp:     lrpReq("a", 0, 1),
			wantErr: "found no compatible cell with no placement tags",
		},
		{
			name:    "one placement tag",
			cells:   []CellState{testCell("c1", "z")},
			lrp:     LRPStart{ProcessGUID: "a", MemoryMB: 1, RootFS: "preloaded:cflinuxfs4", PlacementTags: []string{"a"}},
			wantErr: `found no compatible cell with placement tag "a"`,
		},
		{
			name:    "two placement tags",
			cells:   []CellState{testCell("c1", "z")},
			lrp:     LRPStart{ProcessGUID: "a", MemoryMB: 1, RootFS: "preloaded:cflinuxfs4", PlacementTags: []string{"a", "b"}},
			wantErr: `found no compatible cell with placement tags "a" and "b"`,
		},
		{
			name:    "several placement tags, in request order",
			cells:   []CellState{testCell("c1", "z"), testCell("c2", "z", withDrivers())},
			lrp:     LRPStart{ProcessGUID: "a", MemoryMB: 1, RootFS: "preloaded:cflinuxfs4", PlacementTags: []string{"c", "a", "b"}},
			wantErr: `found no compatible cell with placement tags "c", "a" and "b"`,
			wantWhy: []Rejection{{Reason: "placement tags mismatch", Cells: 2}},
		},
		{
			name:    "tag mismatch beats drivers and rootfs elsewhere",
			cells:   []CellState{testCell("c1", "z1", withProviders(nil)), testCell("c2", "z2", withDrivers("nfs"), tagged("x")), testCell("c3", "z3")},
			lrp:     LRPStart{ProcessGUID: "a", MemoryMB: 1, RootFS: "preloaded:cflinuxfs4", VolumeDrivers: []string{"nfs"}},
			wantErr: "found no compatible cell with no placement tags",
		},
		{
			name:    "one problem on the only cell",
			cells:   []CellState{testCell("c1", "z", withLRP("x", 0, 95, 1))},
			lrp:     lrpReq("a", 0, 10),
			wantErr: "insufficient resources: memory",
			wantWhy: []Rejection{{Reason: "insufficient memory", Cells: 1}},
		},
		{
			name:    "several problems, sorted",
			cells:   []CellState{testCell("c1", "z", withTotal(100, 100, 1), withLRP("x", 0, 95, 95))},
			lrp:     LRPStart{ProcessGUID: "a", MemoryMB: 10, DiskMB: 10, RootFS: "preloaded:cflinuxfs4"},
			wantErr: "insufficient resources: containers, disk, memory",
			wantWhy: []Rejection{{Reason: "insufficient disk", Cells: 1}, {Reason: "insufficient memory", Cells: 1}, {Reason: "no free container", Cells: 1}},
		},
		{
			name: "only problems common to every cell are listed",
			cells: []CellState{
				testCell("c1", "z1", withLRP("x", 0, 95, 95)),
				testCell("c2", "z2", withLRP("x", 0, 95, 1)),
			},
			lrp:     LRPStart{ProcessGUID: "a", MemoryMB: 10, DiskMB: 10, RootFS: "preloaded:cflinuxfs4"},
			wantErr: "insufficient resources: memory",
		},
		{
			name: "problems not common to all cells: no list",
			cells: []CellState{
				testCell("c1", "z1", withLRP("x", 0, 95, 1)),
				testCell("c2", "z1", withLRP("x", 0, 1, 95)),
			},
			lrp:     LRPStart{ProcessGUID: "a", MemoryMB: 10, DiskMB: 10, RootFS: "preloaded:cflinuxfs4"},
			wantErr: "insufficient resources",
			wantWhy: []Rejection{{Reason: "insufficient disk", Cells: 1}, {Reason: "insufficient memory", Cells: 1}},
		},
		{
			name: "filtered-out cells do not count towards the problems",
			cells: []CellState{
				testCell("c1", "z1", withLRP("x", 0, 95, 1)),
				testCell("c2", "z1", withProviders(nil), withLRP("x", 0, 1, 95)),
			},
			lrp:     LRPStart{ProcessGUID: "a", MemoryMB: 10, DiskMB: 10, RootFS: "preloaded:cflinuxfs4"},
			wantErr: "insufficient resources: memory",
			wantWhy: []Rejection{{Reason: "rootfs mismatch", Cells: 1}, {Reason: "insufficient memory", Cells: 1}},
		},
		{
			name:    "proxy memory counts in the LRP fit check",
			cells:   []CellState{testCell("c1", "z", withProxy(32))},
			lrp:     lrpReq("a", 0, 80),
			wantErr: "insufficient resources: memory",
		},
		{
			name:    "in-flight start limit",
			cells:   []CellState{testCell("c1", "z", withStarting(3))},
			lrp:     lrpReq("a", 0, 1),
			opts:    diegoOpts(func(o *Options) { o.MaxInflightStarts = 3 }),
			wantErr: "waiting to start instance: reached in-flight start limit",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.Strategy == "" {
				opts = diegoOpts()
			}
			res := mustRun(t, Auction{Cells: tt.cells, LRPs: []LRPStart{tt.lrp}}, opts)
			require.Empty(t, res.Placements)
			require.Len(t, res.Failures, 1)
			require.Equal(t, tt.wantErr, res.Failures[0].Message)
			if tt.wantWhy != nil {
				require.Equal(t, tt.wantWhy, res.Failures[0].Rejections)
			}
		})
	}
}

// TestFailureReasons checks the coded reason travels with each message.
func TestFailureReasons(t *testing.T) {
	cells := []CellState{testCell("c1", "z", withLRP("x", 0, 95, 1))}
	res := mustRun(t, Auction{Cells: cells, LRPs: []LRPStart{
		{ProcessGUID: "rootfs", RootFS: "nope:x"},
		{ProcessGUID: "drivers", RootFS: "preloaded:cflinuxfs4", VolumeDrivers: []string{"nfs"}},
		{ProcessGUID: "tags", RootFS: "preloaded:cflinuxfs4", PlacementTags: []string{"t"}},
		{ProcessGUID: "memory", RootFS: "preloaded:cflinuxfs4", MemoryMB: 50},
	}}, diegoOpts())
	got := map[string]Reason{}
	for _, f := range res.Failures {
		got[f.ProcessGUID] = f.Reason
	}
	require.Equal(t, map[string]Reason{
		"rootfs": ReasonRootFS, "drivers": ReasonVolumeDrivers, "tags": ReasonPlacementTags, "memory": ReasonInsufficientResources,
	}, got)
}

// TestZoneBalancing covers reference §1.7: zones with fewer instances of the
// app first, tied zones compete on score, full zones fall through; AZ
// balancing wins over cell balancing and resource score.
func TestZoneBalancing(t *testing.T) {
	loaded := withLRP("other", 0, 80, 80)
	tests := []struct {
		name     string
		cells    []CellState
		lrps     []LRPStart
		strategy string
		want     map[string]string
		wantZone map[string]int // placements per zone, when the cell is not fixed
	}{
		{
			name: "zone with fewer instances beats an emptier cell elsewhere",
			cells: []CellState{
				testCell("z1-loaded", "z1", loaded),
				testCell("z2-has-app", "z2", withLRP("app", 0, 1, 1)),
				testCell("z2-empty", "z2"),
			},
			lrps: []LRPStart{lrpReq("app", 1, 10)},
			want: map[string]string{"app.1": "z1-loaded"},
		},
		{
			name: "without zone balancing (spread) the emptiest cell wins",
			cells: []CellState{
				testCell("z1-loaded", "z1", loaded),
				testCell("z2-has-app", "z2", withLRP("app", 0, 1, 1)),
				testCell("z2-empty", "z2"),
			},
			lrps:     []LRPStart{lrpReq("app", 1, 10)},
			strategy: "spread",
			want:     map[string]string{"app.1": "z2-empty"},
		},
		{
			name: "tied zones compete on score",
			cells: []CellState{
				testCell("z1-loaded", "z1", loaded),
				testCell("z2-empty", "z2"),
			},
			lrps: []LRPStart{lrpReq("app", 0, 10)},
			want: map[string]string{"app.0": "z2-empty"},
		},
		{
			name: "a full zone falls through to the more loaded one",
			cells: []CellState{
				testCell("z1-full", "z1", withLRP("other", 0, 95, 1)),
				testCell("z2-has-app", "z2", withLRP("app", 0, 1, 1)),
			},
			lrps: []LRPStart{lrpReq("app", 1, 10)},
			want: map[string]string{"app.1": "z2-has-app"},
		},
		{
			name: "a loaded cell alone in its zone gets half the instances",
			cells: []CellState{
				testCell("z1-loaded", "z1", withLRP("other", 0, 50, 50)),
				testCell("z2-a", "z2"), testCell("z2-b", "z2"), testCell("z2-c", "z2"),
			},
			lrps:     []LRPStart{lrpReq("app", 0, 5), lrpReq("app", 1, 5), lrpReq("app", 2, 5), lrpReq("app", 3, 5)},
			wantZone: map[string]int{"z1": 2, "z2": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			zoneOf := map[string]string{}
			for _, c := range tt.cells {
				zoneOf[c.CellID] = c.Zone
			}
			for seed := int64(0); seed < 10; seed++ {
				opts := diegoOpts(func(o *Options) { o.Seed = seed })
				if tt.strategy != "" {
					opts.Strategy = tt.strategy
				}
				res := mustRun(t, Auction{Cells: tt.cells, LRPs: tt.lrps}, opts)
				if tt.want != nil {
					require.Equal(t, tt.want, winners(res), "seed %d", seed)
				}
				if tt.wantZone != nil {
					got := map[string]int{}
					for _, p := range res.Placements {
						got[zoneOf[p.CellID]]++
					}
					require.Equal(t, tt.wantZone, got, "seed %d", seed)
				}
			}
		})
	}
}

// TestAntiAffinity covers the +1000 locality offset: per instance of the
// same app for LRPs, per task of any guid for tasks.
func TestAntiAffinity(t *testing.T) {
	tests := []struct {
		name  string
		cells []CellState
		lrps  []LRPStart
		tasks []TaskStart
		want  map[string]int // placements per cell
	}{
		{
			name:  "a fuller cell without the app beats an empty cell with it",
			cells: []CellState{testCell("empty-with-app", "z", withLRP("app", 0, 1, 1)), testCell("half-full", "z", withLRP("other", 0, 50, 50))},
			lrps:  []LRPStart{lrpReq("app", 1, 10)},
			want:  map[string]int{"half-full": 1},
		},
		{
			name:  "instances of one app spread one per cell",
			cells: []CellState{testCell("a", "z"), testCell("b", "z"), testCell("c", "z")},
			lrps:  []LRPStart{lrpReq("app", 0, 1), lrpReq("app", 1, 1), lrpReq("app", 2, 1)},
			want:  map[string]int{"a": 1, "b": 1, "c": 1},
		},
		{
			name:  "other apps do not repel",
			cells: []CellState{testCell("a", "z", withLRP("other", 0, 1, 1), withLRP("other", 1, 1, 1)), testCell("b", "z", withLRP("x", 0, 30, 30))},
			lrps:  []LRPStart{lrpReq("app", 0, 1)},
			want:  map[string]int{"a": 1},
		},
		{
			name:  "a task avoids a cell with any task",
			cells: []CellState{testCell("empty-with-task", "z", withTask("t0", 1, 1)), testCell("half-full", "z", withLRP("other", 0, 50, 50))},
			tasks: []TaskStart{taskReq("t1", 10)},
			want:  map[string]int{"half-full": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := int64(0); seed < 10; seed++ {
				res := mustRun(t, Auction{Cells: tt.cells, LRPs: tt.lrps, Tasks: tt.tasks}, diegoOpts(func(o *Options) { o.Seed = seed }))
				require.Equal(t, tt.want, perCell(res), "seed %d", seed)
			}
		})
	}
}

// TestStartingContainerTerm shows the starting-container penalty keeping
// an empty cell from taking a whole deploy: 30 one-MB apps over one empty
// and two half-full cells.
//
// Empty cell after k placements costs (k+1)/100 + 0.25 k = 0.01 + 0.26 k; a
// half-full cell after j placements costs (2·(51+j) + (6+j)) / 300 + 0.25 j
// = 0.36 + 0.26 j. At weight 0.25 the empty cell wins only while
// k < j + 1.35, so it stays about one placement ahead of each half-full
// cell: 11 + 10 + 9 = 30. At weight 0 it costs (k+1)/100 against 0.36 and
// wins all 30.
func TestStartingContainerTerm(t *testing.T) {
	cells := []CellState{
		testCell("empty", "z"),
		testCell("half-1", "z", withLRP("o1", 0, 10, 10), withLRP("o2", 0, 10, 10), withLRP("o3", 0, 10, 10), withLRP("o4", 0, 10, 10), withLRP("o5", 0, 10, 10)),
		testCell("half-2", "z", withLRP("p1", 0, 10, 10), withLRP("p2", 0, 10, 10), withLRP("p3", 0, 10, 10), withLRP("p4", 0, 10, 10), withLRP("p5", 0, 10, 10)),
	}
	var lrps []LRPStart
	for i := range 30 {
		lrps = append(lrps, LRPStart{ProcessGUID: "app-" + string(rune('A'+i)), MemoryMB: 1, DiskMB: 1, RootFS: "preloaded:cflinuxfs4"})
	}
	tests := []struct {
		name      string
		weight    float64
		wantEmpty int
	}{
		{name: "weight 0.25: the deploy is shared", weight: 0.25, wantEmpty: 11},
		{name: "weight 0: the empty cell takes everything", weight: 0, wantEmpty: 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustRun(t, Auction{Cells: cells, LRPs: lrps}, diegoOpts(func(o *Options) { o.StartingContainerWeight = tt.weight }))
			require.Empty(t, res.Failures)
			require.Equal(t, tt.wantEmpty, perCell(res)["empty"])
		})
	}
}

// TestBinPackFirstFit covers the bin-pack term: the per-zone normalised
// index times the weight, so equal cells fill in index order.
func TestBinPackFirstFit(t *testing.T) {
	cells := []CellState{
		testCell("z1-idx9", "z1", withIndex(9)), testCell("z1-idx3", "z1", withIndex(3)), testCell("z1-idx5", "z1", withIndex(5)),
		testCell("z2-idx8", "z2", withIndex(8)), testCell("z2-idx4", "z2", withIndex(4)),
	}
	t.Run("ranks are per zone and follow the reported index", func(t *testing.T) {
		r, err := newRun(Auction{Cells: cells}, &Diego{}, DefaultOptions())
		require.NoError(t, err)
		got := map[string]int{}
		for i := range r.cells {
			got[r.cells[i].ID()] = r.cells[i].ZoneRank()
		}
		require.Equal(t, map[string]int{"z1-idx3": 0, "z1-idx5": 1, "z1-idx9": 2, "z2-idx4": 0, "z2-idx8": 1}, got)
	})
	t.Run("score grows by the weight per rank", func(t *testing.T) {
		r, err := newRun(Auction{Cells: cells[:3], LRPs: []LRPStart{lrpReq("a", 0, 1)}}, &Diego{}, DefaultOptions())
		require.NoError(t, err)
		d := &Diego{startingWeight: 0.25, binPackWeight: 0.5}
		byRank := make([]float64, 3)
		for i := range r.cells {
			byRank[r.cells[i].ZoneRank()] = d.Score(&r.cells[i], &r.work[0])
		}
		// Identical empty cells: resource score (0.01 + 0.01 + 0.01) / 3 = 0.01, plus 0.5 × rank.
		require.InDeltaSlice(t, []float64{0.01, 0.51, 1.01}, byRank, 1e-12)
	})
	tests := []struct {
		name   string
		weight float64
		want   map[string]int
	}{
		// 6 instances of 6 apps; per placement the cell gains 0.01 usage + 0.25 starting.
		// Weight 1: rank 0 costs k·0.26, rank 1 costs 1 + k·0.26: z1-idx3 and z2-idx4 take
		// everything until 4 placements each (4·0.26 > 1), which 6 items never reach.
		{name: "weight 1 fills the lowest index of each zone", weight: 1, want: map[string]int{"z1-idx3": 3, "z2-idx4": 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lrps []LRPStart
			for i := range 6 {
				lrps = append(lrps, lrpReq("app-"+string(rune('a'+i)), 0, 1))
			}
			for seed := int64(0); seed < 5; seed++ {
				res := mustRun(t, Auction{Cells: cells, LRPs: lrps}, diegoOpts(func(o *Options) { o.BinPackFirstFitWeight, o.Seed = tt.weight, seed }))
				require.Equal(t, tt.want, perCell(res), "seed %d", seed)
			}
		})
	}
}

// TestInflightCap covers reference §1.8: the cap counts the cells' starting
// containers plus this run's placements; index-0 LRPs and tasks go first.
func TestInflightCap(t *testing.T) {
	tests := []struct {
		name       string
		max        int
		starting   int
		wantPlaced []string
	}{
		{name: "unlimited", max: 0, starting: 50, wantPlaced: []string{"a.0", "t", "a.1", "a.2"}},
		{name: "room for two: index 0 and the task", max: 3, starting: 1, wantPlaced: []string{"a.0", "t"}},
		{name: "already at the cap", max: 3, starting: 3, wantPlaced: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Auction{
				Cells: []CellState{testCell("c1", "z", withStarting(tt.starting))},
				LRPs:  []LRPStart{lrpReq("a", 2, 1), lrpReq("a", 1, 1), lrpReq("a", 0, 1)},
				Tasks: []TaskStart{taskReq("t", 1)},
			}
			res := mustRun(t, a, diegoOpts(func(o *Options) { o.MaxInflightStarts = tt.max }))
			require.Equal(t, tt.wantPlaced, order(res))
			for _, f := range res.Failures {
				require.Equal(t, MsgInflightLimit, f.Message)
				require.Equal(t, ReasonInflightLimit, f.Reason)
			}
			require.Equal(t, tt.starting+len(tt.wantPlaced), res.Metrics.InflightStarts)
		})
	}
}

// TestReservations checks that the batch's reservations are seen by later
// items, including Diego's proxy-memory quirk.
func TestReservations(t *testing.T) {
	tests := []struct {
		name     string
		cell     CellState
		lrps     []LRPStart
		tasks    []TaskStart
		wantFail map[string]string
	}{
		{
			name:     "memory packs within the batch",
			cell:     testCell("c", "z"),
			lrps:     []LRPStart{lrpReq("a", 0, 40), lrpReq("b", 0, 40), lrpReq("c", 0, 40)},
			wantFail: map[string]string{"c.0": "insufficient resources: memory"},
		},
		{
			name:     "container slots are reserved one per item",
			cell:     testCell("c", "z", withTotal(100, 100, 2)),
			lrps:     []LRPStart{lrpReq("a", 0, 1)},
			tasks:    []TaskStart{taskReq("t1", 1), taskReq("t2", 1)},
			wantFail: map[string]string{"t2": "insufficient resources: containers"},
		},
		{
			name: "proxy memory is checked but not reserved",
			cell: testCell("c", "z", withProxy(32)),
			// 50 + 32 fits 100; 50 left; 18 + 32 fits exactly.
			lrps:     []LRPStart{lrpReq("a", 0, 50), lrpReq("b", 0, 18), lrpReq("c", 0, 1)},
			wantFail: map[string]string{"c.0": "insufficient resources: memory"},
		},
		{
			name:     "tasks take no proxy memory",
			cell:     testCell("c", "z", withProxy(32)),
			tasks:    []TaskStart{taskReq("t", 100)},
			wantFail: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustRun(t, Auction{Cells: []CellState{tt.cell}, LRPs: tt.lrps, Tasks: tt.tasks}, diegoOpts())
			require.Equal(t, tt.wantFail, failures(res))
		})
	}
}

// TestDeterminism checks that a seed replays a run, that different seeds
// break ties differently, and that the input is not modified.
func TestDeterminism(t *testing.T) {
	build := func() Auction { return benchAuction(500, 20, 100) }
	a := build()
	first := mustRun(t, a, diegoOpts(func(o *Options) { o.Seed = 7 }))
	again := mustRun(t, a, diegoOpts(func(o *Options) { o.Seed = 7 }))
	require.Equal(t, first, again)
	require.Equal(t, build(), a, "input unchanged")

	tie := Auction{Cells: []CellState{testCell("a", "z"), testCell("b", "z"), testCell("c", "z")}, LRPs: []LRPStart{lrpReq("x", 0, 1)}}
	seen := map[string]bool{}
	for seed := int64(0); seed < 30; seed++ {
		seen[mustRun(t, tie, diegoOpts(func(o *Options) { o.Seed = seed })).Placements[0].CellID] = true
	}
	require.Len(t, seen, 3, "ties go to every cell across seeds")
}

// TestRunErrors covers the errors Run returns instead of a result.
func TestRunErrors(t *testing.T) {
	tests := []struct {
		name    string
		auction Auction
		opts    Options
		wantIs  error
		wantMsg string
	}{
		{name: "unknown strategy", opts: diegoOpts(func(o *Options) { o.Strategy = "magic" }), wantIs: ErrUnknownStrategy, wantMsg: `unknown strategy "magic" (known: binpack, diego, spread)`},
		{name: "negative starting weight", opts: diegoOpts(func(o *Options) { o.StartingContainerWeight = -1 }), wantIs: ErrInvalidOptions, wantMsg: "starting_container_weight"},
		{name: "bin-pack weight above 1", opts: diegoOpts(func(o *Options) { o.BinPackFirstFitWeight = 1.5 }), wantIs: ErrInvalidOptions, wantMsg: "bin_pack_first_fit_weight"},
		{name: "negative in-flight cap", opts: diegoOpts(func(o *Options) { o.MaxInflightStarts = -1 }), wantIs: ErrInvalidOptions, wantMsg: "max_inflight_starts"},
		{name: "duplicate cell id", auction: Auction{Cells: []CellState{testCell("c", "z"), testCell("c", "y")}}, opts: diegoOpts(), wantIs: ErrInvalidAuction, wantMsg: `duplicate cell id "c"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(tt.auction, tt.opts)
			require.Error(t, err)
			require.True(t, errors.Is(err, tt.wantIs), "%v", err)
			require.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

// TestMetrics checks the counters of a mixed run.
func TestMetrics(t *testing.T) {
	a := Auction{
		Cells: []CellState{testCell("c1", "z"), testCell("c2", "z", evacuating()), testCell("c3", "z", withStarting(2))},
		LRPs:  []LRPStart{lrpReq("a", 0, 10), lrpReq("big", 0, 500)},
		Tasks: []TaskStart{taskReq("t", 10), taskReq("huge", 500)},
	}
	full, err := run1(a, diegoOpts(), scanFull)
	require.NoError(t, err)
	require.Equal(t, Metrics{
		LRPsPlaced: 1, LRPsFailed: 1, TasksPlaced: 1, TasksFailed: 1,
		CellsConsidered: 2, CellsExcluded: 1, InflightStarts: 4,
		CellsScored: 2 + 2, // a.0 and t each scored on c1 and c3; big and huge fit nowhere
	}, full.Metrics)
	// The cell index scores c1 first (emptiest, no starting containers);
	// c3's bound is 2 × 0.25 higher, above c1's score, so it is not scored.
	res, err := run1(a, diegoOpts(), scanIndex)
	require.NoError(t, err)
	want := full.Metrics
	want.CellsScored = 1 + 1
	require.Equal(t, want, res.Metrics)
}
