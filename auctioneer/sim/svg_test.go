package sim

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// svgNode is one element of a parsed SVG document.
type svgNode struct {
	name  string
	attrs map[string]string
	text  string
	kids  []*svgNode
}

// parseSVG reads an SVG document with encoding/xml into a tree.
func parseSVG(t *testing.T, data []byte) *svgNode {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	root := &svgNode{name: "document"}
	stack := []*svgNode{root}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		top := stack[len(stack)-1]
		switch tk := tok.(type) {
		case xml.StartElement:
			n := &svgNode{name: tk.Name.Local, attrs: map[string]string{}}
			for _, a := range tk.Attr {
				n.attrs[a.Name.Local] = a.Value
			}
			top.kids = append(top.kids, n)
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			top.text += string(tk)
		}
	}
	require.Len(t, root.kids, 1)
	require.Equal(t, "svg", root.kids[0].name)
	return root.kids[0]
}

// all returns the elements under n (n included) that match.
func (n *svgNode) all(match func(*svgNode) bool) []*svgNode {
	var out []*svgNode
	if match(n) {
		out = append(out, n)
	}
	for _, k := range n.kids {
		out = append(out, k.all(match)...)
	}
	return out
}

func class(c string) func(*svgNode) bool {
	return func(n *svgNode) bool { return n.name == "g" && n.attrs["class"] == c }
}

// texts returns the text elements' contents under n, in order.
func (n *svgNode) texts() []string {
	var out []string
	for _, t := range n.all(func(x *svgNode) bool { return x.name == "text" }) {
		out = append(out, t.text)
	}
	return out
}

// labScenario: two zones, an evacuating cell, an instance of web already
// running on c1, two web instances and a task to place.
func labScenario(t *testing.T) *Scenario {
	t.Helper()
	s, err := Parse([]byte(`{
		"cells": [
			{"cell_id": "c<1>&\"q\"", "zone": "z1", "total": {"memory_mb": 1000, "disk_mb": 2000, "containers": 10},
			 "lrps": [{"process_guid": "web", "index": 9, "memory_mb": 100, "disk_mb": 200}]},
			{"cell_id": "c2", "zone": "z2", "index": 1, "total": {"memory_mb": 1000, "disk_mb": 2000, "containers": 10}},
			{"cell_id": "c3", "zone": "z1", "index": 2, "evacuating": true, "total": {"memory_mb": 500, "disk_mb": 500, "containers": 5}}
		],
		"lrps": [{"process_guid": "web", "index": 0, "memory_mb": 200, "disk_mb": 300},
		         {"process_guid": "web", "index": 1, "memory_mb": 200, "disk_mb": 300}],
		"tasks": [{"task_guid": "t", "memory_mb": 50, "disk_mb": 50}]}`))
	require.NoError(t, err)
	return s
}

// The figure has memory, disk and container sections, each cell's numbers
// as text, the evacuating swatch as an outline only, an app's spread over
// zones and cells, and no wall time.
func TestSVGPrintsEveryNumber(t *testing.T) {
	r, err := Run(labScenario(t), RunOptions{})
	require.NoError(t, err)
	require.Equal(t, 3, r.Placed)
	r.Wall = 1234567 * time.Microsecond // must not appear
	// Diego: web.0 to z2 (z1 already runs web), on c2; the task to c1
	// (usage after 0.16 against 0.25 on c2, both one starting container);
	// web.1, zones even and both cells holding one web (+1000), to c2
	// (usage after 0.30 against 0.31 on c1).
	cells := map[string][3]int{}
	for _, p := range r.Placements {
		c := cells[p.CellID]
		c[0]++
		cells[p.CellID] = c
	}
	require.Equal(t, map[string][3]int{`c<1>&"q"`: {1}, "c2": {2}}, cells)

	var buf bytes.Buffer
	require.NoError(t, WriteSVG(&buf, r))
	doc := parseSVG(t, buf.Bytes())

	panels := doc.all(class("panel"))
	require.Len(t, panels, 1)
	res := map[string]*svgNode{}
	for _, g := range doc.all(class("resource")) {
		res[g.attrs["data-resource"]] = g
	}
	require.Len(t, res, 3)
	want := map[string]map[string]string{
		// existing + placed of total, free
		"memory":     {`c<1>&"q"`: "100 + 50 of 1000, free 850", "c2": "0 + 400 of 1000, free 600", "c3": "0 + 0 of 500, free 500 (evacuating)"},
		"disk":       {`c<1>&"q"`: "200 + 50 of 2000, free 1750", "c2": "0 + 600 of 2000, free 1400", "c3": "0 + 0 of 500, free 500 (evacuating)"},
		"containers": {`c<1>&"q"`: "1 + 1 of 10, free 8", "c2": "0 + 2 of 10, free 8", "c3": "0 + 0 of 5, free 5 (evacuating)"},
	}
	for name, byCell := range want {
		g := res[name]
		require.NotNil(t, g, name)
		rows := g.all(class("cell"))
		require.Len(t, rows, 3, name)
		for _, row := range rows {
			id := row.attrs["data-cell"]
			require.Equal(t, []string{id, byCell[id]}, row.texts(), "%s of %s", name, id)
			if id == "c3" {
				outlines := row.all(func(n *svgNode) bool { return n.name == "rect" && n.attrs["fill"] == "none" })
				require.Len(t, outlines, 1, "the evacuating cell is outlined")
			}
		}
	}
	require.Contains(t, res["memory"].texts(), "memory (MB): existing 100 · placed 450 · free 1450 · total 2500 (free counts cells taking part)")
	require.Contains(t, res["memory"].texts(), "zone z1 · 2 cells · 1 evacuating: existing 100 · placed 50 · free 850 · total 1500")

	// Legend: the evacuating swatch is an outline, the others filled.
	items := doc.all(class("legend-item"))
	require.Len(t, items, 4)
	for _, it := range items {
		rects := it.all(func(n *svgNode) bool { return n.name == "rect" })
		require.Len(t, rects, 1)
		if it.texts()[0] == "evacuating (outline)" {
			require.Equal(t, "none", rects[0].attrs["fill"])
			require.NotEmpty(t, rects[0].attrs["stroke"])
		} else {
			require.NotEqual(t, "none", rects[0].attrs["fill"])
		}
	}

	// Spread of web: the running instance on c1, both placed on c2.
	spreads := doc.all(class("spread"))
	require.Len(t, spreads, 1)
	require.Equal(t, "web", spreads[0].attrs["data-app"])
	require.Equal(t, []string{
		"web: 3 instances (2 placed, 1 already running) on 2 cells, at most 2 on one cell",
		"zone z2", "2 instances (66.7%) on 1 cell",
		"zone z1", "1 instance (33.3%) on 1 cell",
		"cells holding k instances: 1 → 1 cell · 2 → 1 cell",
		`c<1>&"q" (z1)`, "1 instance",
		"c2 (z2)", "2 instances",
	}, spreads[0].texts())

	for _, s := range doc.texts() {
		require.NotContains(t, s, "wall")
		require.NotContains(t, s, "1234.567")
		require.NotContains(t, s, " ms")
	}
}

// At 10,000 cells the figure draws histograms, says so, prints each bin's
// count, and stays small.
func TestSVGAggregatesTenThousandCells(t *testing.T) {
	s, err := Generate(GenerateOptions{Cells: 10_000, Zones: 3, MemoryMB: 4096, Containers: 10, Fill: 0.5,
		Apps: []AppMix{{Count: 20, Instances: 10, MemoryMB: 256}}, Seed: 2})
	require.NoError(t, err)
	s.Cells[5].Evacuating = true
	r, err := Run(s, RunOptions{})
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, WriteSVG(&buf, r))
	require.Less(t, buf.Len(), 200_000, "bounded whatever the cells")
	doc := parseSVG(t, buf.Bytes())

	require.Contains(t, doc.texts(), "10000 cells are too many to draw one by one (more than 48): each zone shows how many cells are in each band of use after the run.")
	require.Empty(t, doc.all(class("cell")))
	hists := doc.all(class("histogram"))
	require.Len(t, hists, 3*3, "one per resource and zone")
	perZone := map[string]int{}
	for _, c := range r.Cells {
		if !c.Evacuating {
			perZone[c.Zone]++
		}
	}
	for i, h := range hists {
		sum := 0
		for _, txt := range h.texts() {
			if strings.HasSuffix(txt, "%") {
				continue
			}
			n, err := strconv.Atoi(txt)
			require.NoError(t, err, txt)
			sum += n
		}
		zone := r.Zones[i%3].Zone
		require.Equal(t, perZone[zone], sum, "histogram %d counts every cell of zone %s taking part", i, zone)
	}
	require.Len(t, doc.all(class("spread")), DefaultSVGTopApps)
}

// Panels of a comparison draw the same apps; named apps replace the top
// ones, and too many are refused.
func TestSVGCompareSameApps(t *testing.T) {
	s := labScenario(t)
	reports, err := Compare(s, []string{"diego", "binpack"}, RunOptions{})
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, WriteSVGWith(&buf, SVGOptions{Apps: []string{"web", "nothing"}}, reports...))
	doc := parseSVG(t, buf.Bytes())
	panels := doc.all(class("panel"))
	require.Len(t, panels, 2)
	for _, p := range panels {
		var apps []string
		for _, g := range p.all(class("spread")) {
			apps = append(apps, g.attrs["data-app"])
		}
		require.Equal(t, []string{"web", "nothing"}, apps)
	}
	require.Contains(t, doc.texts(), "nothing: 0 instances (0 placed, 0 already running) on 0 cells, at most 0 on one cell")
	err = WriteSVGWith(io.Discard, SVGOptions{Apps: make([]string, SVGMaxApps+1)}, reports...)
	require.ErrorContains(t, err, "at most 8 apps (got 9)")
}
