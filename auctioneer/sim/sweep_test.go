package sim

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/auctioneer/strategyfile"
)

func sweepScenario(t *testing.T) *Scenario {
	t.Helper()
	s, err := Generate(GenerateOptions{Cells: 12, Zones: 3, MemoryMB: 4096, Containers: 50, Fill: 0.4,
		Apps: []AppMix{{Count: 6, Instances: 4, MemoryMB: 256}}, Tasks: 5, TaskMemoryMB: 128, Seed: 2})
	require.NoError(t, err)
	return s
}

func TestSweepHasOneRowPerRunWithEveryInput(t *testing.T) {
	f, err := strategyfile.Parse([]byte("name: lean\nparams: {tilt: 0}\nscore: 'usage_after + params.tilt * double(cell.index)'\n"))
	require.NoError(t, err)
	var progress []int
	o := SweepOptions{
		Strategies: []SweepStrategy{{Name: "diego"}, {File: f}},
		Seeds:      []int64{1, 2, 3},
		Params: []SweepParam{
			{Name: "starting_container_weight", Values: []float64{0, 0.5}},
			{Name: "tilt", Values: []float64{-1, 1}},
		},
		ScenarioFile: "s.json", ScenarioSHA256: "abc", GavelVersion: "v-test",
		Progress: func(done, total int, _ Row) {
			require.Equal(t, 24, total)
			progress = append(progress, done)
		},
	}
	n, err := o.Runs()
	require.NoError(t, err)
	require.Equal(t, 24, n)
	rows, err := Sweep(context.Background(), sweepScenario(t), o)
	require.NoError(t, err)
	require.Len(t, rows, 24)
	require.Len(t, progress, 24)
	require.Equal(t, 24, progress[23])

	seen := map[string]bool{}
	for _, r := range rows {
		key := fmt.Sprintf("%s/%d/%v/%v", r.Strategy, r.Seed, r.Grid["starting_container_weight"], r.Grid["tilt"])
		require.False(t, seen[key], "one row per (strategy, seed, params): %s twice", key)
		seen[key] = true
		require.Equal(t, "s.json", r.ScenarioFile)
		require.Equal(t, "abc", r.ScenarioSHA256)
		require.Equal(t, "v-test", r.GavelVersion)
		require.Len(t, r.Grid, 2)
		require.Equal(t, r.Grid["starting_container_weight"], r.Parameters["starting_container_weight"], "the grid's weight is what ran")
		require.Equal(t, 24+5, r.Requested, "24 instances and 5 tasks")
		require.Equal(t, r.Requested, r.Placed+r.Failed)
		switch r.Strategy {
		case "lean":
			require.Equal(t, f.SHA256(), r.StrategySHA256)
			require.Equal(t, r.Grid["tilt"], r.Parameters["tilt"])
		case "diego":
			require.Empty(t, r.StrategySHA256)
			require.NotContains(t, r.Parameters, "tilt", "diego does not read tilt")
		default:
			t.Fatalf("unexpected strategy %q", r.Strategy)
		}
	}
	require.Len(t, seen, 24)
	// Order: strategy, then the grid (first parameter slowest), seeds fastest.
	require.Equal(t, []int64{1, 2, 3}, []int64{rows[0].Seed, rows[1].Seed, rows[2].Seed})
	require.Equal(t, map[string]float64{"starting_container_weight": 0, "tilt": 1}, rows[3].Grid)
	require.Equal(t, map[string]float64{"starting_container_weight": 0.5, "tilt": -1}, rows[6].Grid)
	require.Equal(t, "lean", rows[12].Strategy)

	// The parameters change the outcome of the file strategy: tilt -1
	// and +1 pull the work to opposite ends of the cell order.
	require.NotEqual(t, rows[12].DistributionScore, rows[15].DistributionScore)

	// CSV: a header and one record per row, every input in its column.
	var buf bytes.Buffer
	require.NoError(t, WriteRowsCSV(&buf, rows))
	recs, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 25)
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, h := range []string{"strategy", "strategy_sha256", "seed", "scenario_sha256", "gavel_version",
		"param.starting_container_weight", "param.tilt", "param.bin_pack_first_fit_weight", "param.max_inflight_starts",
		"placed", "failed", "free_memory_mb", "stranded_disk_mb", "stranded_containers"} {
		require.Contains(t, col, h)
	}
	for i, rec := range recs[1:] {
		require.Equal(t, rows[i].Strategy, rec[col["strategy"]])
		require.Equal(t, strconv.FormatInt(rows[i].Seed, 10), rec[col["seed"]])
		require.Equal(t, "abc", rec[col["scenario_sha256"]])
		require.Equal(t, strconv.FormatFloat(rows[i].Grid["tilt"], 'g', -1, 64), rec[col["param.tilt"]])
		require.Equal(t, strconv.Itoa(rows[i].Placed), rec[col["placed"]])
	}

	// JSON: {"runs": [...]} with the same rows.
	buf.Reset()
	require.NoError(t, WriteRowsJSON(&buf, rows))
	var got RowsJSON
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	require.Equal(t, rows, got.Runs)
}

func TestSweepIsReproducible(t *testing.T) {
	o := SweepOptions{Strategies: []SweepStrategy{{Name: "diego"}}, Seeds: []int64{5, 6}}
	a, err := Sweep(context.Background(), sweepScenario(t), o)
	require.NoError(t, err)
	b, err := Sweep(context.Background(), sweepScenario(t), o)
	require.NoError(t, err)
	for i := range a {
		a[i].WallMS, b[i].WallMS = 0, 0
	}
	require.Equal(t, a, b)
}

func TestSweepRefusesBadOptions(t *testing.T) {
	seeds := make([]int64, 5001)
	cases := []struct {
		name string
		o    SweepOptions
		want string
	}{
		{"no strategy", SweepOptions{Seeds: []int64{1}}, "strategies: give at least one"},
		{"no seed", SweepOptions{Strategies: []SweepStrategy{{Name: "diego"}}}, "seeds: give at least one"},
		{"twice", SweepOptions{Strategies: []SweepStrategy{{Name: "diego"}, {Name: "diego"}}, Seeds: []int64{1}}, "strategies: diego given twice"},
		{"unknown param", SweepOptions{Strategies: []SweepStrategy{{Name: "diego"}}, Seeds: []int64{1},
			Params: []SweepParam{{Name: "alpha", Values: []float64{1}}}}, "param alpha: no strategy of the sweep reads it"},
		{"param twice", SweepOptions{Strategies: []SweepStrategy{{Name: "diego"}}, Seeds: []int64{1},
			Params: []SweepParam{{Name: "max_inflight_starts", Values: []float64{1}}, {Name: "max_inflight_starts", Values: []float64{2}}}}, "param max_inflight_starts: given twice"},
		{"no values", SweepOptions{Strategies: []SweepStrategy{{Name: "diego"}}, Seeds: []int64{1},
			Params: []SweepParam{{Name: "max_inflight_starts"}}}, "param max_inflight_starts: give at least one value"},
		{"grid too large", SweepOptions{Strategies: []SweepStrategy{{Name: "diego"}}, Seeds: seeds,
			Params: []SweepParam{{Name: "starting_container_weight", Values: []float64{0, 1, 2}}}},
			"grid: 1 strategies × 5001 seeds × 3 parameter combinations exceeds 10000 runs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Sweep(context.Background(), sweepScenario(t), tc.o)
			require.ErrorContains(t, err, tc.want)
		})
	}
	t.Run("bad value fails the run it reaches", func(t *testing.T) {
		_, err := Sweep(context.Background(), sweepScenario(t), SweepOptions{Strategies: []SweepStrategy{{Name: "diego"}}, Seeds: []int64{1},
			Params: []SweepParam{{Name: "bin_pack_first_fit_weight", Values: []float64{0.5, 2}}}})
		require.ErrorContains(t, err, "bin_pack_first_fit_weight: must be between 0 and 1")
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Sweep(ctx, sweepScenario(t), SweepOptions{Strategies: []SweepStrategy{{Name: "diego"}}, Seeds: []int64{1}})
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestParseSeedsAndParams(t *testing.T) {
	seeds, err := ParseSeeds("1..3, 7,10..11")
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3, 7, 10, 11}, seeds)
	for spec, want := range map[string]string{
		"":         "empty",
		"x":        `"x" is not an integer`,
		"5..1":     "ends before it starts",
		"1..20000": "at most 10000 seeds",
		"-9223372036854775808..9223372036854775807": "at most 10000 seeds",
	} {
		_, err := ParseSeeds(spec)
		require.ErrorContains(t, err, want, spec)
	}
	p, err := ParseSweepParam("starting_container_weight=0,0.25, 0.5")
	require.NoError(t, err)
	require.Equal(t, SweepParam{Name: "starting_container_weight", Values: []float64{0, 0.25, 0.5}}, p)
	_, err = ParseSweepParam("x")
	require.ErrorContains(t, err, "want NAME=V1,V2")
	_, err = ParseSweepParam("x=1,NaN")
	require.ErrorContains(t, err, `param x: "NaN" is not a finite number`)
}
