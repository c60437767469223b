package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// executeBoth runs the gavel command and returns stdout, stderr and the error.
func executeBoth(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := NewRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

const preferFullCells = "name: prefer-full\nparams: {w: 1}\nscore: 'params.w * double(cell.memory_free_mb)'\n"

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

func TestSimRunWithAStrategyFileRecordsEveryInput(t *testing.T) {
	strategy := writeFile(t, "s.yaml", preferFullCells)
	out, err := execute(t, "sim", "run", "--scenario", "testdata/issue4.json", "--strategy", strategy, "--seed", "7", "--format", "json")
	require.NoError(t, err)
	var got struct {
		Metadata struct {
			Strategy struct {
				Name, File, SHA256, Source string
			} `json:"strategy"`
			Parameters     map[string]float64 `json:"parameters"`
			Seed           int64              `json:"seed"`
			ScenarioFile   string             `json:"scenario_file"`
			ScenarioSHA256 string             `json:"scenario_sha256"`
			GavelVersion   string             `json:"gavel_version"`
		} `json:"metadata"`
		Capacity struct {
			Free     map[string]int `json:"free"`
			Stranded map[string]int `json:"stranded"`
		} `json:"capacity"`
		Starting struct {
			Cells []struct {
				CellID string         `json:"cell_id"`
				Used   map[string]int `json:"used"`
			} `json:"cells"`
		} `json:"starting_distribution"`
		Placements []map[string]any `json:"placements"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	m := got.Metadata
	require.Equal(t, "prefer-full", m.Strategy.Name)
	require.Equal(t, strategy, m.Strategy.File)
	require.Equal(t, fileSHA(t, strategy), m.Strategy.SHA256)
	require.Equal(t, preferFullCells, m.Strategy.Source)
	require.Equal(t, map[string]float64{"w": 1, "starting_container_weight": 0.25, "bin_pack_first_fit_weight": 0, "max_inflight_starts": 0}, m.Parameters)
	require.Equal(t, int64(7), m.Seed)
	require.Equal(t, "testdata/issue4.json", m.ScenarioFile)
	require.Equal(t, fileSHA(t, "testdata/issue4.json"), m.ScenarioSHA256)
	require.NotEmpty(t, m.GavelVersion)
	require.Len(t, got.Placements, 2)
	require.Equal(t, map[string]int{"memory_mb": 60, "disk_mb": 60, "containers": 96}, got.Capacity.Free)
	require.Equal(t, map[string]int{"memory_mb": 0, "disk_mb": 0, "containers": 0}, got.Capacity.Stranded)
	require.Equal(t, "cell-1", got.Starting.Cells[0].CellID)
	require.Equal(t, map[string]int{"memory_mb": 20, "disk_mb": 20, "containers": 2}, got.Starting.Cells[0].Used)

	// A built-in strategy records its name and no file.
	out, err = execute(t, "sim", "run", "--scenario", "testdata/issue4.json", "--strategy", "spread", "--format", "json")
	require.NoError(t, err)
	var builtin struct {
		Metadata struct {
			Strategy map[string]string `json:"strategy"`
		} `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &builtin))
	require.Equal(t, map[string]string{"name": "spread"}, builtin.Metadata.Strategy)
}

func TestSimRefusesABadStrategyFile(t *testing.T) {
	bad := writeFile(t, "bad.yaml", "score: 'cell.memory_free_mb +'\n")
	_, err := execute(t, "sim", "run", "--scenario", "testdata/issue4.json", "--strategy", bad)
	require.ErrorContains(t, err, "--strategy: strategy file "+bad+": invalid strategy file: score: ERROR: <input>:1:22: Syntax error")
	_, err = execute(t, "sim", "compare", "--scenario", "testdata/issue4.json", "--strategy", bad)
	require.ErrorContains(t, err, "invalid strategy file: score:")
}

func TestSimCompareFormats(t *testing.T) {
	strategy := writeFile(t, "s.yaml", preferFullCells)
	scenario := writeFile(t, "gen.json", mustGenerate(t, "--cells", "20", "--zones", "2", "--memory-mb", "1024", "--apps", "5x4@128", "--seed", "4"))

	out, err := execute(t, "sim", "compare", "--scenario", scenario, "--strategy", "binpack", "--strategy", strategy, "--format", "json")
	require.NoError(t, err)
	var got struct {
		Runs []map[string]any `json:"runs"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got.Runs, 2, "only the --strategy values run")
	require.Equal(t, "binpack", got.Runs[0]["strategy"])
	require.Equal(t, "prefer-full", got.Runs[1]["strategy"])
	require.Equal(t, fileSHA(t, strategy), got.Runs[1]["strategy_sha256"])
	for _, r := range got.Runs {
		require.Equal(t, fileSHA(t, scenario), r["scenario_sha256"])
		require.Equal(t, 20.0, r["placed"])
		require.Contains(t, r, "stranded")
	}

	out, err = execute(t, "sim", "compare", "--scenario", scenario, "--strategies", "diego,spread", "--strategy", strategy, "--format", "csv")
	require.NoError(t, err)
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 4)
	require.Equal(t, "strategy", recs[0][0])
	require.Equal(t, []string{"diego", "spread", "prefer-full"}, []string{recs[1][0], recs[2][0], recs[3][0]})

	_, err = execute(t, "sim", "compare", "--scenario", scenario, "--format", "xml")
	require.EqualError(t, err, `--format: want text, json or csv, got "xml"`)
}

func TestSimSweep(t *testing.T) {
	strategy := writeFile(t, "s.yaml", preferFullCells)
	scenario := writeFile(t, "gen.json", mustGenerate(t, "--cells", "20", "--zones", "2", "--memory-mb", "1024", "--apps", "5x4@128", "--seed", "4"))
	out, stderr, err := executeBoth(t, "sim", "sweep", "--scenario", scenario, "--strategy", "diego", "--strategy", strategy,
		"--seeds", "1..5", "--param", "starting_container_weight=0,0.25,0.5", "--param", "w=-1,1")
	require.NoError(t, err)
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 1+2*5*3*2, "one row per (strategy, seed, parameter combination)")
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	seen := map[string]bool{}
	for _, rec := range recs[1:] {
		key := strings.Join([]string{rec[col["strategy"]], rec[col["seed"]], rec[col["param.starting_container_weight"]], rec[col["param.w"]]}, "/")
		require.False(t, seen[key], key)
		seen[key] = true
		require.Equal(t, fileSHA(t, scenario), rec[col["scenario_sha256"]])
		require.Equal(t, scenario, rec[col["scenario_file"]])
		require.NotEmpty(t, rec[col["gavel_version"]])
		require.NotEmpty(t, rec[col["param.max_inflight_starts"]])
		if rec[col["strategy"]] == "prefer-full" {
			require.Equal(t, fileSHA(t, strategy), rec[col["strategy_sha256"]])
		}
	}
	require.Len(t, seen, 60)
	require.Contains(t, stderr, "sweep: 60 runs")
	require.Contains(t, stderr, "sweep: 60/60 prefer-full seed 5")

	// JSON to a file.
	path := filepath.Join(t.TempDir(), "rows.json")
	_, _, err = executeBoth(t, "sim", "sweep", "--scenario", scenario, "--seeds", "3,4", "--format", "json", "--out", path)
	require.NoError(t, err)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var got struct {
		Runs []map[string]any `json:"runs"`
	}
	require.NoError(t, json.Unmarshal(raw, &got))
	require.Len(t, got.Runs, 2)
	require.Equal(t, "diego", got.Runs[0]["strategy"])
	require.Equal(t, 3.0, got.Runs[0]["seed"])
}

func TestSimSweepErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--seeds", "1..9000", "--param", "starting_container_weight=0,1"}, "sweep: grid: 1 strategies × 9000 seeds × 2 parameter combinations exceeds 10000 runs; narrow the seeds or the values"},
		{[]string{"--seeds", "x"}, `--seeds: seeds "x": "x" is not an integer`},
		{[]string{"--param", "alpha=1"}, "sweep: param alpha: no strategy of the sweep reads it"},
		{[]string{"--param", "alpha"}, `--param: param "alpha": want NAME=V1,V2,...`},
		{[]string{"--strategy", "nope"}, `--strategy: "nope" is neither a strategy`},
		{[]string{"--format", "xml"}, `--format: want csv or json, got "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			out, _, err := executeBoth(t, append([]string{"sim", "sweep", "--scenario", "testdata/issue4.json"}, tt.args...)...)
			require.ErrorContains(t, err, tt.want)
			require.Empty(t, out)
		})
	}
}
