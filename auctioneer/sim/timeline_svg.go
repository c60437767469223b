package sim

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Layout of the dynamic-run figure, in pixels: a header, one chart per
// time series and a CDF of the waits, stacked. Every figure a reader needs
// is printed as text next to its chart; nothing hides in a tooltip.
const (
	tlSVGWidth   = 960
	tlSVGMargin  = 20
	tlSVGLeft    = 80 // room for the y-axis labels
	tlSVGRight   = 20
	tlSVGChartH  = 110
	tlSVGLine    = 15
	tlSVGPanelGa = 28
	tlCDFPoints  = 400
)

var tlColours = []string{"#4e79a7", "#e15759", "#f28e2b", "#59a14f", "#b07aa1"}

// tlSeries is one line of a chart.
type tlSeries struct {
	name  string
	unit  string
	value func(TimelineSample) float64
}

type tlChart struct {
	title  string
	series []tlSeries
	// skipFirst leaves out the sample at time 0 (interval counters have none).
	skipFirst bool
}

func tlCharts(r *TimelineReport) []tlChart {
	iv := formatMS(r.Options.SampleIntervalMS)
	f := func(get func(TimelineSample) int) func(TimelineSample) float64 {
		return func(p TimelineSample) float64 { return float64(get(p)) }
	}
	return []tlChart{
		{title: "Placements and placement failures per " + iv, skipFirst: true, series: []tlSeries{
			{"placed", "", f(func(p TimelineSample) int { return p.Placed })},
			{"placement failures", "", f(func(p TimelineSample) int { return p.PlacementFailures })},
		}},
		{title: "Work waiting for a placement, and containers starting", series: []tlSeries{
			{"waiting", "", f(func(p TimelineSample) int { return p.Waiting })},
			{"starting", "", f(func(p TimelineSample) int { return p.Starting })},
		}},
		{title: "Wait (request → running) of the work that started running, per " + iv, skipFirst: true, series: []tlSeries{
			{"p99", "ms", func(p TimelineSample) float64 { return float64(p.WaitP99MS) }},
			{"p50", "ms", func(p TimelineSample) float64 { return float64(p.WaitP50MS) }},
		}},
		{title: "Balance: standard deviation of memory utilisation across cells up (0 = even)", series: []tlSeries{
			{"stddev", "", func(p TimelineSample) float64 { return p.MemoryUtilStddev }},
		}},
		{title: "Memory utilisation, mean across cells up", series: []tlSeries{
			{"mean", "", func(p TimelineSample) float64 { return p.MemoryUtilMean }},
		}},
		{title: "Stranded memory (free, but no request of the run fits) on cells up", series: []tlSeries{
			{"stranded", "MB", func(p TimelineSample) float64 { return float64(p.StrandedMemoryMB) }},
		}},
		{title: "Displaced instances per " + iv, skipFirst: true, series: []tlSeries{
			{"lost (cell failure)", "", f(func(p TimelineSample) int { return p.Lost })},
			{"evacuated (drain)", "", f(func(p TimelineSample) int { return p.Evacuated })},
			{"crashed", "", f(func(p TimelineSample) int { return p.Crashed })},
		}},
		{title: "Cells", series: []tlSeries{
			{"up", "", f(func(p TimelineSample) int { return p.CellsUp })},
			{"evacuating", "", f(func(p TimelineSample) int { return p.CellsEvacuating })},
			{"down", "", f(func(p TimelineSample) int { return p.CellsDown })},
		}},
	}
}

// WriteSVG draws the run as a standalone SVG document: a summary, the time
// series and the CDF of waits, with exact figures as text.
func (r *TimelineReport) WriteSVG(w io.Writer) error {
	var b bytes.Buffer
	y := tlSVGMargin
	text := func(x, y int, weight, anchor, s string) {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="%s" text-anchor="%s">%s</text>`+"\n", x, y, weight, anchor, tlEsc(s))
	}
	t := &r.Totals
	y += tlSVGLine
	text(tlSVGMargin, y, "bold", "start", fmt.Sprintf("Dynamic run · strategy %s · seed %d · %d cells · %d events · %s simulated",
		r.Strategy, r.Seed, r.Cells, r.Events, formatMS(r.EndMS)))
	y += tlSVGLine
	text(tlSVGMargin, y, "normal", "start", fmt.Sprintf("requests %d: ran %d, cancelled %d, failed %d, still waiting %d · auctions %d (largest batch %d) · placements %d · placement failures %d",
		t.Requested, t.Running, t.Cancelled, t.RequestsFailed, t.Open, t.Auctions, t.MaxBatch, t.Placed, t.PlacementFailures))
	y += tlSVGLine
	text(tlSVGMargin, y, "normal", "start", fmt.Sprintf("lost %d · evacuated %d · crashed %d · deploys %d started, %d completed (p50 %s, max %s)",
		t.Lost, t.Evacuated, t.Crashed, r.Deploys.Started, r.Deploys.Completed, formatMS(r.Deploys.Duration.P50MS), formatMS(r.Deploys.Duration.MaxMS)))
	y += tlSVGLine
	o := r.Options
	text(tlSVGMargin, y, "normal", "start", fmt.Sprintf("fetch %s · perform %s · batch window %s · container start %s · convergence every %s · sample every %s",
		formatMS(o.FetchMS), formatMS(o.PerformMS), formatMS(o.BatchWindowMS), formatMS(o.ContainerStartMS), formatMS(o.ConvergenceIntervalMS), formatMS(o.SampleIntervalMS)))
	y += tlSVGPanelGa / 2

	for _, c := range tlCharts(r) {
		y = r.writeChart(&b, c, y)
	}
	y = r.writeCDF(&b, y)

	ew := &errWriter{w: w}
	ew.printf(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	ew.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		tlSVGWidth, y, tlSVGWidth, y)
	ew.printf(`<rect width="%d" height="%d" fill="white"/>`+"\n", tlSVGWidth, y)
	_, _ = ew.Write(b.Bytes())
	ew.printf("</svg>\n")
	if ew.err != nil {
		return fmt.Errorf("write timeline svg: %w", ew.err)
	}
	return nil
}

// writeChart draws one time-series chart below y and returns the new y.
func (r *TimelineReport) writeChart(b *bytes.Buffer, c tlChart, y int) int {
	pts := r.Series
	if c.skipFirst && len(pts) > 1 {
		pts = pts[1:]
	}
	y += tlSVGPanelGa
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", tlSVGMargin, y, tlEsc(c.title))
	// One legend line per series with its exact figures.
	type stat struct{ min, max, mean, last float64 }
	var top float64
	stats := make([]stat, len(c.series))
	for i, s := range c.series {
		st := stat{min: 0, max: 0}
		var sum float64
		for j, p := range pts {
			v := s.value(p)
			if j == 0 || v < st.min {
				st.min = v
			}
			if j == 0 || v > st.max {
				st.max = v
			}
			sum += v
		}
		if len(pts) > 0 {
			st.mean = sum / float64(len(pts))
			st.last = s.value(pts[len(pts)-1])
		}
		stats[i] = st
		top = max(top, st.max)
	}
	for i, s := range c.series {
		y += tlSVGLine
		col := tlColours[i%len(tlColours)]
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/>`+"\n", tlSVGMargin, y-9, col)
		st := stats[i]
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", tlSVGMargin+14, y, tlEsc(fmt.Sprintf("%s: min %s · mean %s · max %s · at end %s",
			s.name, tlNum(st.min, s.unit), tlNum(st.mean, s.unit), tlNum(st.max, s.unit), tlNum(st.last, s.unit))))
	}
	if top <= 0 {
		top = 1
	}
	y += 8
	x0, x1 := tlSVGLeft, tlSVGWidth-tlSVGRight
	y0, y1 := y, y+tlSVGChartH
	unit := c.series[0].unit
	writeAxes(b, x0, x1, y0, y1, 0, top, unit, r.EndMS)
	end := float64(max(r.EndMS, 1))
	for i, s := range c.series {
		var pb bytes.Buffer
		for j, p := range pts {
			if j > 0 {
				pb.WriteByte(' ')
			}
			px := float64(x0) + float64(p.TMS)/end*float64(x1-x0)
			py := float64(y1) - s.value(p)/top*float64(y1-y0)
			pb.WriteString(strconv.FormatFloat(px, 'f', 1, 64))
			pb.WriteByte(',')
			pb.WriteString(strconv.FormatFloat(py, 'f', 1, 64))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.2" points="%s"/>`+"\n", tlColours[i%len(tlColours)], pb.String())
	}
	return y1 + tlSVGLine
}

// writeAxes draws a frame with y labels (0, half, top) and time labels.
func writeAxes(b *bytes.Buffer, x0, x1, y0, y1 int, lo, top float64, unit string, endMS int64) {
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999999"/>`+"\n", x0, y0, x1-x0, y1-y0)
	for _, f := range []float64{0, 0.5, 1} {
		yy := float64(y1) - f*float64(y1-y0)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dddddd"/>`+"\n", x0, yy, x1, yy)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, yy+4, tlEsc(tlNum(lo+f*(top-lo), unit)))
	}
	if endMS < 0 {
		return
	}
	for i := 0; i <= 4; i++ {
		xx := x0 + i*(x1-x0)/4
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="%s">%s</text>`+"\n", xx, y1+12, axisAnchor(i), tlEsc(formatMS(endMS*int64(i)/4)))
	}
}

// axisAnchor anchors the i-th of five time labels so the last one ends at
// the frame's right edge instead of running past the figure.
func axisAnchor(i int) string {
	if i == 4 {
		return "end"
	}
	return "middle"
}

// writeCDF draws the cumulative distribution of waits (request → running)
// with p50, p90, p99 and max marked and labelled.
func (r *TimelineReport) writeCDF(b *bytes.Buffer, y int) int {
	ws := r.waitsRun
	y += tlSVGPanelGa
	s := r.Waits.ToRunning
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", tlSVGMargin, y,
		tlEsc(fmt.Sprintf("CDF of waits, request → running (%d requests served)", s.Count)))
	y += tlSVGLine
	fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", tlSVGMargin, y, tlEsc(fmt.Sprintf("mean %s · p50 %s · p90 %s · p99 %s · max %s · still waiting at the end: %d (longest %s)",
		formatMS(int64(s.MeanMS)), formatMS(s.P50MS), formatMS(s.P90MS), formatMS(s.P99MS), formatMS(s.MaxMS), r.Totals.Open, formatMS(r.Waits.Open.MaxMS))))
	y += 8
	x0, x1 := tlSVGLeft, tlSVGWidth-tlSVGRight
	y0, y1 := y, y+tlSVGChartH*2
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999999"/>`+"\n", x0, y0, x1-x0, y1-y0)
	for _, f := range []float64{0, 0.5, 0.9, 0.99, 1} {
		yy := float64(y1) - f*float64(y1-y0)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dddddd"/>`+"\n", x0, yy, x1, yy)
		if f == 0.99 {
			continue // too close to 1 to label; the p99 marker names it
		}
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, yy+4, strconv.FormatFloat(f, 'f', -1, 64))
	}
	top := float64(max(s.MaxMS, 1))
	for i := 0; i <= 4; i++ {
		xx := x0 + i*(x1-x0)/4
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="%s">%s</text>`+"\n", xx, y1+12, axisAnchor(i), tlEsc(formatMS(int64(top)*int64(i)/4)))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">wait</text>`+"\n", (x0+x1)/2, y1+26)
	if len(ws) == 0 {
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">no request was served</text>`+"\n", (x0+x1)/2, (y0+y1)/2)
		return y1 + 26 + tlSVGMargin
	}
	px := func(v int64) float64 { return float64(x0) + float64(v)/top*float64(x1-x0) }
	py := func(f float64) float64 { return float64(y1) - f*float64(y1-y0) }
	var pb bytes.Buffer
	n := len(ws)
	steps := min(n, tlCDFPoints)
	for k := 0; k < steps; k++ {
		i := k * (n - 1) / max(steps-1, 1)
		if k > 0 {
			pb.WriteByte(' ')
		}
		fmt.Fprintf(&pb, "%.1f,%.1f", px(ws[i]), py(float64(i+1)/float64(n)))
	}
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", tlColours[0], pb.String())
	for i, m := range []struct {
		label string
		v     int64
		f     float64
	}{{"p50", s.P50MS, 0.5}, {"p90", s.P90MS, 0.9}, {"p99", s.P99MS, 0.99}, {"max", s.MaxMS, 1}} {
		x, yy := px(m.v), py(m.f)
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x, yy, tlColours[1])
		anchor := "start"
		dx := 6.0
		if x > float64(x1)-120 {
			anchor, dx = "end", -6
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`+"\n", x+dx, yy+4+float64(i%2)*10, anchor, tlEsc(m.label+" "+formatMS(m.v)))
	}
	return y1 + 26 + tlSVGMargin
}

// tlNum prints a chart value: integers plainly, fractions to 4 places,
// with a unit (ms values as durations).
func tlNum(v float64, unit string) string {
	switch unit {
	case "ms":
		return formatMS(int64(v))
	case "":
		if v == float64(int64(v)) {
			return strconv.FormatInt(int64(v), 10)
		}
		return strings.TrimRight(strconv.FormatFloat(v, 'f', 4, 64), "0")
	}
	if v == float64(int64(v)) {
		return strconv.FormatInt(int64(v), 10) + " " + unit
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
}

// tlEsc escapes text for XML character data.
func tlEsc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
