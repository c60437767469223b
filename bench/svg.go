package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
)

// SVG geometry.
const (
	svgWidth, svgHeight = 900, 420
	svgLeft, svgRight   = 80, 30
	svgTop, svgBottom   = 40, 50
)

// WriteSVG draws the timeline: instances RUNNING over time, with the end of
// the placement and the cell kill marked.
func (r *Result) WriteSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	pw, ph := float64(svgWidth-svgLeft-svgRight), float64(svgHeight-svgTop-svgBottom)
	maxT := 1.0
	if n := len(r.Timeline); n > 0 {
		maxT = math.Max(maxT, r.Timeline[n-1].Sec)
	}
	maxY := math.Max(1, float64(r.Setup.Instances))
	x := func(t float64) float64 { return svgLeft + pw*t/maxT }
	y := func(v float64) float64 { return svgTop + ph*(1-v/maxY) }

	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", svgWidth, svgHeight)
	fmt.Fprintf(bw, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(bw, `<text x="%d" y="22" font-size="14">gavel bench: %d instances on %d cells — %.0f placements/s (%.2f × raw etcd %.0f txn/s, %.2f × batched ceiling %.0f/s)</text>`+"\n",
		svgLeft, r.Setup.Instances, r.Setup.Cells, r.Placement.PerSecond, r.Placement.RatioToRawEtcd, r.RawEtcd.TxnsPerSecond,
		r.Placement.RatioToBatchedEtcd, r.Placement.BatchedCeiling)
	// Axes and grid.
	for i := 0; i <= 4; i++ {
		v := maxY * float64(i) / 4
		fmt.Fprintf(bw, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", svgLeft, y(v), svgWidth-svgRight, y(v))
		fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end">%.0f</text>`+"\n", svgLeft-6, y(v)+4, v)
	}
	step := niceStep(maxT / 8)
	for t := 0.0; t <= maxT+1e-9; t += step {
		fmt.Fprintf(bw, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x(t), svgTop, x(t), svgHeight-svgBottom)
		fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle">%gs</text>`+"\n", x(t), svgHeight-svgBottom+16, t)
	}
	fmt.Fprintf(bw, `<text x="%d" y="%d" text-anchor="middle">seconds since the first DesireLRP</text>`+"\n", svgLeft+int(pw/2), svgHeight-10)
	fmt.Fprintf(bw, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">instances RUNNING</text>`+"\n", svgTop+int(ph/2))
	// Markers: each label on its own line below the previous one, on a
	// white ground, placed left of its line when it would leave the plot.
	marks := 0
	mark := func(t float64, color, label string) {
		fmt.Fprintf(bw, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4 3"/>`+"\n", x(t), svgTop, x(t), svgHeight-svgBottom, color)
		ly := svgTop + 14 + 18*marks
		marks++
		w := 7.0 * float64(len([]rune(label)))
		lx, anchor := x(t)+4, "start"
		if lx+w > float64(svgWidth-svgRight) {
			lx, anchor = x(t)-4, "end"
		}
		rx := lx - 2
		if anchor == "end" {
			rx = lx - w - 2
		}
		fmt.Fprintf(bw, `<rect x="%.1f" y="%d" width="%.1f" height="16" fill="white" fill-opacity="0.85"/>`+"\n", rx, ly-12, w+4)
		fmt.Fprintf(bw, `<text x="%.1f" y="%d" fill="%s" text-anchor="%s">%s</text>`+"\n", lx, ly, color, anchor, label)
	}
	if d := r.Placement.DesireSeconds; d > 0 {
		mark(d, "#b60", fmt.Sprintf("all desired %.1fs", d))
	}
	if r.Placement.AllRunning {
		mark(r.Placement.Seconds, "#2a7", fmt.Sprintf("all running %.1fs", r.Placement.Seconds))
	}
	if rc := r.Recovery; rc != nil {
		mark(rc.KillAtSec, "#c33", fmt.Sprintf("kill %d cells", rc.KilledCells))
		if rc.AllRunning {
			mark(rc.KillAtSec+rc.Seconds, "#36c", fmt.Sprintf("recovered +%.1fs", rc.Seconds))
		}
	}
	// Desire progress, then the running curve, and a legend.
	fmt.Fprint(bw, `<polyline class="desired" fill="none" stroke="#b60" stroke-width="1.5" stroke-dasharray="6 3" points="`)
	for _, p := range r.Timeline {
		fmt.Fprintf(bw, "%.1f,%.1f ", x(p.Sec), y(float64(p.Desired)))
	}
	fmt.Fprint(bw, `"/>`+"\n")
	lx := float64(svgWidth - svgRight - 190)
	fmt.Fprintf(bw, `<rect x="%.1f" y="%d" width="186" height="40" fill="white" stroke="#ccc"/>`+"\n", lx, svgHeight-svgBottom-48)
	fmt.Fprintf(bw, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#b60" stroke-width="1.5" stroke-dasharray="6 3"/><text x="%.1f" y="%d">instances desired</text>`+"\n",
		lx+8, svgHeight-svgBottom-34, lx+36, svgHeight-svgBottom-34, lx+42, svgHeight-svgBottom-30)
	fmt.Fprintf(bw, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#1f5fbf" stroke-width="2"/><text x="%.1f" y="%d">instances RUNNING</text>`+"\n",
		lx+8, svgHeight-svgBottom-16, lx+36, svgHeight-svgBottom-16, lx+42, svgHeight-svgBottom-12)
	fmt.Fprint(bw, `<polyline class="running" fill="none" stroke="#1f5fbf" stroke-width="2" points="`)
	for _, p := range r.Timeline {
		fmt.Fprintf(bw, "%.1f,%.1f ", x(p.Sec), y(float64(p.Running)))
	}
	fmt.Fprint(bw, `"/>`+"\n</svg>\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write svg: %w", err)
	}
	return nil
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}
