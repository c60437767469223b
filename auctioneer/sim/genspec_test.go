package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const mixedSpec = `{
  "seed": 11,
  "cell_groups": [
    {"name": "small", "count": 40, "memory_mb": 4096, "containers": 100, "zones": ["z1", "z2", "z3", "z4"], "zone_weights": [2, 1, 1, 0]},
    {"name": "gpu", "count": 10, "memory_mb": 32768, "disk_mb": 100000, "containers": 50, "zones": ["z1", "z2"],
     "placement_tags": ["gpu"], "rootfs_providers": {"docker": []}, "volume_drivers": ["nfs"], "fill": 0.5, "fill_memory_mb": 1024}
  ],
  "workloads": [
    {"name": "web", "apps": 200, "instances": {"dist": "choice", "values": [1, 2, 10], "weights": [6, 3, 1]},
     "memory_mb": {"dist": "choice", "values": [256, 1024], "weights": [3, 1]}, "disk_mb": {"dist": "uniform", "min": 512, "max": 2048}},
    {"name": "ml", "apps": 5, "instances": 3, "memory_mb": {"dist": "normal", "mean": 8192, "stddev": 2048, "min": 4096, "max": 16384},
     "placement_tags": ["gpu"], "rootfs": "docker:///ml", "task_fraction": 0.5}
  ]
}`

func generateSpec(t *testing.T, text string, isYAML bool) *Scenario {
	t.Helper()
	spec, err := ParseGenSpec([]byte(text), isYAML)
	require.NoError(t, err)
	s, err := GenerateFromSpec(spec)
	require.NoError(t, err)
	return s
}

func TestGenSpecIsDeterministicForASeed(t *testing.T) {
	a, err := json.Marshal(generateSpec(t, mixedSpec, false))
	require.NoError(t, err)
	b, err := json.Marshal(generateSpec(t, mixedSpec, false))
	require.NoError(t, err)
	require.Equal(t, string(a), string(b), "the same spec and seed give the same scenario")

	other := generateSpec(t, strings.Replace(mixedSpec, `"seed": 11`, `"seed": 12`, 1), false)
	c, err := json.Marshal(other)
	require.NoError(t, err)
	require.NotEqual(t, string(a), string(c), "another seed draws other sizes")
	require.EqualValues(t, 12, other.Options.Seed)

	// What it writes is a scenario gavel sim run reads back as is.
	back, err := Parse(a)
	require.NoError(t, err)
	require.Equal(t, generateSpec(t, mixedSpec, false), back)
}

func TestGenSpecReadsYAMLAsJSON(t *testing.T) {
	yamlSpec := `
seed: 11
cell_groups:
  - {name: small, count: 40, memory_mb: 4096, containers: 100, zones: [z1, z2, z3, z4], zone_weights: [2, 1, 1, 0]}
  - name: gpu
    count: 10
    memory_mb: 32768
    disk_mb: 100000
    containers: 50
    zones: [z1, z2]
    placement_tags: [gpu]
    rootfs_providers: {docker: []}
    volume_drivers: [nfs]
    fill: 0.5
    fill_memory_mb: 1024
workloads:
  - name: web
    apps: 200
    instances: {dist: choice, values: [1, 2, 10], weights: [6, 3, 1]}
    memory_mb: {dist: choice, values: [256, 1024], weights: [3, 1]}
    disk_mb: {dist: uniform, min: 512, max: 2048}
  - {name: ml, apps: 5, instances: 3, memory_mb: {dist: normal, mean: 8192, stddev: 2048, min: 4096, max: 16384}, placement_tags: [gpu], rootfs: "docker:///ml", task_fraction: 0.5}
`
	require.Equal(t, generateSpec(t, mixedSpec, false), generateSpec(t, yamlSpec, true))
}

func TestGenSpecProportionsHold(t *testing.T) {
	s := generateSpec(t, mixedSpec, false)
	groups := map[string]int{}
	zones := map[string]map[string]int{}
	for _, c := range s.Cells {
		g, _, _ := strings.Cut(c.CellID, "-")
		groups[g]++
		if zones[g] == nil {
			zones[g] = map[string]int{}
		}
		zones[g][c.Zone]++
		switch g {
		case "small":
			require.Equal(t, Capacity{MemoryMB: 4096, DiskMB: 8192, Containers: 100}, c.Total, "disk defaults to twice the memory")
			require.Empty(t, c.PlacementTags)
			require.Equal(t, DefaultRootFSProviders(), c.RootFSProviders)
			require.Empty(t, c.LRPs)
		case "gpu":
			require.Equal(t, []string{"gpu"}, c.PlacementTags)
			require.Equal(t, map[string][]string{"docker": {}}, c.RootFSProviders)
			require.Equal(t, []string{"nfs"}, c.VolumeDrivers)
			require.Len(t, c.LRPs, 16, "half of 32768 MB in 1024 MB instances")
		}
	}
	require.Equal(t, map[string]int{"small": 40, "gpu": 10}, groups)
	require.Equal(t, map[string]int{"z1": 20, "z2": 10, "z3": 10}, zones["small"], "weights 2:1:1:0")
	require.Equal(t, map[string]int{"z1": 5, "z2": 5}, zones["gpu"])

	// Dealing keeps each zone within one cell of its share at every prefix.
	dealt := make([]float64, 3)
	weights := []float64{2, 1, 1}
	for i := range 101 {
		dealZone(dealt, weights, i)
		for z, w := range weights {
			require.InDelta(t, float64(i+1)*w/4, dealt[z], 1, "after %d cells, zone %d", i+1, z)
		}
	}

	apps := map[string]int{}
	sizes := map[int]int{}
	var mlTasks, ml int
	for _, l := range s.LRPs {
		w, _, _ := strings.Cut(l.ProcessGUID, "-")
		if w == "web" {
			apps[l.ProcessGUID]++
			if l.Index == 0 {
				sizes[l.MemoryMB]++
			}
			require.GreaterOrEqual(t, l.DiskMB, 512)
			require.LessOrEqual(t, l.DiskMB, 2048)
		} else {
			ml++
			require.Equal(t, []string{"gpu"}, l.PlacementTags)
			require.Equal(t, "docker:///ml", l.RootFS)
			require.GreaterOrEqual(t, l.MemoryMB, 4096)
			require.LessOrEqual(t, l.MemoryMB, 16384)
			require.Equal(t, l.MemoryMB, l.DiskMB, "disk defaults to the memory")
		}
	}
	for _, tk := range s.Tasks {
		require.True(t, strings.HasPrefix(tk.TaskGUID, "ml-task-"))
		mlTasks++
	}
	require.Equal(t, 15, ml, "5 apps of 3")
	require.Equal(t, 15, mlTasks, "task_fraction 0.5: as many tasks as instances")
	require.Len(t, apps, 200)
	counts := map[int]int{}
	for _, n := range apps {
		counts[n]++
	}
	// 200 draws of weights 6:3:1 and 3:1: each share within 4 standard
	// deviations of a binomial's (sqrt(200 × p × (1-p)) ≤ 7.1).
	for n, p := range map[int]float64{1: 0.6, 2: 0.3, 10: 0.1} {
		require.InDelta(t, 200*p, counts[n], 4*math.Sqrt(200*p*(1-p)), "apps of %d instances", n)
	}
	require.InDelta(t, 150, sizes[256], 4*math.Sqrt(200*0.75*0.25))
	require.Equal(t, 200, sizes[256]+sizes[1024])
}

func TestGenSpecErrorsNameTheField(t *testing.T) {
	group := `{"name": "g", "count": 2, "memory_mb": 1024, "containers": 10}`
	for _, tc := range []struct {
		name, spec string
		want       []string
	}{
		{"no cells", `{"workloads": []}`, []string{"cell_groups: give at least one cell group"}},
		{"unknown top field", `{"cell_groups": [` + group + `], "cels": 1}`, []string{"cels: unknown field"}},
		{"unknown group field", `{"cell_groups": [{"name": "g", "count": 2, "memroy_mb": 1}]}`, []string{"cell_groups[0].memroy_mb: unknown field"}},
		{"wrong type", `{"cell_groups": [` + group + `, {"name": "h", "count": "many"}]}`, []string{"cell_groups[1].count: must be a number"}},
		{"bad group values", `{"cell_groups": [{"name": "", "count": 0, "memory_mb": -1, "containers": 0, "fill": 2}]}`,
			[]string{"cell_groups[0].name: is required", "cell_groups[0].count: must be between 1 and 100000 (got 0)", "cell_groups[0].memory_mb: must be between 1", "cell_groups[0].fill: must be between 0 and 1"}},
		{"duplicate name", `{"cell_groups": [` + group + `, ` + group + `]}`, []string{`cell_groups[1].name: duplicate "g" (also cell_groups[0].name)`}},
		{"weights per zone", `{"cell_groups": [{"name": "g", "count": 2, "memory_mb": 1024, "containers": 10, "zones": ["a", "b"], "zone_weights": [1]}]}`,
			[]string{"cell_groups[0].zone_weights: must hold one weight per zone (2; got 1)"}},
		{"zero weights", `{"cell_groups": [{"name": "g", "count": 2, "memory_mb": 1024, "containers": 10, "zones": ["a"], "zone_weights": [0]}]}`,
			[]string{"cell_groups[0].zone_weights: must add up to more than 0"}},
		{"empty tag", `{"cell_groups": [{"name": "g", "count": 2, "memory_mb": 1024, "containers": 10, "placement_tags": ["a", ""]}]}`,
			[]string{"cell_groups[0].placement_tags[1]: must be 1 to 256 bytes"}},
		{"no memory", `{"cell_groups": [` + group + `], "workloads": [{"name": "w", "apps": 1}]}`, []string{"workloads[0].memory_mb: is required"}},
		{"no work", `{"cell_groups": [` + group + `], "workloads": [{"name": "w", "memory_mb": 1}]}`, []string{"workloads[0]: give apps or tasks"}},
		{"bad dist kind", `{"cell_groups": [` + group + `], "workloads": [{"name": "w", "apps": 1, "memory_mb": {"dist": "zipf"}}]}`,
			[]string{`workloads[0].memory_mb.dist: must be constant, uniform, choice or normal (got "zipf")`}},
		{"bad dist field", `{"cell_groups": [` + group + `], "workloads": [{"name": "w", "apps": 1, "memory_mb": {"dist": "uniform", "min": 1, "mx": 2}}]}`,
			[]string{"workloads[0].memory_mb.mx: unknown field"}},
		{"dist not a number", `{"cell_groups": [` + group + `], "workloads": [{"name": "w", "apps": 1, "memory_mb": "big"}]}`,
			[]string{`workloads[0].memory_mb: must be an integer or a distribution object, got "big"`}},
		{"uniform upside down", `{"cell_groups": [` + group + `], "workloads": [{"name": "w", "apps": 1, "memory_mb": {"dist": "uniform", "min": 9, "max": 3}}]}`,
			[]string{"workloads[0].memory_mb.max: must be >= min (9; got 3)"}},
		{"choice weights", `{"cell_groups": [` + group + `], "workloads": [{"name": "w", "apps": 1, "memory_mb": {"dist": "choice", "values": [1, 2], "weights": [1, -1]}}]}`,
			[]string{"workloads[0].memory_mb.weights[1]: must be a finite number >= 0"}},
		{"too many instances", `{"cell_groups": [` + group + `], "workloads": [{"name": "w", "apps": 1, "instances": 10001, "memory_mb": 1}]}`,
			[]string{"workloads[0].instances: must be between 1 and 10000 (got 10001)"}},
		{"tasks twice", `{"cell_groups": [` + group + `], "workloads": [{"name": "w", "tasks": 3, "task_fraction": 0.5, "memory_mb": 1}]}`,
			[]string{"workloads[0].task_fraction: give tasks or task_fraction, not both"}},
		{"task fraction 1", `{"cell_groups": [` + group + `], "workloads": [{"name": "w", "apps": 1, "task_fraction": 1, "memory_mb": 1}]}`,
			[]string{"workloads[0].task_fraction: must be at least 0 and below 1"}},
		{"malformed", `{"cell_groups": [`, []string{"malformed JSON"}},
		{"bad yaml", "\tcell_groups: x", []string{"not valid YAML"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseGenSpec([]byte(tc.spec), tc.name == "bad yaml")
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalidSpec))
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestGenSpecIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name, spec, want string
	}{
		{"cells", `{"cell_groups": [{"name": "a", "count": 60000, "memory_mb": 1, "containers": 1}, {"name": "b", "count": 60000, "memory_mb": 1, "containers": 1}]}`,
			"cell_groups: must add up to at most 100000 cells (got 120000)"},
		{"existing work", `{"cell_groups": [{"name": "a", "count": 1000, "memory_mb": 1, "containers": 2000, "fill": 0.5}]}`,
			"cell_groups: filled groups' count × containers (the existing instances they may hold) must add up to at most 1000000 (got 2000000)"},
		{"instances", `{"cell_groups": [{"name": "a", "count": 1, "memory_mb": 1, "containers": 1}], "workloads": [{"name": "w", "apps": 1000, "instances": {"dist": "uniform", "min": 1, "max": 1001}, "memory_mb": 1}]}`,
			"workloads: apps × their largest instance count must add up to at most 1000000 (got 1001000)"},
		{"tasks", `{"cell_groups": [{"name": "a", "count": 1, "memory_mb": 1, "containers": 1}], "workloads": [{"name": "w", "apps": 600000, "task_fraction": 0.5, "memory_mb": 1}, {"name": "v", "tasks": 500000, "memory_mb": 1}]}`,
			"workloads: tasks must add up to at most 1000000 (got 1100000)"},
		{"groups", `{"cell_groups": [` + strings.Repeat(`{},`, MaxSpecGroups) + `{}]}`, fmt.Sprintf("cell_groups: must hold at most %d items (got %d)", MaxSpecGroups, MaxSpecGroups+1)},
		{"file", `{"seed": 1` + strings.Repeat(" ", MaxSpecBytes) + `}`, fmt.Sprintf("a generator spec must be at most %d bytes", MaxSpecBytes)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseGenSpec([]byte(tc.spec), false)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
