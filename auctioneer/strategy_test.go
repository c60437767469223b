package auctioneer

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// fewestStarting is a researcher's strategy, as short as they come:
// prefer the cell with the fewest containers starting.
type fewestStarting struct{}

func (fewestStarting) Score(c *Cell, _ *Work) float64 { return float64(c.StartingContainers()) }
func (fewestStarting) BalanceZones() bool             { return false }

func TestRegistry(t *testing.T) {
	t.Run("built-ins", func(t *testing.T) {
		require.Equal(t, []string{"binpack", "diego", "spread"}, NewRegistry().Names())
	})
	t.Run("register and run a custom strategy", func(t *testing.T) {
		reg := NewRegistry()
		require.NoError(t, reg.Register("fewest-starting", func(Options) (Strategy, error) { return fewestStarting{}, nil }))
		a := Auction{
			Cells: []CellState{testCell("busy", "z", withStarting(5)), testCell("full-but-idle", "z", withLRP("x", 0, 90, 90))},
			LRPs:  []LRPStart{lrpReq("a", 0, 1)},
		}
		res := mustRun(t, a, diegoOpts(func(o *Options) { o.Strategy, o.Registry = "fewest-starting", reg }))
		require.Equal(t, map[string]string{"a.0": "full-but-idle"}, winners(res))
	})
	t.Run("duplicate name refused", func(t *testing.T) {
		err := NewRegistry().Register("diego", NewDiego)
		require.ErrorContains(t, err, `register strategy "diego": already registered`)
	})
	t.Run("empty name refused", func(t *testing.T) {
		require.Error(t, NewRegistry().Register("", NewDiego))
	})
	t.Run("empty strategy name means diego", func(t *testing.T) {
		s, err := NewRegistry().New(Options{StartingContainerWeight: 0.25})
		require.NoError(t, err)
		require.IsType(t, &Diego{}, s)
	})
}

// TestStrategies contrasts the built-ins on one snapshot: a quarter-full
// cell, an empty cell and a cell holding an instance of the app.
func TestStrategies(t *testing.T) {
	cells := []CellState{
		testCell("quarter", "z1", withLRP("other", 0, 25, 25)),
		testCell("empty", "z1"),
		testCell("three-quarters", "z2", withLRP("app", 0, 75, 75)),
	}
	tests := []struct {
		strategy string
		want     string
	}{
		{strategy: "diego", want: "empty"},            // zone z1 has no instance; emptiest there
		{strategy: "spread", want: "empty"},           // least used overall
		{strategy: "binpack", want: "three-quarters"}, // fullest that fits, anti-affinity ignored
	}
	for _, tt := range tests {
		t.Run(tt.strategy, func(t *testing.T) {
			res := mustRun(t, Auction{Cells: cells, LRPs: []LRPStart{lrpReq("app", 1, 10)}}, diegoOpts(func(o *Options) { o.Strategy = tt.strategy }))
			require.Equal(t, map[string]string{"app.1": tt.want}, winners(res))
		})
	}
	t.Run("binpack fills one cell before the next", func(t *testing.T) {
		var lrps []LRPStart
		for i := range 15 {
			lrps = append(lrps, lrpReq("app", i, 10))
		}
		res := mustRun(t, Auction{Cells: []CellState{testCell("a", "z"), testCell("b", "z")}, LRPs: lrps}, diegoOpts(func(o *Options) { o.Strategy = "binpack" }))
		counts := perCell(res)
		require.ElementsMatch(t, []int{10, 5}, []int{counts["a"], counts["b"]})
	})
	t.Run("spread ignores starting containers", func(t *testing.T) {
		a := Auction{
			Cells: []CellState{testCell("starting", "z", withStarting(50)), testCell("used", "z", withLRP("x", 0, 20, 20))},
			LRPs:  []LRPStart{lrpReq("app", 0, 1)},
		}
		require.Equal(t, map[string]string{"app.0": "starting"}, winners(mustRun(t, a, diegoOpts(func(o *Options) { o.Strategy = "spread" }))))
		require.Equal(t, map[string]string{"app.0": "used"}, winners(mustRun(t, a, diegoOpts())))
	})
}

// TestDiegoScore checks the worked example of reference §1.6.
func TestDiegoScore(t *testing.T) {
	tests := []struct {
		name string
		cell CellState
		want float64
	}{
		// Empty 100/100/100 cell, 10 MB / 10 MB LRP: (0.10 + 0.10 + 0.01) / 3 = 0.07.
		{name: "empty cell", cell: testCell("c", "z"), want: 0.07},
		// Plus 4 starting containers at 0.25.
		{name: "four starting", cell: testCell("c", "z", withStarting(4)), want: 1.07},
		// Plus 1000 for one instance of the same app, a 0 MB one on a 101-container
		// cell: (0.10 + 0.10 + 2/101) / 3 + 1000.
		{name: "same app present", cell: testCell("c", "z", withLRP("app", 0, 0, 0), withTotal(100, 100, 101)), want: 1000 + (0.2+2.0/101)/3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lrp := lrpReq("app", 1, 10)
			lrp.DiskMB = 10
			r, err := newRun(Auction{Cells: []CellState{tt.cell}, LRPs: []LRPStart{lrp}}, &Diego{}, DefaultOptions())
			require.NoError(t, err)
			w := &r.work[0]
			for _, ac := range w.app.cells {
				r.cells[ac.cell].appInstances = int(ac.n)
			}
			d := &Diego{startingWeight: 0.25}
			require.InDelta(t, tt.want, d.Score(&r.cells[0], w), 1e-12)
		})
	}
}
