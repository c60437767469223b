package sim

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/auctioneer/strategyfile"
)

// strandScenario has three cells after the run: one with room, one with
// 50 MB free (less than the 64 MB smallest request) and one whose
// container slots are all used.
func strandScenario() *Scenario {
	cell := func(id string, mem, containers int, used int) Cell {
		c := Cell{CellID: id, Zone: "z1", Total: Capacity{MemoryMB: mem, DiskMB: 10000, Containers: containers},
			RootFSProviders: DefaultRootFSProviders()}
		for i := range used {
			c.LRPs = append(c.LRPs, CellLRP{ProcessGUID: "old", Index: i + len(id)*100, MemoryMB: 10, DiskMB: 20})
		}
		return c
	}
	return &Scenario{
		Options: ScenarioOptions{Strategy: "binpack", StartingContainerWeight: 0.25, Seed: 4},
		Cells: []Cell{
			cell("roomy", 1000, 10, 0),
			cell("tight", 110, 10, 6),    // 50 MB free
			cell("no-slots", 1000, 2, 2), // no container
		},
		LRPs: []LRP{{ProcessGUID: "new", MemoryMB: 64, DiskMB: 64, RootFS: DefaultRootFS}},
	}
}

func TestCapacityCountsFreeAndStranded(t *testing.T) {
	r, err := Run(strandScenario(), RunOptions{})
	require.NoError(t, err)
	require.Equal(t, 1, r.Placed)
	require.Equal(t, "roomy", r.Placements[0].CellID)
	require.Equal(t, CapacitySummary{
		Free:            Resources{MemoryMB: (1000 - 64) + 50 + 980, DiskMB: (10000 - 64) + (10000 - 120) + (10000 - 40), Containers: 9 + 4 + 0},
		Stranded:        Resources{MemoryMB: 50 + 980, DiskMB: (10000 - 120) + (10000 - 40), Containers: 4},
		StrandedCells:   2,
		SmallestRequest: Resources{MemoryMB: 64, DiskMB: 64, Containers: 1},
	}, r.Capacity)
	require.Equal(t, r.StrandedMemoryMB, r.Capacity.Stranded.MemoryMB, "the text report's stranded memory agrees")
	require.Equal(t, r.FreeMemoryMB, r.Capacity.Free.MemoryMB)

	// The starting distribution is the usage before the run.
	require.Len(t, r.Starting.Cells, 3)
	require.Equal(t, StartingCell{CellID: "tight", Zone: "z1", Total: Resources{MemoryMB: 110, DiskMB: 10000, Containers: 10},
		Used: Resources{MemoryMB: 60, DiskMB: 120, Containers: 6}, LRPs: 6}, r.Starting.Cells[1])
	require.Equal(t, Resources{MemoryMB: 80, DiskMB: 160, Containers: 8}, r.Starting.Used)
	require.Equal(t, r.InitialDistributionScore, r.Starting.DistributionScore)
}

func TestMetadataRecordsTheInputs(t *testing.T) {
	seed := int64(11)
	r, err := Run(strandScenario(), RunOptions{Seed: &seed, Params: map[string]float64{"starting_container_weight": 0.5, "max_inflight_starts": 3}})
	require.NoError(t, err)
	require.Equal(t, Metadata{
		Strategy:   StrategyInfo{Name: "binpack"},
		Parameters: map[string]float64{"starting_container_weight": 0.5, "bin_pack_first_fit_weight": 0, "max_inflight_starts": 3},
		Seed:       11,
	}, r.Metadata)

	_, err = Run(strandScenario(), RunOptions{Params: map[string]float64{"max_inflight_starts": 1.5}})
	require.ErrorContains(t, err, "param max_inflight_starts: must be an integer >= 0")
	_, err = Run(strandScenario(), RunOptions{Params: map[string]float64{"alpha": 1}})
	require.ErrorContains(t, err, `param "alpha": strategy "binpack" reads only`)
}

func TestStrategyFileRuns(t *testing.T) {
	src := "name: prefer-tight\nparams: {w: 1}\nscore: 'params.w * double(cell.memory_free_mb)'\n"
	path := filepath.Join(t.TempDir(), "s.yaml")
	require.NoError(t, os.WriteFile(path, []byte(src), 0o600))
	f, err := strategyfile.Load(path)
	require.NoError(t, err)

	// Two cells fit: the score picks the one with less free memory.
	s := strandScenario()
	s.Cells[1].Total.MemoryMB = 1000
	r, err := Run(s, RunOptions{StrategyFile: f})
	require.NoError(t, err)
	require.Equal(t, "prefer-tight", r.Strategy)
	require.Equal(t, "tight", r.Placements[0].CellID)
	require.Equal(t, StrategyInfo{Name: "prefer-tight", File: path, SHA256: f.SHA256(), Source: src}, r.Metadata.Strategy)
	require.Equal(t, 1.0, r.Metadata.Parameters["w"])

	// A param flips the preference and is recorded.
	r, err = Run(s, RunOptions{StrategyFile: f, Params: map[string]float64{"w": -1}})
	require.NoError(t, err)
	require.Equal(t, "roomy", r.Placements[0].CellID)
	require.Equal(t, -1.0, r.Metadata.Parameters["w"])

	// The full JSON report carries the metadata.
	var buf bytes.Buffer
	require.NoError(t, r.WriteJSON(&buf))
	var got struct {
		Metadata Metadata        `json:"metadata"`
		Capacity CapacitySummary `json:"capacity"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	require.Equal(t, r.Metadata, got.Metadata)
	require.Equal(t, r.Capacity, got.Capacity)

	// A score that fails during the run fails the run, naming item and cell.
	bad, err := strategyfile.Parse([]byte(`{"name": "div", "score": "double(100 / (cell.containers_free - 10))"}`))
	require.NoError(t, err)
	_, err = Run(strandScenario(), RunOptions{StrategyFile: bad})
	require.ErrorContains(t, err, "strategy div: score of lrp new index 0 on cell roomy: division by zero")
}

func TestHashFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x")
	require.NoError(t, os.WriteFile(path, []byte("abc"), 0o600))
	h, err := HashFile(path)
	require.NoError(t, err)
	require.Equal(t, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", h)
}
