package sim

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// validCell is the smallest valid cell; cases splice it into scenarios.
const validCell = `{"cell_id": "c1", "total": {"memory_mb": 100, "disk_mb": 100, "containers": 10}}`

func TestParseRefusesMalformedScenarios(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []FieldError
	}{
		{
			name: "total memory not positive",
			doc: `{"cells": [` + validCell + `, ` + validCell[:len(validCell)-1] + `, "cell_id": "c2"}, {"cell_id": "c3", "total": {"memory_mb": 100, "disk_mb": 100, "containers": 10}},
				{"cell_id": "c4", "total": {"memory_mb": 0, "disk_mb": 100, "containers": 10}}]}`,
			want: []FieldError{{Path: "cells[3].total.memory_mb", Message: "must be > 0"}},
		},
		{
			name: "unknown field, nested",
			doc:  `{"cells": [{"cell_id": "c1", "zonee": "z", "total": {"memory_mb": 1, "disk_mb": 1, "containers": 1, "cpu": 2}}]}`,
			want: []FieldError{{Path: "cells[0].zonee", Message: "unknown field"}, {Path: "cells[0].total.cpu", Message: "unknown field"}},
		},
		{
			name: "unknown top-level field",
			doc:  `{"cels": []}`,
			want: []FieldError{{Path: "cels", Message: "unknown field"}},
		},
		{
			name: "wrong types",
			doc:  `{"options": {"strategy": 3, "seed": "x"}, "cells": [{"cell_id": "c1", "evacuating": "yes", "total": {"memory_mb": 1.5, "disk_mb": 1, "containers": 1}}]}`,
			want: []FieldError{
				{Path: "options.strategy", Message: "must be a string, got a number"},
				{Path: "options.seed", Message: "must be an integer, got a string"},
				{Path: "cells[0].evacuating", Message: "must be true or false, got a string"},
				{Path: "cells[0].total.memory_mb", Message: "must be an integer, got 1.5"},
				{Path: "cells[0].total.memory_mb", Message: "must be > 0"},
			},
		},
		{
			name: "missing required fields",
			doc:  `{"cells": [{"zone": "z"}], "lrps": [{"index": 1}], "tasks": [{"task_guid": ""}]}`,
			want: []FieldError{
				{Path: "cells[0].cell_id", Message: "is required"},
				{Path: "cells[0].total", Message: "is required"},
				{Path: "lrps[0].process_guid", Message: "is required"},
				{Path: "tasks[0].task_guid", Message: "must not be empty"},
			},
		},
		{
			name: "bad options",
			doc:  `{"options": {"starting_container_weight": -1, "bin_pack_first_fit_weight": 2, "max_inflight_starts": -3}}`,
			want: []FieldError{
				{Path: "options.starting_container_weight", Message: "must be >= 0"},
				{Path: "options.bin_pack_first_fit_weight", Message: "must be between 0 and 1"},
				{Path: "options.max_inflight_starts", Message: "must be >= 0"},
			},
		},
		{
			name: "duplicates",
			doc: `{"cells": [` + validCell + `, ` + validCell + `],
				"lrps": [{"process_guid": "a"}, {"process_guid": "a", "index": 0}],
				"tasks": [{"task_guid": "t"}, {"task_guid": "t"}]}`,
			want: []FieldError{
				{Path: "cells[1].cell_id", Message: `duplicate "c1" (also cells[0])`},
				{Path: "lrps[1]", Message: `duplicate instance "a.0" (also lrps[0])`},
				{Path: "tasks[1].task_guid", Message: `duplicate "t" (also tasks[0])`},
			},
		},
		{
			name: "existing work larger than the cell",
			doc:  `{"cells": [{"cell_id": "c1", "total": {"memory_mb": 10, "disk_mb": 100, "containers": 10}, "lrps": [{"process_guid": "p", "memory_mb": 8}], "tasks": [{"task_guid": "t", "memory_mb": 8}]}]}`,
			want: []FieldError{{Path: "cells[0]", Message: "existing lrps and tasks use 16 MB of memory, more than total.memory_mb 10"}},
		},
		{
			name: "negative resources and bad lists",
			doc:  `{"lrps": [{"process_guid": "a", "memory_mb": -1, "placement_tags": ["x", 3], "volume_drivers": "nfs"}], "cells": [{"cell_id": "c", "total": {"memory_mb": 1, "disk_mb": 1, "containers": 1}, "rootfs_providers": {"docker": "any"}}]}`,
			want: []FieldError{
				{Path: "cells[0].rootfs_providers.docker", Message: "must be an array of strings, got a string"},
				{Path: "lrps[0].memory_mb", Message: "must be >= 0"},
				{Path: "lrps[0].placement_tags[1]", Message: "must be a string, got a number"},
				{Path: "lrps[0].volume_drivers", Message: "must be an array of strings, got a string"},
			},
		},
		{
			name: "not an object",
			doc:  `[1, 2]`,
			want: []FieldError{{Path: "", Message: "must be an object, got an array"}},
		},
		{
			name: "syntax error located",
			doc:  "{\n  \"cells\": [\n    {\"cell_id\": \"c1\",,}\n  ]\n}",
			want: []FieldError{{Message: "malformed JSON at line 3, column 23: invalid character ',' looking for beginning of object key string"}},
		},
		{
			name: "trailing data",
			doc:  `{} {}`,
			want: []FieldError{{Message: "unexpected data after the top-level object"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.doc))
			require.Nil(t, s, "nothing is returned from a bad scenario")
			require.True(t, errors.Is(err, ErrInvalidScenario))
			var ve *ValidationError
			require.True(t, errors.As(err, &ve))
			require.Equal(t, tt.want, ve.Fields)
		})
	}
}

func TestValidationErrorIsOneLine(t *testing.T) {
	_, err := Parse([]byte(`{"cells": [{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"cell_id":"x","total":{"memory_mb":1,"disk_mb":1,"containers":1}}]}`))
	require.EqualError(t, err, "invalid scenario: cells[0].a: unknown field; cells[0].b: unknown field; cells[0].c: unknown field; "+
		"cells[0].d: unknown field; cells[0].e: unknown field; and 1 more")
}

func TestParseDefaults(t *testing.T) {
	s, err := Parse([]byte(`{"cells": [` + validCell + `], "lrps": [{"process_guid": "a"}], "tasks": [{"task_guid": "t"}]}`))
	require.NoError(t, err)
	require.Equal(t, ScenarioOptions{Strategy: "diego", StartingContainerWeight: 0.25}, s.Options)
	require.Equal(t, Cell{
		CellID: "c1", Total: Capacity{MemoryMB: 100, DiskMB: 100, Containers: 10},
		RootFSProviders: map[string][]string{"preloaded": {"cflinuxfs4"}, "docker": {}},
		PlacementTags:   []string{}, OptionalPlacementTags: []string{}, VolumeDrivers: []string{},
		LRPs: []CellLRP{}, Tasks: []CellTask{},
	}, s.Cells[0])
	require.Equal(t, LRP{ProcessGUID: "a", RootFS: "preloaded:cflinuxfs4", PlacementTags: []string{}, VolumeDrivers: []string{}}, s.LRPs[0])
	require.Equal(t, Task{TaskGUID: "t", RootFS: "preloaded:cflinuxfs4", PlacementTags: []string{}, VolumeDrivers: []string{}}, s.Tasks[0])
}

func TestParseIssueExample(t *testing.T) {
	data, err := os.ReadFile("testdata/issue4.json")
	require.NoError(t, err)
	s, err := Parse(data)
	require.NoError(t, err)
	require.Len(t, s.Cells, 1)
	require.Equal(t, []CellLRP{{ProcessGUID: "pg-1", Index: 0, MemoryMB: 10, DiskMB: 10}}, s.Cells[0].LRPs)
	require.Equal(t, []CellTask{{TaskGUID: "t-1", MemoryMB: 10, DiskMB: 10}}, s.Cells[0].Tasks)
	require.Len(t, s.LRPs, 2)
	require.Len(t, s.Tasks, 1)

	// What Marshal writes, Parse reads back unchanged.
	out, err := json.Marshal(s)
	require.NoError(t, err)
	again, err := Parse(out)
	require.NoError(t, err)
	require.Equal(t, s, again)
}
