package cli

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSimTimelineGenerateAndRun(t *testing.T) {
	dir := t.TempDir()
	scenario, err := execute(t, "sim", "generate", "--cells", "20", "--zones", "2", "--memory-mb", "8192", "--apps", "5x3@256", "--seed", "4")
	require.NoError(t, err)
	sPath := filepath.Join(dir, "s.json")
	require.NoError(t, os.WriteFile(sPath, []byte(scenario), 0o644))

	timeline, err := execute(t, "sim", "timeline", "--scenario", sPath, "--duration", "1h", "--deploys-per-min", "2",
		"--cell-failures-per-hour", "2", "--crashes-per-hour", "20", "--seed", "9")
	require.NoError(t, err)
	tPath := filepath.Join(dir, "t.json")
	require.NoError(t, os.WriteFile(tPath, []byte(timeline), 0o644))

	svgPath := filepath.Join(dir, "run.svg")
	out, err := execute(t, "sim", "run", "--scenario", sPath, "--timeline", tPath, "--format", "json", "--svg", svgPath)
	require.NoError(t, err)
	var got struct {
		EndMS  int64 `json:"end_ms"`
		Totals struct {
			Requested, Running, Lost int
		} `json:"totals"`
		Series []json.RawMessage `json:"series"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Equal(t, int64(3600_000), got.EndMS, "the generated timeline ends at --duration")
	require.Len(t, got.Series, 61, "t=0 and one per minute")
	require.Positive(t, got.Totals.Running)
	svg, err := os.ReadFile(svgPath)
	require.NoError(t, err)
	require.NoError(t, xml.Unmarshal(svg, new(struct{})), "the SVG is well-formed XML")
	require.Contains(t, string(svg), "CDF of waits")

	again, err := execute(t, "sim", "run", "--scenario", sPath, "--timeline", tPath, "--format", "json")
	require.NoError(t, err)
	require.Equal(t, out, again, "same inputs, same report")

	text, err := execute(t, "sim", "run", "--scenario", sPath, "--timeline", tPath)
	require.NoError(t, err)
	require.Contains(t, text, "request → running")
}

func TestSimRunTimelineErrorsNameTheFile(t *testing.T) {
	bad := writeFile(t, "bad.json", `{"events":[{"at_ms":-3,"type":"cell_fail","cell_id":"cell-1"}]}`)
	_, err := execute(t, "sim", "run", "--scenario", "testdata/issue4.json", "--timeline", bad)
	require.ErrorContains(t, err, bad+": invalid timeline: events[0].at_ms: must be >= 0 (got -3)")

	unknownApp := writeFile(t, "app.json", `{"events":[{"at_ms":3,"type":"scale","process_guid":"nope","instances":1}]}`)
	_, err = execute(t, "sim", "run", "--scenario", "testdata/issue4.json", "--timeline", unknownApp)
	require.ErrorContains(t, err, `events[0].process_guid: unknown app "nope" at 3 ms`)
}
