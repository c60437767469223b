package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/auctioneer/sim"
)

func TestSimCaptureRefusesBadFlagsBeforeConnecting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--work", "all"}, `--work: must be none, desired or unplaced (got "all")`},
		{[]string{"--work", "desired"}, "--work desired places every desired instance, and the running ones would count twice: add --existing clear"},
		{[]string{"--existing", "drop"}, `--existing: must be keep or clear (got "drop")`},
		{[]string{"--max-cells", "0"}, "--max-cells: must be between 1 and 100000 (got 0)"},
		{[]string{"--max-work", "2000000"}, "--max-work: must be between 1 and 1000000 (got 2000000)"},
		{[]string{"--workers", "0"}, "--workers: must be between 1 and 1000 (got 0)"},
		{[]string{"--cell-timeout", "0s"}, "--cell-timeout: must be > 0"},
		{[]string{"--replace", ""}, "replace[0]: a process guid must be 1 to 256 bytes"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			// No BBS listens there: the flags are refused before any call.
			_, err := execute(t, append([]string{"sim", "capture", "--bbs-address", "127.0.0.1:1"}, tc.args...)...)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// Against a real BBS with no cells: the desired LRPs and the pending task
// become the work, in guid and index order, and the file is a scenario
// gavel sim run reads (with no cell, it places nothing).
func TestSimCaptureReadsTheDesiredWorkFromTheBBS(t *testing.T) {
	addr := startBBS(t)
	_, err := gavel(t, addr, "push", "web", "--command", "exec ./server", "--instances", "3", "--memory", "128M", "--disk", "256M", "--tag", "blue")
	require.NoError(t, err)
	_, err = gavel(t, addr, "push", "api", "--command", "exec ./server", "--instances", "1", "--memory", "64M")
	require.NoError(t, err)
	_, err = gavel(t, addr, "run-task", "build", "--command", "true", "--guid", "build-1", "--memory", "32M")
	require.NoError(t, err)

	path := filepath.Join(t.TempDir(), "s.json")
	_, err = gavel(t, addr, "sim", "capture", "--work", "desired", "--existing", "clear", "--seed", "5", "--strategy", "binpack", "-o", path)
	require.NoError(t, err)
	s, err := loadScenario(path)
	require.NoError(t, err)
	require.Empty(t, s.Cells)
	require.Equal(t, sim.ScenarioOptions{Strategy: "binpack", StartingContainerWeight: 0.25, Seed: 5}, s.Options)
	var lrps []string
	for _, l := range s.LRPs {
		lrps = append(lrps, fmt.Sprintf("%s.%d:%d/%d%v", l.ProcessGUID, l.Index, l.MemoryMB, l.DiskMB, l.PlacementTags))
	}
	require.Equal(t, []string{"api.0:64/128[]", "web.0:128/256[blue]", "web.1:128/256[blue]", "web.2:128/256[blue]"}, lrps)
	require.Len(t, s.Tasks, 1)
	require.Equal(t, "build-1", s.Tasks[0].TaskGUID)
	require.Equal(t, 32, s.Tasks[0].MemoryMB)

	out, err := gavel(t, addr, "sim", "capture", "--work", "unplaced", "--max-work", "3")
	require.ErrorContains(t, err, "the cluster desires more than --max-work 3 LRP instances")
	require.Empty(t, out)

	out, err = gavel(t, addr, "sim", "capture")
	require.NoError(t, err)
	require.Contains(t, out, `"cells": []`)
	require.Contains(t, out, `"lrps": []`, "--work none places nothing")
}

func TestSimGenerateFromSpec(t *testing.T) {
	spec := writeFile(t, "mix.yaml", `
seed: 3
cell_groups:
  - {name: big, count: 4, memory_mb: 8192, containers: 100, zones: [z1, z2]}
  - {name: small, count: 2, memory_mb: 2048, containers: 20, placement_tags: [edge]}
workloads:
  - {name: web, apps: 5, instances: {dist: uniform, min: 1, max: 4}, memory_mb: {dist: choice, values: [128, 512]}}
  - {name: jobs, tasks: 3, memory_mb: 256, placement_tags: [edge]}
`)
	out, err := execute(t, "sim", "generate", "--spec", spec)
	require.NoError(t, err)
	s, err := sim.Parse([]byte(out))
	require.NoError(t, err)
	require.Len(t, s.Cells, 6)
	require.EqualValues(t, 3, s.Options.Seed)
	require.Len(t, s.Tasks, 3)

	again, err := execute(t, "sim", "generate", "--spec", spec)
	require.NoError(t, err)
	require.Equal(t, out, again)
	reseeded, err := execute(t, "sim", "generate", "--spec", spec, "--seed", "4")
	require.NoError(t, err)
	require.Contains(t, reseeded, `"seed": 4`)

	_, err = execute(t, "sim", "generate", "--spec", spec, "--cells", "3", "--fill", "0.2")
	require.ErrorContains(t, err, "--spec: the spec describes the cells and the work; drop --cells, --fill")

	bad := writeFile(t, "bad.json", `{"cell_groups": [{"name": "g", "count": 1, "memory_mb": 1024, "containers": 0}]}`)
	_, err = execute(t, "sim", "generate", "--spec", bad)
	require.ErrorContains(t, err, bad+": invalid generator spec: cell_groups[0].containers: must be between 1")
	_, err = execute(t, "sim", "generate", "--spec", filepath.Join(t.TempDir(), "missing.json"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
