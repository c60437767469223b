package sim

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gavelhq/gavel/auctioneer"
)

// JSONReport is the --format json output (issue 4's contract).
type JSONReport struct {
	// Placements lists the items placed, in placement order.
	Placements []JSONPlacement `json:"placements"`
	// Failures lists the items not placed, in placement order.
	Failures []JSONFailure `json:"failures"`
	// Metrics summarise the run.
	Metrics JSONMetrics `json:"metrics"`
}

// JSONPlacement is one placed item; LRPs carry process_guid and index,
// tasks task_guid.
type JSONPlacement struct {
	// Kind is "lrp" or "task".
	Kind string `json:"kind"`
	// ProcessGUID is the LRP's process guid.
	ProcessGUID string `json:"process_guid,omitempty"`
	// Index is the LRP's instance index.
	Index *int `json:"index,omitempty"`
	// TaskGUID is the task's guid.
	TaskGUID string `json:"task_guid,omitempty"`
	// CellID is the winning cell.
	CellID string `json:"cell_id"`
}

// JSONFailure is one item not placed, with Diego's placement error.
type JSONFailure struct {
	// Kind is "lrp" or "task".
	Kind string `json:"kind"`
	// ProcessGUID is the LRP's process guid.
	ProcessGUID string `json:"process_guid,omitempty"`
	// Index is the LRP's instance index.
	Index *int `json:"index,omitempty"`
	// TaskGUID is the task's guid.
	TaskGUID string `json:"task_guid,omitempty"`
	// Error is the placement error.
	Error string `json:"error"`
}

// JSONMetrics are the run's figures.
type JSONMetrics struct {
	// Placed counts the items placed.
	Placed int `json:"placed"`
	// Failed counts the items not placed.
	Failed int `json:"failed"`
	// DistributionScore is stddev/mean of per-cell memory in use after the run.
	DistributionScore float64 `json:"distribution_score"`
	// WallMS is the placement's wall time in milliseconds.
	WallMS float64 `json:"wall_ms"`
	// PerCell counts, per cell id, what this run placed there.
	PerCell map[string]JSONCell `json:"per_cell"`
	// PerZone counts, per zone, what this run placed there.
	PerZone map[string]JSONZone `json:"per_zone"`
}

// JSONCell is what the run placed on one cell.
type JSONCell struct {
	// LRPs counts the LRP instances placed.
	LRPs int `json:"lrps"`
	// Tasks counts the tasks placed.
	Tasks int `json:"tasks"`
	// MemoryUsedMB is the memory the placed work uses.
	MemoryUsedMB int `json:"memory_used_mb"`
}

// JSONZone is what the run placed in one zone.
type JSONZone struct {
	// LRPs counts the LRP instances placed.
	LRPs int `json:"lrps"`
	// Tasks counts the tasks placed.
	Tasks int `json:"tasks"`
}

// JSON returns the report in the --format json shape.
func (r *Report) JSON() JSONReport {
	out := r.jsonSummary()
	for _, p := range r.Placements {
		jp := JSONPlacement{Kind: string(p.Kind), CellID: p.CellID}
		if p.Kind == auctioneer.KindLRP {
			jp.ProcessGUID, jp.Index = p.ProcessGUID, &p.Index
		} else {
			jp.TaskGUID = p.TaskGUID
		}
		out.Placements = append(out.Placements, jp)
	}
	for _, f := range r.Failures {
		jf := JSONFailure{Kind: string(f.Kind), Error: f.Message}
		if f.Kind == auctioneer.KindLRP {
			jf.ProcessGUID, jf.Index = f.ProcessGUID, &f.Index
		} else {
			jf.TaskGUID = f.TaskGUID
		}
		out.Failures = append(out.Failures, jf)
	}
	return out
}

// jsonSummary is the JSON report with empty placement and failure lists.
func (r *Report) jsonSummary() JSONReport {
	out := JSONReport{
		Placements: []JSONPlacement{},
		Failures:   []JSONFailure{},
		Metrics: JSONMetrics{
			Placed:            r.Placed,
			Failed:            r.Failed,
			DistributionScore: r.DistributionScore,
			WallMS:            float64(r.Wall.Microseconds()) / 1000,
			PerCell:           make(map[string]JSONCell, len(r.Cells)),
			PerZone:           make(map[string]JSONZone, len(r.Zones)),
		},
	}
	for _, c := range r.Cells {
		out.Metrics.PerCell[c.CellID] = JSONCell{LRPs: c.PlacedLRPs, Tasks: c.PlacedTasks, MemoryUsedMB: c.PlacedMemoryMB}
	}
	for _, z := range r.Zones {
		out.Metrics.PerZone[z.Zone] = JSONZone{LRPs: z.PlacedLRPs, Tasks: z.PlacedTasks}
	}
	return out
}

// WriteJSON writes the report in the --format json shape (FullJSON),
// indented, streaming the placements and failures (see report_json.go).
func (r *Report) WriteJSON(w io.Writer) error {
	full := FullJSONReport{JSONReport: r.jsonSummary(), Metadata: r.Metadata, Capacity: r.Capacity, StartingDistribution: r.Starting}
	if err := r.streamJSON(w, full); err != nil {
		return fmt.Errorf("write json report: %w", err)
	}
	return nil
}

// barWidth is the width of a cell's memory bar in the text report.
const barWidth = 40

// WriteText writes the report for people: summary (free and stranded
// memory, disk and containers), zones, one row per cell with its free
// memory, disk and containers and a memory bar (# existing, + placed,
// . free) and failures grouped by reason.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("Strategy %s (seed %d): placed %d of %d (%d failed) among %d cells in %s\n",
		r.Strategy, r.Seed, r.Placed, r.Requested, r.Failed, len(r.Cells), formatWall(r.Wall))
	ew.printf("Distribution score %.4f (before: %.4f); free memory %d MB, stranded %d MB\n",
		r.DistributionScore, r.InitialDistributionScore, r.FreeMemoryMB, r.StrandedMemoryMB)
	capacity := r.Capacity
	ew.printf("Free: %d MB memory, %d MB disk, %d containers; stranded on %d cells: %d MB memory, %d MB disk, %d containers\n",
		capacity.Free.MemoryMB, capacity.Free.DiskMB, capacity.Free.Containers, capacity.StrandedCells, capacity.Stranded.MemoryMB, capacity.Stranded.DiskMB, capacity.Stranded.Containers)
	if r.Engine.CellsExcluded > 0 {
		ew.printf("%d evacuating cells took no part\n", r.Engine.CellsExcluded)
	}

	ew.printf("\nZones\n")
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ZONE\tCELLS\tTOTAL MB\tEXISTING MB\tPLACED MB\t+LRPS\t+TASKS")
	for _, z := range r.Zones {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", zoneName(z.Zone), z.Cells, z.TotalMemoryMB, z.ExistingMemoryMB, z.PlacedMemoryMB, z.PlacedLRPs, z.PlacedTasks)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write text report: %w", err)
	}

	maxTotal := 1
	for _, c := range r.Cells {
		maxTotal = max(maxTotal, c.Total.MemoryMB)
	}
	ew.printf("\nCells (memory bar: # existing, + placed, . free; full width = %d MB)\n", maxTotal)
	tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CELL\tZONE\tTOTAL MB\tEXISTING MB\tPLACED MB\tFREE MB\tFREE DISK MB\tFREE CONTAINERS\t+LRPS\t+TASKS\tMEMORY")
	for _, c := range r.Cells {
		note := ""
		if c.Evacuating {
			note = " evacuating"
		} else if c.StrandedMemoryMB > 0 {
			note = " stranded"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s%s\n", c.CellID, zoneName(c.Zone), c.Total.MemoryMB,
			c.ExistingMemoryMB, c.PlacedMemoryMB, c.Free.MemoryMB, c.Free.DiskMB, c.Free.Containers, c.PlacedLRPs, c.PlacedTasks, memoryBar(c, maxTotal), note)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write text report: %w", err)
	}

	if len(r.Failures) > 0 {
		ew.printf("\nFailures (%d)\n", len(r.Failures))
		for _, g := range groupFailures(r.Failures) {
			ew.printf("  %d × %s\n      e.g. %s\n", g.count, g.message, strings.Join(g.examples, ", "))
			if len(g.why) > 0 {
				ew.printf("      %s\n", g.why)
			}
		}
	}
	if ew.err != nil {
		return fmt.Errorf("write text report: %w", ew.err)
	}
	return nil
}

// memoryBar draws a cell's memory to scale.
func memoryBar(c CellReport, maxTotal int) string {
	cells := func(mb int) int { return (mb*barWidth + maxTotal/2) / maxTotal }
	existing := cells(c.ExistingMemoryMB)
	placed := cells(c.InUseMemoryMB()) - existing
	free := max(0, cells(c.Total.MemoryMB)-existing-placed)
	return strings.Repeat("#", existing) + strings.Repeat("+", placed) + strings.Repeat(".", free)
}

func zoneName(z string) string {
	if z == "" {
		return "(none)"
	}
	return z
}

func formatWall(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000)
}

// failureGroup is the failures that share one placement error.
type failureGroup struct {
	message  string
	count    int
	examples []string
	why      string
}

// groupFailures groups failures by message, largest group first.
func groupFailures(fs []auctioneer.Failure) []failureGroup {
	byMsg := map[string]*failureGroup{}
	var groups []*failureGroup
	for _, f := range fs {
		g := byMsg[f.Message]
		if g == nil {
			g = &failureGroup{message: f.Message, why: explain(f.Rejections)}
			byMsg[f.Message] = g
			groups = append(groups, g)
		}
		g.count++
		if len(g.examples) < 3 {
			id := f.TaskGUID
			if f.Kind == auctioneer.KindLRP {
				id = fmt.Sprintf("%s.%d", f.ProcessGUID, f.Index)
			}
			g.examples = append(g.examples, id)
		}
	}
	slices.SortStableFunc(groups, func(a, b *failureGroup) int { return b.count - a.count })
	out := make([]failureGroup, len(groups))
	for i, g := range groups {
		out[i] = *g
	}
	return out
}

// explain turns rejections into "cells turned down: 3 rootfs mismatch, 2
// insufficient memory".
func explain(rs []auctioneer.Rejection) string {
	if len(rs) == 0 {
		return ""
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%d %s", r.Cells, r.Reason)
	}
	return "cells turned down: " + strings.Join(parts, ", ")
}

// WriteCompareTable writes one row per report: the strategies side by side.
func WriteCompareTable(w io.Writer, reports []*Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STRATEGY\tPLACED\tFAILED\tDISTRIBUTION\tCELLS USED\tFREE MB\tSTRANDED MB\tWALL MS")
	for _, r := range reports {
		used := 0
		for _, c := range r.Cells {
			if c.PlacedLRPs+c.PlacedTasks > 0 {
				used++
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.4f\t%d\t%d\t%d\t%.3f\n", r.Strategy, r.Placed, r.Failed, r.DistributionScore,
			used, r.FreeMemoryMB, r.StrandedMemoryMB, float64(r.Wall.Microseconds())/1000)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write comparison: %w", err)
	}
	return nil
}

// errWriter keeps the first write error so a report can be written without
// checking every line.
type errWriter struct {
	w   io.Writer
	err error
}

// Write implements io.Writer, remembering the first error.
func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// printf formats to the writer.
func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }
