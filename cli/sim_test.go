package cli

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// execute runs the gavel command with args and returns stdout and the error.
func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

func TestSimRunJSON(t *testing.T) {
	out, err := execute(t, "sim", "run", "--scenario", "testdata/issue4.json", "--format", "json")
	require.NoError(t, err)

	var got struct {
		Placements []map[string]any `json:"placements"`
		Failures   []map[string]any `json:"failures"`
		Metrics    map[string]any   `json:"metrics"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	require.NoError(t, dec.Decode(&got))
	require.False(t, dec.More(), "stdout holds exactly one JSON document")

	require.Len(t, got.Placements, 2)
	require.Equal(t, map[string]any{"kind": "lrp", "process_guid": "pg-7", "index": 0.0, "cell_id": "cell-1"}, got.Placements[0])
	require.Equal(t, map[string]any{"kind": "task", "task_guid": "tg-1", "cell_id": "cell-1"}, got.Placements[1])
	require.Len(t, got.Failures, 1)
	require.Equal(t, map[string]any{"kind": "lrp", "process_guid": "pg-8", "index": 1.0, "error": "insufficient resources: memory"}, got.Failures[0])
	require.Equal(t, 2.0, got.Metrics["placed"])
	require.Equal(t, 1.0, got.Metrics["failed"])
	require.Equal(t, 0.0, got.Metrics["distribution_score"])
	wall, ok := got.Metrics["wall_ms"].(float64)
	require.True(t, ok)
	require.GreaterOrEqual(t, wall, 0.0)
	require.Equal(t, map[string]any{"cell-1": map[string]any{"lrps": 1.0, "tasks": 1.0, "memory_used_mb": 20.0}}, got.Metrics["per_cell"])
	require.Equal(t, map[string]any{"z1": map[string]any{"lrps": 1.0, "tasks": 1.0}}, got.Metrics["per_zone"])
}

func TestSimRunText(t *testing.T) {
	out, err := execute(t, "sim", "run", "--scenario", "testdata/issue4.json", "--strategy", "spread", "--seed", "5")
	require.NoError(t, err)
	require.Contains(t, out, "Strategy spread (seed 5): placed 2 of 3 (1 failed) among 1 cells")
	require.Contains(t, out, "1 × insufficient resources: memory")
}

func TestSimErrors(t *testing.T) {
	bad := writeFile(t, "bad.json", `{"cells": [
		{"cell_id": "c0", "total": {"memory_mb": 1, "disk_mb": 1, "containers": 1}},
		{"cell_id": "c1", "total": {"memory_mb": 1, "disk_mb": 1, "containers": 1}},
		{"cell_id": "c2", "total": {"memory_mb": 1, "disk_mb": 1, "containers": 1}},
		{"cell_id": "c3", "total": {"memory_mb": 0, "disk_mb": 1, "containers": 1}}]}`)
	unknown := writeFile(t, "unknown.json", `{"cells": [], "lrps": [{"process_guid": "a", "memroy_mb": 1}]}`)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "bad field path", args: []string{"sim", "run", "--scenario", bad}, want: bad + ": invalid scenario: cells[3].total.memory_mb: must be > 0"},
		{name: "unknown field path", args: []string{"sim", "compare", "--scenario", unknown}, want: unknown + ": invalid scenario: lrps[0].memroy_mb: unknown field"},
		{name: "missing file", args: []string{"sim", "run", "--scenario", "/nonexistent.json"}, want: "read scenario: open /nonexistent.json: no such file or directory"},
		{name: "scenario flag required", args: []string{"sim", "run"}, want: `required flag(s) "scenario" not set`},
		{name: "bad format", args: []string{"sim", "run", "--scenario", "testdata/issue4.json", "--format", "xml"}, want: `--format: want text or json, got "xml"`},
		{name: "unknown strategy", args: []string{"sim", "run", "--scenario", "testdata/issue4.json", "--strategy", "magic"}, want: `--strategy: "magic" is neither a strategy (binpack, diego, spread) nor a strategy file: stat magic: no such file or directory`},
		{name: "empty strategy in list", args: []string{"sim", "compare", "--scenario", "testdata/issue4.json", "--strategies", "diego,,spread"}, want: `--strategies: empty strategy name in "diego,,spread"`},
		{name: "bad app mix", args: []string{"sim", "generate", "--apps", "lots"}, want: `--apps: app mix "lots": want COUNTxINSTANCES@MEMORY_MB, e.g. 10x4@256`},
		{name: "bad generate option", args: []string{"sim", "generate", "--fill", "2"}, want: "generate: fill: must be between 0 and 1"},
		{name: "stray argument", args: []string{"sim", "run", "extra", "--scenario", "testdata/issue4.json"}, want: `unknown command "extra" for "gavel sim run"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := execute(t, tt.args...)
			require.EqualError(t, err, tt.want)
			require.NotContains(t, err.Error(), "\n", "one-line reason")
			require.Empty(t, out, "nothing runs")
		})
	}
}

func TestSimCompare(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "cmp.svg")
	scenario := writeFile(t, "gen.json", mustGenerate(t, "--cells", "40", "--zones", "2", "--memory-mb", "1024", "--apps", "10x4@128,20x1@64", "--seed", "4"))
	out, err := execute(t, "sim", "compare", "--scenario", scenario, "--strategies", "diego,binpack,spread", "--svg", svg)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	require.Equal(t, []string{"STRATEGY", "PLACED", "FAILED", "DISTRIBUTION"}, strings.Fields(lines[0])[:4])
	for i, name := range []string{"diego", "binpack", "spread"} {
		fields := strings.Fields(lines[i+1])
		require.Equal(t, name, fields[0])
		require.Equal(t, "60", fields[1], "all 60 instances placed")
		require.Equal(t, "0", fields[2])
	}
	requireWellFormedSVG(t, svg, 3)
}

func TestSimRunSVG(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "run.svg")
	_, err := execute(t, "sim", "run", "--scenario", "testdata/issue4.json", "--svg", svg)
	require.NoError(t, err)
	requireWellFormedSVG(t, svg, 1)
}

// --svg-apps names the apps whose spread the figure draws.
func TestSimRunSVGApps(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "run.svg")
	_, err := execute(t, "sim", "run", "--scenario", "testdata/issue4.json", "--svg", svg, "--svg-apps", "pg-1,pg-8")
	require.NoError(t, err)
	data, err := os.ReadFile(svg)
	require.NoError(t, err)
	require.Contains(t, string(data), `<g class="spread" data-app="pg-1">`)
	require.Contains(t, string(data), `<g class="spread" data-app="pg-8">`)
	require.NotContains(t, string(data), `data-app="pg-7"`)
}

func TestSimGenerate(t *testing.T) {
	out := mustGenerate(t, "--cells", "12", "--zones", "3", "--memory-mb", "2048", "--fill", "0.8", "--apps", "2x3@256", "--tasks", "2", "--seed", "9")
	var s struct {
		Options map[string]any   `json:"options"`
		Cells   []map[string]any `json:"cells"`
		LRPs    []map[string]any `json:"lrps"`
		Tasks   []map[string]any `json:"tasks"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &s))
	require.Len(t, s.Cells, 12)
	require.Len(t, s.LRPs, 6)
	require.Len(t, s.Tasks, 2)
	require.Equal(t, 9.0, s.Options["seed"])
	require.Equal(t, out, mustGenerate(t, "--cells", "12", "--zones", "3", "--memory-mb", "2048", "--fill", "0.8", "--apps", "2x3@256", "--tasks", "2", "--seed", "9"), "same seed, same output")

	// The generated file runs.
	path := writeFile(t, "gen.json", out)
	res, err := execute(t, "sim", "run", "--scenario", path, "--format", "json")
	require.NoError(t, err)
	require.Contains(t, res, `"placed": 8`)
}

func mustGenerate(t *testing.T, args ...string) string {
	t.Helper()
	out, err := execute(t, append([]string{"sim", "generate"}, args...)...)
	require.NoError(t, err)
	return out
}

// requireWellFormedSVG parses the file as XML and counts its panels.
func requireWellFormedSVG(t *testing.T, path string, panels int) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	dec := xml.NewDecoder(f)
	root, groups := "", 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
		}
		for _, a := range se.Attr {
			if se.Name.Local == "g" && a.Name.Local == "transform" {
				groups++
			}
		}
	}
	require.Equal(t, "svg", root)
	require.Equal(t, panels, groups)
}
