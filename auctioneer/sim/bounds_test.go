package sim

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A scenario follows the BBS's bounds (guid, name, tag and URL lengths,
// list sizes) and its own (file size, cells, work), each refused naming the
// field; so do generated workloads.
func TestScenarioBounds(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		name, doc string
		want      FieldError
	}{
		{"long cell id", `{"cells": [{"cell_id": "` + long(300) + `", "total": {"memory_mb": 1, "disk_mb": 1, "containers": 1}}]}`,
			FieldError{Path: "cells[0].cell_id", Message: "must be at most 256 bytes (got 300)"}},
		{"long process guid", `{"lrps": [{"process_guid": "` + long(257) + `"}]}`,
			FieldError{Path: "lrps[0].process_guid", Message: "must be at most 256 bytes (got 257)"}},
		{"long placement tag", `{"tasks": [{"task_guid": "t", "placement_tags": ["` + long(257) + `"]}]}`,
			FieldError{Path: "tasks[0].placement_tags[0]", Message: "must be at most 256 bytes (got 257)"}},
		{"too many tags", `{"tasks": [{"task_guid": "t", "placement_tags": [` + strings.Repeat(`"a",`, 64) + `"a"]}]}`,
			FieldError{Path: "tasks[0].placement_tags", Message: "must hold at most 64 items (got 65)"}},
		{"long domain", `{"lrps": [{"process_guid": "p", "domain": "` + long(1<<20) + `"}]}`,
			FieldError{Path: "lrps[0].domain", Message: "must be at most 256 bytes (got 1048576)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			var v *ValidationError
			require.True(t, errors.As(err, &v), "%v", err)
			require.Contains(t, v.Fields, tc.want)
		})
	}
	_, err := ParseReader(hugeFile{})
	require.ErrorContains(t, err, "a scenario must be at most 1073741824 bytes (got 1073741825)")

	base := GenerateOptions{Cells: 10, Zones: 2, MemoryMB: 1024, Containers: 10, Apps: []AppMix{{Count: 1, Instances: 2, MemoryMB: 64}}}
	for _, tc := range []struct {
		name  string
		tweak func(*GenerateOptions)
		want  string
	}{
		{"too many cells", func(o *GenerateOptions) { o.Cells = MaxCells + 1 }, "cells: must be at most 100000"},
		{"too much existing work", func(o *GenerateOptions) { o.Cells, o.Containers = 1000, 10_000 }, "cells × containers"},
		{"app above max_desired_instances", func(o *GenerateOptions) { o.Apps = []AppMix{{Count: 1, Instances: 10_001, MemoryMB: 1}} }, "at most 10000"},
		{"too many instances", func(o *GenerateOptions) { o.Apps = []AppMix{{Count: 1000, Instances: 10_000, MemoryMB: 1}} }, "at most 1000000 instances"},
		{"too many tasks", func(o *GenerateOptions) { o.Tasks, o.TaskMemoryMB = MaxWork+1, 1 }, "tasks: must be at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.tweak(&o)
			_, err := Generate(o)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err = Generate(base)
	require.NoError(t, err)
}

// hugeFile seeks like a file one byte beyond MaxScenarioBytes and holds no
// data: ParseReader must refuse it before reading.
type hugeFile struct{}

func (hugeFile) Read([]byte) (int, error) {
	return 0, errors.New("read: ParseReader read a file beyond the bound")
}

func (hugeFile) Seek(offset int64, whence int) (int64, error) {
	if whence == io.SeekEnd {
		return MaxScenarioBytes + 1 + offset, nil
	}
	return offset, nil
}
