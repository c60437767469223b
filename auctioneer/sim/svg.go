package sim

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/gavelhq/gavel/auctioneer"
)

// SVG layout, in pixels, and bounds. Every figure is printed as text next
// to what draws it, so a PNG or a printout loses nothing; no wall time is
// drawn (it belongs to the machine, not to the placement).
const (
	svgMargin    = 16
	svgLine      = 16
	svgRow       = 14
	svgLabelW    = 170
	svgBarW      = 260
	svgBarH      = 10
	svgPanelW    = 820
	svgHistBinW  = 64
	svgHistH     = 56
	svgHistBins  = 10
	svgMaxFailed = 12

	// SVGMaxCellRows is the most cells drawn one by one, as a row each with
	// its numbers; more cells are drawn as per-zone histograms.
	SVGMaxCellRows = 48
	// SVGMaxZones is the most zones drawn one by one; more are drawn as one
	// group.
	SVGMaxZones = 12
	// SVGMaxApps bounds the apps whose spread is drawn.
	SVGMaxApps = 8
	// DefaultSVGTopApps is how many apps' spread is drawn when none are named.
	DefaultSVGTopApps = 3
	// svgMaxSpreadCells is the most cells listed one by one for an app.
	svgMaxSpreadCells = 16
	// svgMaxLabel is the longest cell or zone label drawn, in bytes.
	svgMaxLabel = 24

	colourExisting = "#4e79a7"
	colourPlaced   = "#f28e2b"
	colourFree     = "#e8e8e8"
	colourEvacuate = "#d62728"
	colourCells    = "#59a14f"
	colourApp      = "#b07aa1"
)

// SVGOptions choose what WriteSVGWith draws besides the resources.
type SVGOptions struct {
	// Apps are the process guids whose spread over cells and zones is drawn
	// (at most SVGMaxApps). Empty means the TopApps apps with the most
	// instances placed in the first report.
	Apps []string
	// TopApps is how many apps are drawn when Apps is empty; 0 means
	// DefaultSVGTopApps, a negative value none.
	TopApps int
}

// WriteSVG is WriteSVGWith with default options.
func WriteSVG(w io.Writer, reports ...*Report) error {
	return WriteSVGWith(w, SVGOptions{}, reports...)
}

// WriteSVGWith draws one panel per report, side by side, as a standalone
// SVG document. Each panel holds a summary; memory, disk and container
// sections (each cell as a bar with its numbers, or, beyond SVGMaxCellRows
// cells, per-zone histograms of how full cells are, which the figure says);
// the spread of selected apps over zones and cells; and the failures
// grouped by reason. Reports of one scenario compare directly: the same
// apps are drawn in every panel.
func WriteSVGWith(w io.Writer, o SVGOptions, reports ...*Report) error {
	if len(reports) == 0 {
		return fmt.Errorf("write svg: no reports")
	}
	if len(o.Apps) > SVGMaxApps {
		return fmt.Errorf("write svg: at most %d apps (got %d)", SVGMaxApps, len(o.Apps))
	}
	apps := o.Apps
	if len(apps) == 0 {
		n := o.TopApps
		if n == 0 {
			n = DefaultSVGTopApps
		}
		apps = topApps(reports[0], min(n, SVGMaxApps))
	}
	var body bytes.Buffer
	height := 0
	for i, r := range reports {
		fmt.Fprintf(&body, `<g class="panel" data-strategy="%s" transform="translate(%d,0)">`+"\n", esc(r.Strategy), i*svgPanelW)
		if i > 0 {
			fmt.Fprintf(&body, `<line x1="0" y1="%d" x2="0" y2="100%%" stroke="#bbbbbb"/>`+"\n", svgMargin)
		}
		p := &panel{b: &body, r: r}
		height = max(height, p.draw(apps))
		body.WriteString("</g>\n")
	}
	width := len(reports) * svgPanelW
	ew := &errWriter{w: w}
	ew.printf(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	ew.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	ew.printf(`<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	_, _ = ew.Write(body.Bytes())
	ew.printf("</svg>\n")
	if ew.err != nil {
		return fmt.Errorf("write svg: %w", ew.err)
	}
	return nil
}

// panel draws one report; y is the baseline of the next line.
type panel struct {
	b *bytes.Buffer
	r *Report
	y int
}

func (p *panel) text(x int, weight, s string) {
	fmt.Fprintf(p.b, `<text x="%d" y="%d" font-weight="%s">%s</text>`+"\n", x, p.y, weight, esc(s))
}

func (p *panel) line(weight, s string) {
	p.y += svgLine
	p.text(svgMargin, weight, s)
}

func (p *panel) rect(x, y, w, h int, fill string) {
	if w > 0 && h > 0 {
		fmt.Fprintf(p.b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, x, y, w, h, fill)
	}
}

func (p *panel) outline(x, y, w, h int, stroke string) {
	fmt.Fprintf(p.b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s" stroke-width="1.5"/>`, x, y, w, h, stroke)
}

// draw draws the panel at the origin and returns its height.
func (p *panel) draw(apps []string) int {
	r := p.r
	p.y = svgMargin
	p.line("bold", fmt.Sprintf("%s (seed %d): placed %d of %d, failed %d, on %d cells", r.Strategy, r.Seed, r.Placed, r.Requested, r.Failed, len(r.Cells)))
	p.line("normal", fmt.Sprintf("distribution score %.4f (before %.4f) · free memory %d MB · stranded memory %d MB",
		r.DistributionScore, r.InitialDistributionScore, r.FreeMemoryMB, r.StrandedMemoryMB))
	if r.Engine.CellsExcluded > 0 {
		p.line("normal", fmt.Sprintf("%d evacuating cells took no part", r.Engine.CellsExcluded))
	}
	rows := len(r.Cells) <= SVGMaxCellRows
	p.y += svgLine
	if rows {
		p.legend([]legendItem{{colourExisting, "existing", false}, {colourPlaced, "placed", false}, {colourFree, "free", false}, {colourEvacuate, "evacuating (outline)", true}})
	} else {
		p.legend([]legendItem{{colourCells, "cells in a band of use", false}})
		p.line("normal", fmt.Sprintf("%d cells are too many to draw one by one (more than %d): each zone shows how many cells are in each band of use after the run.", len(r.Cells), SVGMaxCellRows))
	}
	for _, res := range resources {
		p.resource(res, rows)
	}
	p.spread(apps)
	p.failures()
	return p.y + svgMargin
}

type legendItem struct {
	colour, label string
	outline       bool
}

// legend draws swatches on the current line: filled, or outline only.
func (p *panel) legend(items []legendItem) {
	x := svgMargin
	for _, l := range items {
		p.b.WriteString(`<g class="legend-item">`)
		if l.outline {
			p.outline(x, p.y-9, 10, 10, l.colour)
		} else {
			p.rect(x, p.y-9, 10, 10, l.colour)
		}
		p.b.WriteString("\n")
		p.text(x+14, "normal", l.label)
		p.b.WriteString("</g>\n")
		x += 14 + 6*len(l.label) + 16
	}
}

// resource is one drawn resource: its name, unit and per-cell figures.
type resource struct {
	name, unit string
	of         func(c *CellReport) usage
}

// usage is one cell's figures of one resource.
type usage struct{ total, existing, placed, free int }

var resources = []resource{
	{"memory", " MB", func(c *CellReport) usage {
		return usage{c.Total.MemoryMB, c.ExistingMemoryMB, c.PlacedMemoryMB, c.Free.MemoryMB}
	}},
	{"disk", " MB", func(c *CellReport) usage {
		return usage{c.Total.DiskMB, c.ExistingDiskMB, c.PlacedDiskMB, c.Free.DiskMB}
	}},
	{"containers", "", func(c *CellReport) usage {
		return usage{c.Total.Containers, c.ExistingLRPs + c.ExistingTasks, c.PlacedLRPs + c.PlacedTasks, c.Free.Containers}
	}},
}

// cellGroup is the cells drawn together: a zone, or every zone.
type cellGroup struct {
	label string
	cells []int
}

// groups returns the zones in report order, or one group of all cells when
// there are more than SVGMaxZones.
func (p *panel) groups() []cellGroup {
	if len(p.r.Zones) > SVGMaxZones {
		all := make([]int, len(p.r.Cells))
		for i := range all {
			all[i] = i
		}
		return []cellGroup{{label: fmt.Sprintf("all %d zones (more than %d: drawn together)", len(p.r.Zones), SVGMaxZones), cells: all}}
	}
	pos := make(map[string]int, len(p.r.Zones))
	gs := make([]cellGroup, len(p.r.Zones))
	for i, z := range p.r.Zones {
		pos[z.Zone] = i
		gs[i].label = "zone " + label(zoneName(z.Zone))
	}
	for i := range p.r.Cells {
		g := pos[p.r.Cells[i].Zone]
		gs[g].cells = append(gs[g].cells, i)
	}
	return gs
}

// sum totals a resource over cells; free only over cells taking part.
func (p *panel) sum(res resource, cells []int) (u usage, evacuating int) {
	for _, ci := range cells {
		c := &p.r.Cells[ci]
		cu := res.of(c)
		u.total += cu.total
		u.existing += cu.existing
		u.placed += cu.placed
		if c.Evacuating {
			evacuating++
			continue
		}
		u.free += cu.free
	}
	return u, evacuating
}

func (u usage) String() string {
	return fmt.Sprintf("existing %d · placed %d · free %d · total %d", u.existing, u.placed, u.free, u.total)
}

// resource draws one resource's section.
func (p *panel) resource(res resource, rows bool) {
	all := make([]int, len(p.r.Cells))
	for i := range all {
		all[i] = i
	}
	u, _ := p.sum(res, all)
	fmt.Fprintf(p.b, `<g class="resource" data-resource="%s">`+"\n", res.name)
	p.y += svgLine / 2
	p.line("bold", fmt.Sprintf("%s%s: %s (free counts cells taking part)", res.name, paren(res.unit), u))
	maxTotal := 1
	for i := range p.r.Cells {
		maxTotal = max(maxTotal, res.of(&p.r.Cells[i]).total)
	}
	for _, g := range p.groups() {
		gu, evac := p.sum(res, g.cells)
		note := ""
		if evac > 0 {
			note = fmt.Sprintf(" · %d evacuating", evac)
		}
		p.line("normal", fmt.Sprintf("%s · %d cells%s: %s", g.label, len(g.cells), note, gu))
		if rows {
			for _, ci := range g.cells {
				p.cellRow(res, &p.r.Cells[ci], maxTotal)
			}
		} else {
			p.histogram(res, g.cells)
		}
	}
	p.b.WriteString("</g>\n")
}

func paren(unit string) string {
	if unit == "" {
		return ""
	}
	return " (" + unit[1:] + ")"
}

// cellRow draws one cell: its label, a bar to scale and its numbers.
func (p *panel) cellRow(res resource, c *CellReport, maxTotal int) {
	u := res.of(c)
	p.y += svgRow
	scale := func(n int) int { return (n*svgBarW + maxTotal/2) / maxTotal }
	x, top := svgMargin+svgLabelW, p.y-svgBarH+1
	total := max(1, scale(u.total))
	existing := min(total, scale(u.existing))
	placed := min(total-existing, scale(u.existing+u.placed)-existing)
	fmt.Fprintf(p.b, `<g class="cell" data-cell="%s">`, esc(c.CellID))
	p.rect(x, top, total, svgBarH, colourFree)
	p.rect(x, top, existing, svgBarH, colourExisting)
	p.rect(x+existing, top, placed, svgBarH, colourPlaced)
	if c.Evacuating {
		p.outline(x, top, total, svgBarH, colourEvacuate)
	}
	p.b.WriteString("\n")
	p.text(svgMargin, "normal", label(c.CellID))
	note := ""
	switch {
	case c.Evacuating:
		note = " (evacuating)"
	case res.name == "memory" && c.StrandedMemoryMB > 0:
		note = " (stranded)"
	}
	p.text(x+svgBarW+8, "normal", fmt.Sprintf("%d + %d of %d, free %d%s", u.existing, u.placed, u.total, u.free, note))
	p.b.WriteString("</g>\n")
}

// histogram draws how many cells of the group (evacuating ones aside) are
// in each tenth of use after the run, each count written above its bar.
func (p *panel) histogram(res resource, cells []int) {
	var bins [svgHistBins]int
	var used []float64
	for _, ci := range cells {
		c := &p.r.Cells[ci]
		if c.Evacuating {
			continue
		}
		u := res.of(c)
		f := 0.0
		if u.total > 0 {
			f = float64(u.existing+u.placed) / float64(u.total)
		}
		used = append(used, f)
		bins[min(svgHistBins-1, max(0, int(f*svgHistBins)))]++
	}
	if len(used) == 0 {
		return
	}
	slices.Sort(used)
	p.line("normal", fmt.Sprintf("in use after the run: min %.1f%% · median %.1f%% · max %.1f%% of a cell's %s",
		100*used[0], 100*used[len(used)/2], 100*used[len(used)-1], res.name))
	most := max(1, slices.Max(bins[:]))
	p.y += svgLine + svgHistH
	fmt.Fprintf(p.b, `<g class="histogram" data-resource="%s">`+"\n", res.name)
	for i, n := range bins {
		x := svgMargin + i*svgHistBinW
		h := (n*svgHistH + most - 1) / most
		p.rect(x, p.y-h, svgHistBinW-6, h, colourCells)
		fmt.Fprintf(p.b, `<text x="%d" y="%d">%d</text>`+"\n", x, p.y-h-2, n)
		fmt.Fprintf(p.b, `<text x="%d" y="%d">%d–%d%%</text>`+"\n", x, p.y+svgRow-2, 10*i, 10*(i+1))
	}
	p.b.WriteString("</g>\n")
	p.y += svgRow
}

// topApps returns up to n process guids with the most instances placed by
// the report, most first, ties by name.
func topApps(r *Report, n int) []string {
	if n <= 0 {
		return nil
	}
	counts := map[string]int{}
	for i := range r.Placements {
		if pl := &r.Placements[i]; pl.Kind == auctioneer.KindLRP {
			counts[pl.ProcessGUID]++
		}
	}
	guids := make([]string, 0, len(counts))
	for g := range counts {
		guids = append(guids, g)
	}
	slices.SortFunc(guids, func(a, b string) int { return cmp.Or(counts[b]-counts[a], cmp.Compare(a, b)) })
	return guids[:min(n, len(guids))]
}

// appSpread is where one app's instances are after the run.
type appSpread struct {
	placed, existing int
	perCell          map[int]int // cell index → instances
}

// spreadOf counts an app's instances per cell: those placed by the run and
// those already running.
func (p *panel) spreadOf(guid string) appSpread {
	s := appSpread{perCell: map[int]int{}}
	index := make(map[string]int, len(p.r.Cells))
	for i := range p.r.Cells {
		index[p.r.Cells[i].CellID] = i
	}
	for i := range p.r.Placements {
		if pl := &p.r.Placements[i]; pl.Kind == auctioneer.KindLRP && pl.ProcessGUID == guid {
			s.placed++
			s.perCell[index[pl.CellID]]++
		}
	}
	if sc := p.r.scenario; sc != nil && len(sc.Cells) == len(p.r.Cells) {
		for ci := range sc.Cells {
			for _, l := range sc.Cells[ci].LRPs {
				if l.ProcessGUID == guid {
					s.existing++
					s.perCell[ci]++
				}
			}
		}
	}
	return s
}

// spread draws each app's instances per zone and per cell, as text and bars.
func (p *panel) spread(apps []string) {
	if len(apps) == 0 {
		return
	}
	p.y += svgLine / 2
	p.line("bold", fmt.Sprintf("spread of %d apps over zones and cells (instances after the run, already running included)", len(apps)))
	for _, guid := range apps {
		s := p.spreadOf(guid)
		total := s.placed + s.existing
		most := 0
		for _, n := range s.perCell {
			most = max(most, n)
		}
		fmt.Fprintf(p.b, `<g class="spread" data-app="%s">`+"\n", esc(guid))
		p.line("bold", fmt.Sprintf("%s: %s (%d placed, %d already running) on %s, at most %d on one cell",
			label(guid), plural(total, "instance"), s.placed, s.existing, plural(len(s.perCell), "cell"), most))
		if total > 0 {
			p.spreadZones(s, total)
			p.spreadCells(s, most)
		}
		p.b.WriteString("</g>\n")
	}
}

// spreadZones draws an app's instances per zone, most first.
func (p *panel) spreadZones(s appSpread, total int) {
	type zoneCount struct {
		zone             string
		instances, cells int
	}
	byZone := map[string]*zoneCount{}
	for ci, n := range s.perCell {
		z := p.r.Cells[ci].Zone
		zc := byZone[z]
		if zc == nil {
			zc = &zoneCount{zone: z}
			byZone[z] = zc
		}
		zc.instances += n
		zc.cells++
	}
	zs := make([]*zoneCount, 0, len(p.r.Zones))
	for _, z := range p.r.Zones {
		if zc := byZone[z.Zone]; zc != nil {
			zs = append(zs, zc)
		} else {
			zs = append(zs, &zoneCount{zone: z.Zone})
		}
	}
	slices.SortStableFunc(zs, func(a, b *zoneCount) int { return b.instances - a.instances })
	for i, zc := range zs {
		if i == SVGMaxZones {
			rest, cells := 0, 0
			for _, z := range zs[i:] {
				rest += z.instances
				cells += z.cells
			}
			p.line("normal", fmt.Sprintf("and %s: %s on %s", plural(len(zs)-i, "more zone"), plural(rest, "instance"), plural(cells, "cell")))
			break
		}
		p.y += svgRow
		w := (zc.instances*svgBarW + total/2) / total
		p.rect(svgMargin+svgLabelW, p.y-svgBarH+1, w, svgBarH, colourApp)
		p.b.WriteString("\n")
		p.text(svgMargin, "normal", "zone "+label(zoneName(zc.zone)))
		p.text(svgMargin+svgLabelW+svgBarW+8, "normal", fmt.Sprintf("%s (%.1f%%) on %s", plural(zc.instances, "instance"), 100*float64(zc.instances)/float64(total), plural(zc.cells, "cell")))
	}
}

// spreadCells writes how many cells hold 1, 2, … instances of the app and,
// when few cells hold it, each of them.
func (p *panel) spreadCells(s appSpread, most int) {
	hist := map[int]int{}
	for _, n := range s.perCell {
		hist[n]++
	}
	ks := make([]int, 0, len(hist))
	for k := range hist {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var b []byte
	b = append(b, "cells holding k instances:"...)
	for i, k := range ks {
		if i == 10 {
			rest := 0
			for _, k2 := range ks[i:] {
				rest += hist[k2]
			}
			b = fmt.Appendf(b, " · %d–%d → %s", k, most, plural(rest, "cell"))
			break
		}
		if i > 0 {
			b = append(b, " ·"...)
		}
		b = fmt.Appendf(b, " %d → %s", k, plural(hist[k], "cell"))
	}
	p.line("normal", string(b))
	if len(s.perCell) > svgMaxSpreadCells {
		return
	}
	cells := make([]int, 0, len(s.perCell))
	for ci := range s.perCell {
		cells = append(cells, ci)
	}
	slices.Sort(cells)
	for _, ci := range cells {
		n := s.perCell[ci]
		p.y += svgRow
		p.rect(svgMargin+svgLabelW, p.y-svgBarH+1, (n*svgBarW+most/2)/max(1, most), svgBarH, colourApp)
		p.b.WriteString("\n")
		c := &p.r.Cells[ci]
		p.text(svgMargin, "normal", label(c.CellID)+" ("+label(zoneName(c.Zone))+")")
		p.text(svgMargin+svgLabelW+svgBarW+8, "normal", plural(n, "instance"))
	}
}

// failures lists the failures grouped by reason.
func (p *panel) failures() {
	if len(p.r.Failures) == 0 {
		return
	}
	p.y += svgLine / 2
	p.line("bold", fmt.Sprintf("failures: %d", len(p.r.Failures)))
	for i, g := range groupFailures(p.r.Failures) {
		if i == svgMaxFailed {
			p.line("normal", "…")
			break
		}
		p.line("normal", fmt.Sprintf("%d × %s (e.g. %s)", g.count, g.message, label(g.examples[0])))
	}
}

// label shortens a name to svgMaxLabel bytes (on a rune boundary).
func label(s string) string {
	if len(s) <= svgMaxLabel {
		return s
	}
	cut := svgMaxLabel
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// esc escapes text for XML character data and attributes.
func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// plural writes n and the noun, with an s unless n is 1: "1 cell", "2 cells".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
