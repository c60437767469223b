package strategyfile_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/strategyfile"
)

// binpackCEL is the compiled binpack, term for term in the same order:
// the negated mean used fraction after placing the item.
const binpackCEL = `
name: binpack-cel
score: >
  -(((1.0 - double(cell.memory_free_mb - work.placed_memory_mb) / double(cell.memory_total_mb))
  + (1.0 - double(cell.disk_free_mb - work.disk_mb) / double(cell.disk_total_mb))
  + (1.0 - double(cell.containers_free - 1) / double(cell.containers_total))) / 3.0)
`

// diegoCEL is Diego's score (auctioneer.Diego), term for term.
const diegoCEL = `{
  "name": "diego-cel",
  "balance_zones": true,
  "score": "work.is_task ? (usage_after + double(cell.starting_containers) * params.starting_container_weight) + double(1000 * cell.tasks) : (usage_after + double(cell.starting_containers) * params.starting_container_weight) + double(1000 * cell.app_instances) + double(cell.zone_rank) * params.bin_pack_first_fit_weight"
}`

// randomAuction is a heterogeneous cluster: cell sizes, zones, proxy
// allowances, starting containers and existing instances of the apps to
// place vary; so do the items' sizes, and some items fit nowhere.
func randomAuction(seed uint64) auctioneer.Auction {
	rng := rand.New(rand.NewPCG(seed, 7))
	var a auctioneer.Auction
	zones := 1 + rng.IntN(3)
	for i := range 10 + rng.IntN(40) {
		total := auctioneer.Resources{
			MemoryMB:   []int{2048, 4096, 8192, 16384}[rng.IntN(4)],
			DiskMB:     []int{8192, 16384, 32768}[rng.IntN(3)],
			Containers: 20 + rng.IntN(100),
		}
		st := auctioneer.CellState{
			CellID: fmt.Sprintf("cell-%d", i), Zone: fmt.Sprintf("z%d", i%zones), Index: rng.IntN(50),
			Total: total, Available: total,
			RootFSProviders:    map[string][]string{"preloaded": {"cflinuxfs4"}, "docker": {}},
			ProxyMemoryMB:      []int{0, 0, 32}[rng.IntN(3)],
			StartingContainers: rng.IntN(4),
		}
		for range rng.IntN(8) {
			mem := 64 << rng.IntN(5)
			if st.Available.MemoryMB < mem || st.Available.DiskMB < mem {
				break
			}
			st.LRPs = append(st.LRPs, auctioneer.RunningLRP{ProcessGUID: fmt.Sprintf("app-%d", rng.IntN(20)), Index: 100 + len(st.LRPs), MemoryMB: mem, DiskMB: mem})
			st.Available.MemoryMB -= mem
			st.Available.DiskMB -= mem
			st.Available.Containers--
		}
		a.Cells = append(a.Cells, st)
	}
	for app := range 20 {
		mem := 64 << rng.IntN(6)
		for idx := range 1 + rng.IntN(12) {
			a.LRPs = append(a.LRPs, auctioneer.LRPStart{
				ProcessGUID: fmt.Sprintf("app-%d", app), Index: idx, MemoryMB: mem, DiskMB: mem * (1 + rng.IntN(3)),
				RootFS: "preloaded:cflinuxfs4",
			})
		}
	}
	for i := range rng.IntN(40) {
		mem := 32 << rng.IntN(7)
		a.Tasks = append(a.Tasks, auctioneer.TaskStart{TaskGUID: fmt.Sprintf("task-%d", i), MemoryMB: mem, DiskMB: mem, RootFS: "docker:///busybox"})
	}
	return a
}

// runFile places a with the strategy file under opts.
func runFile(t testing.TB, f *strategyfile.File, a auctioneer.Auction, opts auctioneer.Options) auctioneer.Result {
	t.Helper()
	res, _ := runStrategy(t, f, a, opts)
	return res
}

// runStrategy places a with the strategy file under opts and returns the
// strategy value that ran.
func runStrategy(t testing.TB, f *strategyfile.File, a auctioneer.Auction, opts auctioneer.Options) (auctioneer.Result, auctioneer.Strategy) {
	t.Helper()
	var ran auctioneer.Strategy
	reg := auctioneer.NewRegistry()
	require.NoError(t, reg.Register(f.Name(), func(o auctioneer.Options) (auctioneer.Strategy, error) {
		s, err := f.New(o)
		ran = s
		return s, err
	}))
	opts.Strategy, opts.Registry = f.Name(), reg
	res, err := auctioneer.Run(a, opts)
	require.NoError(t, err)
	return res, ran
}

func TestScoreReproducesCompiledStrategiesExactly(t *testing.T) {
	cases := []struct {
		name, compiled, file string
		opts                 func(*auctioneer.Options, *rand.Rand)
	}{
		{"binpack", "binpack", binpackCEL, func(*auctioneer.Options, *rand.Rand) {}},
		{"diego", "diego", diegoCEL, func(o *auctioneer.Options, rng *rand.Rand) {
			o.StartingContainerWeight = []float64{0, 0.25, 0.5, 1}[rng.IntN(4)]
			o.BinPackFirstFitWeight = []float64{0, 0.1, 1}[rng.IntN(3)]
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := strategyfile.Parse([]byte(tc.file))
			require.NoError(t, err)
			for seed := uint64(1); seed <= 25; seed++ {
				rng := rand.New(rand.NewPCG(seed, 1))
				a := randomAuction(seed)
				opts := auctioneer.DefaultOptions()
				opts.Seed = int64(seed)
				tc.opts(&opts, rng)
				opts.Strategy = tc.compiled
				want, err := auctioneer.Run(a, opts)
				require.NoError(t, err)
				got := runFile(t, f, a, opts)
				require.NotEmpty(t, want.Placements, "seed %d places something", seed)
				require.Equal(t, want.Placements, got.Placements, "seed %d", seed)
				require.Equal(t, want.Failures, got.Failures, "seed %d", seed)
			}
		})
	}
}

// The reproduction is not vacuous: binpack and spread place differently
// on these scenarios, and the CEL binpack follows binpack.
func TestScenariosTellStrategiesApart(t *testing.T) {
	a := randomAuction(3)
	opts := auctioneer.DefaultOptions()
	opts.Strategy = "binpack"
	bp, err := auctioneer.Run(a, opts)
	require.NoError(t, err)
	opts.Strategy = "spread"
	sp, err := auctioneer.Run(a, opts)
	require.NoError(t, err)
	require.NotEqual(t, bp.Placements, sp.Placements)
}

func TestBaseStrategyWithWeights(t *testing.T) {
	f, err := strategyfile.Parse([]byte("base: diego\nstarting_container_weight: 5\nbin_pack_first_fit_weight: 0.5\n"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(f.Name(), "file-"))
	a := randomAuction(9)
	opts := auctioneer.DefaultOptions()
	opts.Seed = 9
	got := runFile(t, f, a, opts)

	opts.StartingContainerWeight, opts.BinPackFirstFitWeight = 5, 0.5
	want, err := auctioneer.Run(a, opts)
	require.NoError(t, err)
	require.Equal(t, want.Placements, got.Placements)
	opts.StartingContainerWeight, opts.BinPackFirstFitWeight = 0.25, 0
	dflt, err := auctioneer.Run(a, opts)
	require.NoError(t, err)
	require.NotEqual(t, dflt.Placements, got.Placements, "the file's weights change the placements")
	require.Equal(t, map[string]float64{"starting_container_weight": 5, "bin_pack_first_fit_weight": 0.5}, f.Parameters(opts))

	// balance_zones overrides the base's choice.
	f, err = strategyfile.Parse([]byte(`{"base": "diego", "balance_zones": false}`))
	require.NoError(t, err)
	s, err := f.New(auctioneer.DefaultOptions())
	require.NoError(t, err)
	require.False(t, s.BalanceZones())
}

// twoZones is four empty cells, two per zone, with distinct indices and
// tags, and n instances of one app to place.
func twoZones(n int) auctioneer.Auction {
	var a auctioneer.Auction
	for i := range 4 {
		total := auctioneer.Resources{MemoryMB: 4096, DiskMB: 8192, Containers: 100}
		a.Cells = append(a.Cells, auctioneer.CellState{
			CellID: fmt.Sprintf("cell-%d", i), Zone: fmt.Sprintf("z%d", i%2), Index: i, Total: total, Available: total,
			RootFSProviders:       map[string][]string{"preloaded": {"cflinuxfs4"}},
			OptionalPlacementTags: []string{fmt.Sprintf("t%d", i)},
		})
	}
	for i := range n {
		a.LRPs = append(a.LRPs, auctioneer.LRPStart{ProcessGUID: "app", Index: i, MemoryMB: 128, DiskMB: 128, RootFS: "preloaded:cflinuxfs4"})
	}
	return a
}

func perCell(res auctioneer.Result) map[string]int {
	out := map[string]int{}
	for _, p := range res.Placements {
		out[p.CellID]++
	}
	return out
}

func TestVariablesReadTheCellAndTheItem(t *testing.T) {
	cases := []struct {
		score string
		want  map[string]int
	}{
		{`-double(cell.index)`, map[string]int{"cell-3": 6}},
		{`cell.zone == "z0" ? cell.index : 10`, map[string]int{"cell-0": 6}}, // an int result
		{`"t2" in cell.optional_placement_tags ? 0.0 : 1.0`, map[string]int{"cell-2": 6}},
		{`double(cell.app_instances) + double(cell.index) / 10.0`, map[string]int{"cell-0": 2, "cell-1": 2, "cell-2": 1, "cell-3": 1}},
		{`double(cell.zone_app_instances * 10 + cell.index)`, map[string]int{"cell-0": 3, "cell-1": 3}},
		{`work.index % 2 == cell.index % 2 ? double(cell.index) : 100.0`, map[string]int{"cell-0": 3, "cell-1": 3}},
		{`cell.memory_free_mb > 3800 && cell.id != "cell-0" ? double(cell.index) : 50.0 - double(cell.index)`, map[string]int{"cell-1": 3, "cell-2": 3}},
		{`params.lean * double(cell.index)`, map[string]int{"cell-0": 6}},
	}
	for _, tc := range cases {
		t.Run(tc.score, func(t *testing.T) {
			f, err := strategyfile.Parse([]byte(fmt.Sprintf("params: {lean: 1.0}\nscore: '%s'\n", tc.score)))
			require.NoError(t, err)
			res := runFile(t, f, twoZones(6), auctioneer.DefaultOptions())
			require.Equal(t, tc.want, perCell(res))
		})
	}

	// A sweep's params replace the file's.
	f, err := strategyfile.Parse([]byte("params: {lean: 1.0}\nscore: 'params.lean * double(cell.index)'\n"))
	require.NoError(t, err)
	g, err := f.WithParams(map[string]float64{"lean": -1})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"cell-3": 6}, perCell(runFile(t, g, twoZones(6), auctioneer.DefaultOptions())))
	require.Equal(t, map[string]int{"cell-0": 6}, perCell(runFile(t, f, twoZones(6), auctioneer.DefaultOptions())), "the original is unchanged")
	_, err = f.WithParams(map[string]float64{"lane": 2})
	require.ErrorContains(t, err, `param "lane": strategy`)
	require.ErrorContains(t, err, "lean")
	_, err = f.WithParams(map[string]float64{"starting_container_weight": -1})
	require.ErrorContains(t, err, "starting_container_weight: must be a finite number >= 0")
}

func TestFailedEvaluationsScoreInfinityAndAreReported(t *testing.T) {
	for _, score := range []string{
		`double(1 / (cell.index - cell.index))`, // integer division by zero
		`0.0 / 0.0`,                             // NaN
		`1.0 / double(cell.index - cell.index)`, // +Inf
	} {
		t.Run(score, func(t *testing.T) {
			f, err := strategyfile.Parse([]byte(fmt.Sprintf(`{"name": "bad", "score": %q}`, score)))
			require.NoError(t, err)
			res, s := runStrategy(t, f, twoZones(2), auctioneer.DefaultOptions())
			require.Len(t, res.Placements, 2, "every cell scores +Inf: the first one seen wins")
			scorer := s.(*strategyfile.Scorer)
			require.Error(t, scorer.Err())
			require.ErrorContains(t, scorer.Err(), "strategy bad: score of lrp app index 0 on cell")
			require.ErrorContains(t, scorer.Err(), "8 failed evaluations")
		})
	}
}

func TestMalformedStrategiesNameTheirError(t *testing.T) {
	cases := []struct {
		name, file string
		want       []string
	}{
		{"syntax error", `score: "cell.memory_free_mb +"`, []string{"score:", "Syntax error", "<input>:1:22"}},
		{"unknown variable", `score: "double(cell.memroy_free_mb)"`, []string{"score: unknown variable cell.memroy_free_mb", "<input>:1:"}},
		{"unknown param", `{"params": {"a": 1}, "score": "params.b"}`, []string{"score: unknown variable params.b"}},
		{"wrong result type", `score: "cell.zone"`, []string{"score: must be of type double or int, not string"}},
		{"bool result", `score: "work.is_task"`, []string{"score: must be of type double or int, not bool"}},
		{"type mismatch", `score: "cell.memory_free_mb + 0.5"`, []string{"score:", "no matching overload"}},
		{"unknown base", `base: "fifo"`, []string{`base: unknown strategy "fifo" (known: binpack, diego, spread)`}},
		{"neither", `name: "x"`, []string{"base, score: set one"}},
		{"both", `{"base": "diego", "score": "1.0"}`, []string{"base, score: set only one"}},
		{"negative weight", "base: diego\nstarting_container_weight: -0.5", []string{"starting_container_weight: must be a finite number >= 0"}},
		{"weight above one", "base: diego\nbin_pack_first_fit_weight: 1.5", []string{"bin_pack_first_fit_weight: must be between 0 and 1"}},
		{"params on a base", "base: spread\nparams: {a: 1}", []string{"params: only a score reads params"}},
		{"weight as a param", `{"score": "1.0", "params": {"starting_container_weight": 1}}`, []string{"params.starting_container_weight: set it as the top-level field"}},
		{"bad param name", `{"score": "1.0", "params": {"Bad-Name": 1}}`, []string{`params: "Bad-Name"`}},
		{"built-in name", `{"name": "diego", "score": "1.0"}`, []string{`name: "diego" is a built-in strategy`}},
		{"bad name", `{"name": "My Strategy", "score": "1.0"}`, []string{`name: "My Strategy": use lower-case`}},
		{"unknown field", `{"scroe": "1.0"}`, []string{`unknown field "scroe"`}},
		{"not yaml", "score: [1.0", []string{"invalid strategy file"}},
		{"too long", `score: "` + strings.Repeat("1.0 + ", 700) + `1.0"`, []string{"score: must be at most 4096 bytes (got 4203)"}},
		{"costly but allowed", `{"score": "cell.placement_tags.exists(t, t in work.placement_tags) ? 0.0 : 1.0"}`, nil},
		{"too costly", `score: "cell.placement_tags.exists(a, cell.optional_placement_tags.exists(b, a == b)) ? 1.0 : 0.0"`,
			[]string{"score: estimated cost of one evaluation", "exceeds the limit 11000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := strategyfile.Parse([]byte(tc.file))
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.ErrorIs(t, err, strategyfile.ErrInvalidStrategy)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
	t.Run("file too large", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "big.yaml")
		require.NoError(t, os.WriteFile(path, []byte("# "+strings.Repeat("x", strategyfile.MaxFileBytes)), 0o600))
		_, err := strategyfile.Load(path)
		require.ErrorContains(t, err, "big.yaml: invalid strategy file: file is larger than 65536 bytes")
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := strategyfile.Load(filepath.Join(t.TempDir(), "none.yaml"))
		require.ErrorContains(t, err, "none.yaml: no such file")
	})
}

func TestLoadRecordsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.yaml")
	require.NoError(t, os.WriteFile(path, []byte(binpackCEL), 0o600))
	f, err := strategyfile.Load(path)
	require.NoError(t, err)
	require.Equal(t, "binpack-cel", f.Name())
	require.Equal(t, path, f.Path())
	require.Equal(t, binpackCEL, string(f.Source()))
	require.Len(t, f.SHA256(), 64)
	other, err := strategyfile.Parse([]byte(binpackCEL + "\n"))
	require.NoError(t, err)
	require.NotEqual(t, f.SHA256(), other.SHA256())
}

// Every variable is documented in the README's table.
func TestREADMEDocumentsEveryVariable(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	require.NoError(t, err)
	for _, v := range strategyfile.Variables() {
		require.Contains(t, string(raw), fmt.Sprintf("| `%s` | %s |", v.Name, v.Type))
	}
	require.Contains(t, string(raw), "`params.NAME`")
}

// Every documented variable compiles with its documented type.
func TestEveryVariableCompiles(t *testing.T) {
	for _, v := range strategyfile.Variables() {
		var score string
		switch v.Type {
		case "int":
			score = "double(" + v.Name + ")"
		case "double":
			score = v.Name
		case "bool":
			score = v.Name + " ? 1.0 : 0.0"
		case "string":
			score = "double(size(" + v.Name + "))"
		case "list(string)":
			score = "double(size(" + v.Name + "))"
		}
		f, err := strategyfile.Parse([]byte(fmt.Sprintf(`{"score": %q}`, score)))
		require.NoError(t, err, v.Name)
		res, s := runStrategy(t, f, twoZones(2), auctioneer.DefaultOptions())
		require.Len(t, res.Placements, 2, v.Name)
		require.NoError(t, s.(*strategyfile.Scorer).Err(), v.Name)
	}
}

// A base strategy with balance_zones set by the file keeps the engine's
// cell index: it scores a handful of cells per item, not all of them (the
// index's results are checked against the full scan in the auctioneer
// package, for both zone walks).
func TestBalanceZonesOverrideKeepsTheCellIndex(t *testing.T) {
	f, err := strategyfile.Parse([]byte("name: binpack-zones\nbase: binpack\nbalance_zones: true\n"))
	require.NoError(t, err)
	reg := auctioneer.NewRegistry()
	require.NoError(t, f.Register(reg))

	var a auctioneer.Auction
	const cells, items = 200, 400
	for i := range cells {
		total := auctioneer.Resources{MemoryMB: 4096, DiskMB: 4096, Containers: 100}
		a.Cells = append(a.Cells, auctioneer.CellState{CellID: fmt.Sprintf("cell-%d", i), Zone: fmt.Sprintf("z%d", i%3), Index: i,
			Total: total, Available: total, RootFSProviders: map[string][]string{"preloaded": {"cflinuxfs4"}}})
	}
	for i := range items {
		a.LRPs = append(a.LRPs, auctioneer.LRPStart{ProcessGUID: fmt.Sprintf("app-%d", i%20), Index: i / 20, MemoryMB: 64 + 64*(i%3), DiskMB: 64, RootFS: "preloaded:cflinuxfs4"})
	}
	opts := auctioneer.DefaultOptions()
	opts.Strategy, opts.Registry = "binpack-zones", reg
	res, err := auctioneer.Run(a, opts)
	require.NoError(t, err)
	require.Len(t, res.Placements, items)
	require.Less(t, int64(res.Metrics.CellsScored), int64(cells*items/10), "the index scored few cells per item")
}
