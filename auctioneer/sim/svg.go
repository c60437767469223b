package sim

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
)

// SVG layout, in pixels. A cell is a small tile whose height is its memory
// to scale: existing work at the bottom, placed work above it, free memory
// above that. Tiles are laid out in a grid per zone so that 1,000 cells
// stay readable; hovering a tile shows its figures.
const (
	svgTileW     = 12
	svgTileH     = 36
	svgGap       = 2
	svgColumns   = 40
	svgMargin    = 16
	svgLine      = 16
	svgMaxFailed = 12
	svgPanelW    = 2*svgMargin + svgColumns*(svgTileW+svgGap)

	colourExisting = "#4e79a7"
	colourPlaced   = "#f28e2b"
	colourFree     = "#e8e8e8"
	colourEvacuate = "#d62728"
)

// WriteSVG draws one panel per report, side by side, as a standalone SVG
// document: a summary (placed, failed, distribution score, free and
// stranded memory, wall time), each zone's totals and cell grid, and the
// failures grouped by reason. Reports of one scenario compare directly.
func WriteSVG(w io.Writer, reports ...*Report) error {
	if len(reports) == 0 {
		return fmt.Errorf("write svg: no reports")
	}
	var body bytes.Buffer
	height := 0
	for i, r := range reports {
		fmt.Fprintf(&body, `<g transform="translate(%d,0)">`+"\n", i*svgPanelW)
		if i > 0 {
			fmt.Fprintf(&body, `<line x1="0" y1="%d" x2="0" y2="100%%" stroke="#bbbbbb"/>`+"\n", svgMargin)
		}
		height = max(height, writePanel(&body, r))
		body.WriteString("</g>\n")
	}
	width := len(reports) * svgPanelW
	ew := &errWriter{w: w}
	ew.printf(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	ew.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	ew.printf(`<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	_, _ = ew.Write(body.Bytes())
	ew.printf("</svg>\n")
	if ew.err != nil {
		return fmt.Errorf("write svg: %w", ew.err)
	}
	return nil
}

// writePanel draws one report at the origin and returns its height.
func writePanel(b *bytes.Buffer, r *Report) int {
	y := svgMargin + svgLine
	text := func(x, y int, weight, s string) {
		fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="%s">%s</text>`+"\n", x, y, weight, esc(s))
	}
	text(svgMargin, y, "bold", fmt.Sprintf("%s (seed %d): placed %d of %d, failed %d", r.Strategy, r.Seed, r.Placed, r.Requested, r.Failed))
	y += svgLine
	text(svgMargin, y, "normal", fmt.Sprintf("distribution score %.4f (before %.4f) · wall %s",
		r.DistributionScore, r.InitialDistributionScore, formatWall(r.Wall)))
	y += svgLine
	text(svgMargin, y, "normal", fmt.Sprintf("free memory %d MB · stranded %d MB", r.FreeMemoryMB, r.StrandedMemoryMB))
	y += svgLine
	x := svgMargin
	for _, l := range []struct{ colour, label string }{
		{colourExisting, "existing"}, {colourPlaced, "placed"}, {colourFree, "free"}, {colourEvacuate, "evacuating (outline)"},
	} {
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/>`+"\n", x, y-9, l.colour)
		text(x+14, y, "normal", l.label)
		x += 14 + 7*len(l.label) + 12
	}
	y += svgLine / 2

	maxTotal := 1
	for _, c := range r.Cells {
		maxTotal = max(maxTotal, c.Total.MemoryMB)
	}
	for _, z := range r.Zones {
		y += svgLine
		text(svgMargin, y, "bold", fmt.Sprintf("zone %s · %d cells", zoneName(z.Zone), z.Cells))
		y += svgLine
		text(svgMargin, y, "normal", fmt.Sprintf("total %d MB · existing %d MB · placed %d MB (+%d lrps, +%d tasks)",
			z.TotalMemoryMB, z.ExistingMemoryMB, z.PlacedMemoryMB, z.PlacedLRPs, z.PlacedTasks))
		y += svgGap * 3
		n := 0
		for _, c := range r.Cells {
			if c.Zone != z.Zone {
				continue
			}
			tx := svgMargin + (n%svgColumns)*(svgTileW+svgGap)
			ty := y + (n/svgColumns)*(svgTileH+svgGap)
			writeTile(b, c, tx, ty, maxTotal)
			n++
		}
		rows := (n + svgColumns - 1) / svgColumns
		y += rows * (svgTileH + svgGap)
	}

	if len(r.Failures) > 0 {
		y += svgLine
		text(svgMargin, y, "bold", fmt.Sprintf("failures: %d", len(r.Failures)))
		for i, g := range groupFailures(r.Failures) {
			y += svgLine
			if i == svgMaxFailed {
				text(svgMargin, y, "normal", "…")
				break
			}
			text(svgMargin, y, "normal", fmt.Sprintf("%d × %s (e.g. %s)", g.count, g.message, g.examples[0]))
		}
	}
	return y + svgMargin
}

// writeTile draws one cell as a bar: free on top, placed, existing at the
// bottom, with a hover title.
func writeTile(b *bytes.Buffer, c CellReport, x, y, maxTotal int) {
	scale := func(mb int) int { return (mb*svgTileH + maxTotal - 1) / maxTotal }
	total := max(1, scale(c.Total.MemoryMB))
	existing := min(total, scale(c.ExistingMemoryMB))
	placed := min(total-existing, scale(c.InUseMemoryMB())-existing)
	bottom := y + svgTileH
	fmt.Fprintf(b, `<g><title>%s</title>`, esc(fmt.Sprintf("%s (zone %s, index %d): total %d MB, existing %d MB, placed %d MB (+%d lrps, +%d tasks), free %d MB%s",
		c.CellID, zoneName(c.Zone), c.Index, c.Total.MemoryMB, c.ExistingMemoryMB, c.PlacedMemoryMB, c.PlacedLRPs, c.PlacedTasks, c.Free.MemoryMB, tileNote(c))))
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, x, bottom-total, svgTileW, total, colourFree)
	if existing > 0 {
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, x, bottom-existing, svgTileW, existing, colourExisting)
	}
	if placed > 0 {
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, x, bottom-existing-placed, svgTileW, placed, colourPlaced)
	}
	if c.Evacuating {
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s" stroke-width="1.5"/>`, x, bottom-total, svgTileW, total, colourEvacuate)
	}
	b.WriteString("</g>\n")
}

func tileNote(c CellReport) string {
	switch {
	case c.Evacuating:
		return "; evacuating"
	case c.StrandedMemoryMB > 0:
		return "; stranded"
	}
	return ""
}

// esc escapes text for XML character data and attributes.
func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
