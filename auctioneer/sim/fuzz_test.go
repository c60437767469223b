package sim

import (
	"errors"
	"os"
	"reflect"
	"testing"
)

// Any document parses as the reference (parseTree) parses it, and either
// parses into a scenario within the bounds or is refused with a
// *ValidationError (matching ErrInvalidScenario); never a panic and never
// a partial scenario.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/issue4.json"); err == nil {
		f.Add(data)
	}
	for _, seed := range []string{
		`{"cells": [` + validCell + `], "lrps": [{"process_guid": "p", "memory_mb": 10}], "tasks": [{"task_guid": "t"}]}`,
		`{"options": {"strategy": "binpack", "seed": 7}}`,
		`{"cells": [{"cell_id": "c", "total": {"memory_mb": 1, "disk_mb": 1, "containers": 1}, "lrps": [{"process_guid": "x", "memory_mb": 5}]}]}`,
		`{"cells": [{"cell_id": "c", "rootfs_providers": {"": ["x"]}}]}`,
		`[]`, `{`, `{"cells": 1}`, `{} {}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		want, wantErr := parseTree(data)
		if !reflect.DeepEqual(want, s) || !reflect.DeepEqual(wantErr, err) {
			t.Fatalf("streaming parse differs from the reference: %v (%v) against %v (%v)", s, err, want, wantErr)
		}
		if err != nil {
			if s != nil {
				t.Fatal("a partial scenario with an error")
			}
			if !errors.Is(err, ErrInvalidScenario) {
				t.Fatalf("error %v does not match ErrInvalidScenario", err)
			}
			return
		}
		if len(s.Cells) > MaxCells || len(s.LRPs) > MaxWork || len(s.Tasks) > MaxWork {
			t.Fatalf("accepted %d cells, %d lrps, %d tasks", len(s.Cells), len(s.LRPs), len(s.Tasks))
		}
	})
}
