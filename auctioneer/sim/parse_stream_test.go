package sim

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// requireSameAsReference holds the streaming parse to the reference: the
// same scenario, or the same error, field by field.
func requireSameAsReference(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := parseTree(data)
	got, gotErr := Parse(data)
	require.Equal(t, want, got, "document: %s", data)
	if wantErr == nil {
		require.NoError(t, gotErr, "document: %s", data)
	} else {
		require.Error(t, gotErr, "document: %s", data)
		require.Equal(t, wantErr.Error(), gotErr.Error(), "document: %s", data)
		require.Equal(t, wantErr, gotErr, "document: %s", data)
	}
	viaReader, readerErr := ParseReader(bytes.NewReader(data))
	require.Equal(t, want, viaReader)
	require.Equal(t, gotErr, readerErr)
}

// token matches a JSON string, number or literal of a compact document.
var token = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null`)

// replacements stand in for one token: wrong types, bad and edge values,
// escapes, unknown and wrongly cased keys, nulls.
var replacements = []string{
	`-1`, `0`, `1`, `1.5`, `1e3`, `2147483647`, `2147483648`, `-2147483649`, `9223372036854775808`,
	`""`, `"x"`, `"a\u0062"`, `"\u00e9t\u00e9"`, `"été"`, `"Memory_MB"`, `"zonee"`, `"cell_id"`, `"process_guid"`,
	`"index"`, `"total"`, `"lrps"`, `"tasks"`, `"placement_tags"`, `"rootfs_providers"`, `"evacuating"`,
	`true`, `false`, `null`, `[]`, `["a"]`, `[""]`, `[1]`, `{}`, `{"a": 1}`, `"preloaded:cflinuxfs4"`,
}

// The streaming parse gives exactly the reference's scenario or errors on
// documents made by replacing one or two tokens of valid scenarios.
func TestParseMatchesReference(t *testing.T) {
	gen, err := Generate(GenerateOptions{Cells: 4, Zones: 2, MemoryMB: 1024, Containers: 8, Fill: 0.3,
		Apps: []AppMix{{Count: 2, Instances: 2, MemoryMB: 128}}, Tasks: 2, TaskMemoryMB: 64, Seed: 3})
	require.NoError(t, err)
	gen.Cells[1].Tasks = []CellTask{{TaskGUID: "running", MemoryMB: 1, DiskMB: 1}}
	gen.Cells[2].Evacuating = true
	gen.LRPs[0].PlacementTags = []string{"gpu"}
	generated, err := json.Marshal(gen)
	require.NoError(t, err)
	issue, err := os.ReadFile("testdata/issue4.json")
	require.NoError(t, err)
	docs := [][]byte{generated, issue,
		[]byte(`{"cells": [` + validCell + `], "lrps": [{"process_guid": "p", "memory_mb": 10, "index": 1}], "tasks": [{"task_guid": "t"}], "options": {"seed": 4}}`),
		[]byte(`{"lrps": [{"process_guid": "a"}, {"process_guid": "a"}], "cells": [` + validCell + `,` + validCell + `], "cells": null, "x": 1, "a": 2, "x": 3}`),
	}
	for _, d := range docs {
		requireSameAsReference(t, d)
	}
	rng := rand.New(rand.NewPCG(18, 18))
	for range 1500 {
		doc := docs[rng.IntN(len(docs))]
		var compact bytes.Buffer
		require.NoError(t, json.Compact(&compact, doc))
		data := compact.Bytes()
		for range 1 + rng.IntN(2) {
			locs := token.FindAllIndex(data, -1)
			l := locs[rng.IntN(len(locs))]
			data = append(append(append([]byte{}, data[:l[0]]...), replacements[rng.IntN(len(replacements))]...), data[l[1]:]...)
		}
		requireSameAsReference(t, data)
	}
}

// Malformed documents and non-object tops are refused as the reference
// refuses them, syntax errors located at the same line and column.
func TestParseMalformedMatchesReference(t *testing.T) {
	for _, doc := range []string{
		``, ` `, `{`, `[`, `{"cells": [`, `{"cells" []}`, `{"cells": [] "lrps": []}`, `{"cells": [{}}`, `{"lrps": [1,]}`,
		`{"a": 1,}`, `{} x`, `{} {}`, `null`, `3`, `"s"`, `[1, {"a": 2}]`, `{"cells": {"a": [1]}}`, `{"cells": 3}`,
		`{"options": [], "tasks": "x", "lrps": {}}`, "{\n\"lrps\": [\n{\"process_guid\": \"p\"},\n{\"process_guid\" \"q\"}]}",
		`{"cells": [{"cell_id": "c", "total": {"memory_mb": 1, "disk_mb": 1, "containers": 1}}]]}`,
	} {
		requireSameAsReference(t, []byte(doc))
	}
}
