package sim

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/auctioneer"
)

func loadIssueExample(t *testing.T) *Scenario {
	t.Helper()
	data, err := os.ReadFile("testdata/issue4.json")
	require.NoError(t, err)
	s, err := Parse(data)
	require.NoError(t, err)
	return s
}

func TestRunIssueExample(t *testing.T) {
	r, err := Run(loadIssueExample(t), RunOptions{})
	require.NoError(t, err)
	require.Equal(t, "diego", r.Strategy)
	require.Equal(t, 3, r.Requested)
	require.Equal(t, 2, r.Placed)
	require.Equal(t, 1, r.Failed)
	require.Equal(t, "insufficient resources: memory", r.Failures[0].Message)
	require.Equal(t, []CellReport{{
		CellID: "cell-1", Zone: "z1", Total: Capacity{MemoryMB: 100, DiskMB: 100, Containers: 100},
		ExistingMemoryMB: 20, ExistingDiskMB: 20, ExistingLRPs: 1, ExistingTasks: 1,
		PlacedMemoryMB: 20, PlacedDiskMB: 20, PlacedLRPs: 1, PlacedTasks: 1,
		Free: Capacity{MemoryMB: 60, DiskMB: 60, Containers: 96},
	}}, r.Cells)
	require.Equal(t, []ZoneReport{{Zone: "z1", Cells: 1, TotalMemoryMB: 100, ExistingMemoryMB: 20, PlacedMemoryMB: 20, PlacedLRPs: 1, PlacedTasks: 1}}, r.Zones)
	require.Equal(t, 60, r.FreeMemoryMB)
	require.Zero(t, r.StrandedMemoryMB, "60 MB free fits the 10 MB requests")
}

func TestJSONReportShape(t *testing.T) {
	r, err := Run(loadIssueExample(t), RunOptions{})
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, r.WriteJSON(&buf))

	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	require.ElementsMatch(t, []string{"placements", "failures", "metrics", "metadata", "capacity", "starting_distribution"}, keys(got))
	require.Equal(t, []any{
		map[string]any{"kind": "lrp", "process_guid": "pg-7", "index": 0.0, "cell_id": "cell-1"},
		map[string]any{"kind": "task", "task_guid": "tg-1", "cell_id": "cell-1"},
	}, got["placements"])
	require.Equal(t, []any{
		map[string]any{"kind": "lrp", "process_guid": "pg-8", "index": 1.0, "error": "insufficient resources: memory"},
	}, got["failures"])
	metrics := got["metrics"].(map[string]any)
	require.ElementsMatch(t, []string{"placed", "failed", "distribution_score", "wall_ms", "per_cell", "per_zone"}, keys(metrics))
	require.Equal(t, 2.0, metrics["placed"])
	require.Equal(t, 1.0, metrics["failed"])
	require.Equal(t, 0.0, metrics["distribution_score"])
	require.GreaterOrEqual(t, metrics["wall_ms"], 0.0)
	require.Equal(t, map[string]any{"cell-1": map[string]any{"lrps": 1.0, "tasks": 1.0, "memory_used_mb": 20.0}}, metrics["per_cell"])
	require.Equal(t, map[string]any{"z1": map[string]any{"lrps": 1.0, "tasks": 1.0}}, metrics["per_zone"])
}

func TestEmptyJSONListsAreArrays(t *testing.T) {
	s, err := Parse([]byte(`{"cells": []}`))
	require.NoError(t, err)
	r, err := Run(s, RunOptions{})
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, r.WriteJSON(&buf))
	require.Contains(t, buf.String(), `"placements": []`)
	require.Contains(t, buf.String(), `"failures": []`)
}

func TestDistributionAndStranded(t *testing.T) {
	doc := `{"options": {"strategy": "spread"},
		"cells": [
			{"cell_id": "a", "total": {"memory_mb": 100, "disk_mb": 100, "containers": 10}, "lrps": [{"process_guid": "x", "memory_mb": 20}]},
			{"cell_id": "b", "total": {"memory_mb": 100, "disk_mb": 100, "containers": 1}, "lrps": [{"process_guid": "y", "memory_mb": 40}]},
			{"cell_id": "c", "total": {"memory_mb": 100, "disk_mb": 100, "containers": 20}, "lrps": [{"process_guid": "z", "memory_mb": 60}]},
			{"cell_id": "d", "evacuating": true, "total": {"memory_mb": 100, "disk_mb": 100, "containers": 10}}
		],
		"lrps": [{"process_guid": "big", "memory_mb": 30}, {"process_guid": "small", "memory_mb": 20}]}`
	s, err := Parse([]byte(doc))
	require.NoError(t, err)
	r, err := Run(s, RunOptions{})
	require.NoError(t, err)
	// spread, b has no container slot. big: a (0.5 + 0 + 0.2)/3 = 0.233 beats
	// c (0.9 + 0 + 0.1)/3 = 0.333. small: c (0.8 + 0 + 0.1)/3 = 0.3 beats
	// a (0.7 + 0 + 0.3)/3 = 0.333.
	require.Equal(t, []int{30, 0, 20, 0}, []int{r.Cells[0].PlacedMemoryMB, r.Cells[1].PlacedMemoryMB, r.Cells[2].PlacedMemoryMB, r.Cells[3].PlacedMemoryMB})
	// In use after: 50, 40, 80 (d is evacuating, left out): mean 56.67,
	// population stddev sqrt((44.44 + 277.78 + 544.44) / 3) = 17.00, score 0.3000.
	require.InDelta(t, 0.29995, r.DistributionScore, 1e-4)
	// Before: 20, 40, 60: mean 40, stddev 16.33, score 0.4082.
	require.InDelta(t, 0.4082, r.InitialDistributionScore, 1e-4)
	// Free: a 50, b 60, c 20. The smallest request is 20 MB: only b, with no
	// container slot, strands its memory.
	require.Equal(t, 130, r.FreeMemoryMB)
	require.Equal(t, 60, r.StrandedMemoryMB)
	require.Equal(t, 60, r.Cells[1].StrandedMemoryMB)
}

func TestRunOverrides(t *testing.T) {
	s := loadIssueExample(t)
	seed := int64(99)
	r, err := Run(s, RunOptions{Strategy: "binpack", Seed: &seed})
	require.NoError(t, err)
	require.Equal(t, "binpack", r.Strategy)
	require.Equal(t, int64(99), r.Seed)

	_, err = Run(s, RunOptions{Strategy: "nope"})
	require.ErrorContains(t, err, `unknown strategy "nope" (known: binpack, diego, spread)`)
}

func TestCompareOneRowPerStrategy(t *testing.T) {
	s, err := Generate(GenerateOptions{Cells: 30, Zones: 3, MemoryMB: 1024, Containers: 100, Fill: 0.5,
		Apps: []AppMix{{Count: 10, Instances: 3, MemoryMB: 64}}, Seed: 3})
	require.NoError(t, err)
	reports, err := Compare(s, []string{"diego", "binpack", "spread"}, RunOptions{})
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, WriteCompareTable(&buf, reports))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 4)
	require.True(t, strings.HasPrefix(lines[0], "STRATEGY"))
	for i, name := range []string{"diego", "binpack", "spread"} {
		require.Equal(t, name, strings.Fields(lines[i+1])[0])
		require.Equal(t, "30", strings.Fields(lines[i+1])[1], "every strategy places all 30 instances")
	}
	// Identical workload: binpack uses fewer cells than spread.
	used := func(r *Report) (n int) {
		for _, c := range r.Cells {
			if c.PlacedLRPs > 0 {
				n++
			}
		}
		return n
	}
	require.Less(t, used(reports[1]), used(reports[2]))
}

func TestSVGIsWellFormed(t *testing.T) {
	s, err := Generate(GenerateOptions{Cells: 1000, Zones: 3, MemoryMB: 4096, Containers: 250, Fill: 0.6,
		Apps: []AppMix{{Count: 50, Instances: 4, MemoryMB: 256}, {Count: 5, Instances: 2, MemoryMB: 8192}}, Seed: 1})
	require.NoError(t, err)
	s.Cells[7].Evacuating = true
	s.Cells[8].CellID = `cell-<8>&"quoted"`
	reports, err := Compare(s, []string{"diego", "spread"}, RunOptions{})
	require.NoError(t, err)
	require.NotZero(t, reports[0].Failed, "the 8 GB instances fit nowhere and are listed")

	var buf bytes.Buffer
	require.NoError(t, WriteSVG(&buf, reports...))
	dec := xml.NewDecoder(&buf)
	histograms, panels := 0, 0
	var root string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
				require.Equal(t, "http://www.w3.org/2000/svg", se.Name.Space)
			}
			if se.Name.Local == "g" {
				for _, a := range se.Attr {
					if a.Name.Local == "transform" {
						panels++
					}
					if a.Name.Local == "class" && a.Value == "histogram" {
						histograms++
					}
				}
			}
		}
	}
	require.Equal(t, "svg", root)
	require.Equal(t, 2, panels)
	require.Equal(t, 2*3*3, histograms, "1,000 cells: one histogram per resource per zone per panel")
}

func TestGenerate(t *testing.T) {
	o := GenerateOptions{Cells: 20, Zones: 3, MemoryMB: 2048, Containers: 50, Fill: 0.5,
		Apps: []AppMix{{Count: 4, Instances: 3, MemoryMB: 256}, {Count: 2, Instances: 1, MemoryMB: 512}}, Tasks: 5, TaskMemoryMB: 128, Seed: 7}
	s, err := Generate(o)
	require.NoError(t, err)
	again, err := Generate(o)
	require.NoError(t, err)
	require.Equal(t, s, again, "same seed, same scenario")

	require.Len(t, s.Cells, 20)
	require.Len(t, s.LRPs, 4*3+2)
	require.Len(t, s.Tasks, 5)
	require.Equal(t, "z1", s.Cells[0].Zone)
	require.Equal(t, "z3", s.Cells[2].Zone)
	require.Equal(t, "z1", s.Cells[3].Zone)
	for _, c := range s.Cells {
		used := c.used().MemoryMB
		require.LessOrEqual(t, used, 1228, c.CellID)
		require.GreaterOrEqual(t, used, 819-256, c.CellID)
	}

	// The generated scenario is a valid scenario file.
	data, err := json.Marshal(s)
	require.NoError(t, err)
	parsed, err := Parse(data)
	require.NoError(t, err)
	require.Equal(t, s, parsed)
}

func TestGenerateOptionErrors(t *testing.T) {
	base := GenerateOptions{Cells: 1, Zones: 1, MemoryMB: 1, Containers: 1, Apps: []AppMix{{1, 1, 1}}}
	tests := []struct {
		name string
		mod  func(*GenerateOptions)
		want string
	}{
		{name: "no cells", mod: func(o *GenerateOptions) { o.Cells = 0 }, want: "generate: cells: must be > 0"},
		{name: "no zones", mod: func(o *GenerateOptions) { o.Zones = 0 }, want: "generate: zones: must be > 0"},
		{name: "fill above 1", mod: func(o *GenerateOptions) { o.Fill = 1.2 }, want: "generate: fill: must be between 0 and 1"},
		{name: "no work", mod: func(o *GenerateOptions) { o.Apps = nil }, want: "generate: apps: give at least one app or task"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.mod(&o)
			_, err := Generate(o)
			require.EqualError(t, err, tt.want)
		})
	}
}

func TestParseAppMix(t *testing.T) {
	tests := []struct {
		spec    string
		want    []AppMix
		wantErr string
	}{
		{spec: "40x4@256, 1x10@1024", want: []AppMix{{40, 4, 256}, {1, 10, 1024}}},
		{spec: "4@256", wantErr: `app mix "4@256": want COUNTxINSTANCES@MEMORY_MB, e.g. 10x4@256`},
		{spec: "1x0@256", wantErr: `app mix "1x0@256": instances must be a positive integer`},
		{spec: " , ", wantErr: "app mix: empty"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseAppMix(tt.spec)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestTextReport(t *testing.T) {
	r, err := Run(loadIssueExample(t), RunOptions{})
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, r.WriteText(&buf))
	out := buf.String()
	require.Contains(t, out, "Strategy diego (seed 0): placed 2 of 3 (1 failed) among 1 cells")
	require.Contains(t, out, "Distribution score 0.0000 (before: 0.0000); free memory 60 MB, stranded 0 MB")
	require.Contains(t, out, "Free: 60 MB memory, 60 MB disk, 96 containers; stranded on 0 cells: 0 MB memory, 0 MB disk, 0 containers")
	require.Regexp(t, `cell-1\s+z1\s+100\s+20\s+20\s+60\s+60\s+96\s+1\s+1\s+########\+{8}\.{24}`, out)
	require.Contains(t, out, "1 × insufficient resources: memory\n      e.g. pg-8.1\n      cells turned down: 1 insufficient memory")
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The streamed JSON report is byte for byte what encoding/json writes for
// Report.JSON, escapes included, with and without placements and failures.
func TestWriteJSONMatchesEncoder(t *testing.T) {
	lrp := auctioneer.KindLRP
	task := auctioneer.KindTask
	cases := map[string]*Report{
		"empty": {Strategy: "diego", Cells: []CellReport{{CellID: "c"}}, Zones: []ZoneReport{{Zone: ""}}},
		"full": {
			Strategy: "diego", Placed: 3, Failed: 2, DistributionScore: 0.25, Wall: 1500 * time.Microsecond,
			Cells: []CellReport{{CellID: "c<1>", Zone: "z&1", PlacedLRPs: 2, PlacedMemoryMB: 64}, {CellID: "c2"}},
			Zones: []ZoneReport{{Zone: "z&1", PlacedLRPs: 2}},
			Placements: []auctioneer.Placement{
				{Kind: lrp, ProcessGUID: "app-\"1\"", Index: 0, CellID: "c<1>"},
				{Kind: lrp, ProcessGUID: "", Index: 3, CellID: "c2"},
				{Kind: task, TaskGUID: "t\u00e9\u2028\n", CellID: "c2"},
			},
			Failures: []auctioneer.Failure{
				{Kind: lrp, ProcessGUID: "p", Index: 7, Message: "found no compatible cell & <more>"},
				{Kind: task, TaskGUID: "t\\x", Message: "insufficient resources: memory"},
			},
		},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetIndent("", "  ")
			require.NoError(t, enc.Encode(r.FullJSON()))
			var got bytes.Buffer
			require.NoError(t, r.WriteJSON(&got))
			require.Equal(t, want.String(), got.String())
		})
	}
}
