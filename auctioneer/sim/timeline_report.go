package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// TimelineReport is the outcome of a dynamic run. Its JSON form (WriteJSON)
// holds everything but Wall, so the same inputs give the same bytes.
type TimelineReport struct {
	// Strategy and Seed are the engine's; auction n uses Seed + n, as the
	// auctioneer does.
	Strategy string `json:"strategy"`
	Seed     int64  `json:"seed"`
	// Options are the timeline options in effect, defaults filled in.
	Options TimelineOptions `json:"options"`
	// EndMS is the simulated time the run ended at.
	EndMS int64 `json:"end_ms"`
	// Events counts the timeline's events; Cells the scenario's cells.
	Events int `json:"events"`
	Cells  int `json:"cells"`
	// Totals count what happened over the whole run.
	Totals TimelineTotals `json:"totals"`
	// Waits summarise the placement requests that were served.
	Waits TimelineWaits `json:"waits"`
	// WaitsDropped counts served requests beyond MaxWaitSamples, left out
	// of Waits (they still count in Totals).
	WaitsDropped int `json:"waits_dropped"`
	// Deploys summarise the rolling deploys.
	Deploys DeployStats `json:"deploys"`
	// Series has one sample at time 0, one per sample interval and one at
	// the end; counters count since the previous sample.
	Series []TimelineSample `json:"series"`
	// Wall is the run's wall time (not in the JSON).
	Wall time.Duration `json:"-"`

	// waitsRun is every served request's wait until running, sorted (the CDF).
	waitsRun []int64
}

// TimelineTotals count a run's happenings.
type TimelineTotals struct {
	// Requested counts placement requests: arrivals, scale-ups, deploy
	// steps, tasks, crash restarts, replacements of lost and evacuated
	// instances. A request placed again before it ran stays one request.
	Requested int `json:"requested"`
	// Running counts requests served: the work ran.
	Running int `json:"running"`
	// Cancelled counts requests whose work was removed before it ran.
	Cancelled int `json:"cancelled"`
	// RequestsFailed counts task requests that failed (retries used up,
	// expired, or their cell went).
	RequestsFailed int `json:"requests_failed"`
	// Open counts requests still waiting at the end (see Waits.Open).
	Open int `json:"open"`
	// Auctions counts the engine runs; AuctionItems the work they got;
	// MaxBatch the largest batch.
	Auctions     int `json:"auctions"`
	AuctionItems int `json:"auction_items"`
	MaxBatch     int `json:"max_batch"`
	// Placed counts placements (one request may be placed several times).
	Placed int `json:"placed"`
	// PlacementFailures counts the engine's failures, every attempt.
	PlacementFailures int `json:"placement_failures"`
	// FailuresByReason counts PlacementFailures by Diego's error string.
	FailuresByReason map[string]int `json:"failures_by_reason"`
	// Lost counts instances lost with failed cells.
	Lost int `json:"lost"`
	// Evacuated counts instances moved off draining cells.
	Evacuated int `json:"evacuated"`
	// EvacuationTimeouts counts containers destroyed at a drain's timeout.
	EvacuationTimeouts int `json:"evacuation_timeouts"`
	// Crashed counts crashes; CrashesIgnored crash events that found no
	// starting or running instance.
	Crashed        int `json:"crashed"`
	CrashesIgnored int `json:"crashes_ignored"`
	// TasksCompleted and TasksFailed count tasks that ended.
	TasksCompleted int `json:"tasks_completed"`
	TasksFailed    int `json:"tasks_failed"`
	// EventsIgnored counts events that found nothing to act on at run time
	// (for example a drain of a cell still draining).
	EventsIgnored int `json:"events_ignored"`
	// EngineErrors counts engine runs that returned an error (none expected).
	EngineErrors int `json:"engine_errors"`
}

// TimelineWaits summarise waits in milliseconds of simulated time.
type TimelineWaits struct {
	// ToRunning is request → running, over the requests served.
	ToRunning WaitSummary `json:"to_running"`
	// ToPlaced is request → last placement, over the requests served.
	ToPlaced WaitSummary `json:"to_placed"`
	// ByCause is ToRunning per cause (arrival, scale, task, crash,
	// cell_failure, evacuation, deploy); causes with no request are left out.
	ByCause map[string]WaitSummary `json:"by_cause"`
	// Open is the wait so far of the requests still open at the end.
	Open WaitSummary `json:"open"`
}

// WaitSummary summarises a list of waits (ms): nearest-rank percentiles.
type WaitSummary struct {
	Count  int     `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  int64   `json:"p50_ms"`
	P90MS  int64   `json:"p90_ms"`
	P99MS  int64   `json:"p99_ms"`
	MaxMS  int64   `json:"max_ms"`
}

// DeployStats summarise rolling deploys.
type DeployStats struct {
	// Started, Completed and Superseded (removed or redeployed before they
	// finished) count deploys; Unfinished were under way at the end.
	Started    int `json:"started"`
	Completed  int `json:"completed"`
	Superseded int `json:"superseded"`
	Unfinished int `json:"unfinished"`
	// Duration summarises the completed deploys' durations.
	Duration WaitSummary `json:"duration"`
}

// TimelineSample is the cluster at TMS; the counters count since the
// previous sample.
type TimelineSample struct {
	TMS int64 `json:"t_ms"`
	// Counters over the interval.
	Requested         int `json:"requested"`
	Auctions          int `json:"auctions"`
	Placed            int `json:"placed"`
	PlacementFailures int `json:"placement_failures"`
	Running           int `json:"running"`
	Lost              int `json:"lost"`
	Evacuated         int `json:"evacuated"`
	Crashed           int `json:"crashed"`
	TasksCompleted    int `json:"tasks_completed"`
	TasksFailed       int `json:"tasks_failed"`
	DeploysCompleted  int `json:"deploys_completed"`
	// Waits (request → running) of the requests served in the interval.
	WaitP50MS int64 `json:"wait_p50_ms"`
	WaitP99MS int64 `json:"wait_p99_ms"`
	WaitMaxMS int64 `json:"wait_max_ms"`
	// Gauges at TMS. Waiting counts LRP instances and tasks not placed
	// (unclaimed, lost, crashed in back-off); Starting containers starting.
	Waiting          int `json:"waiting"`
	Starting         int `json:"starting"`
	InstancesRunning int `json:"instances_running"`
	TasksRunning     int `json:"tasks_running"`
	CellsUp          int `json:"cells_up"`
	CellsEvacuating  int `json:"cells_evacuating"`
	CellsDown        int `json:"cells_down"`
	// FreeMemoryMB is free memory on the cells up; StrandedMemoryMB the
	// part of it on cells that cannot take the smallest request of the
	// run (short of memory, disk or a container slot).
	FreeMemoryMB     int64 `json:"free_memory_mb"`
	StrandedMemoryMB int64 `json:"stranded_memory_mb"`
	// MemoryUtilMean and MemoryUtilStddev are the mean and population
	// standard deviation of memory in use over total, across cells up:
	// the balance (0 is perfectly even).
	MemoryUtilMean   float64 `json:"memory_util_mean"`
	MemoryUtilStddev float64 `json:"memory_util_stddev"`
}

// sample closes the interval at s.now.
func (s *tlSim) sample() {
	iv := s.interval
	iv.TMS = s.now
	if len(s.ivWaits) > 0 {
		slices.Sort(s.ivWaits)
		iv.WaitP50MS = percentile(s.ivWaits, 0.50)
		iv.WaitP99MS = percentile(s.ivWaits, 0.99)
		iv.WaitMaxMS = s.ivWaits[len(s.ivWaits)-1]
	}
	c, t := &s.instCount, &s.taskCount
	iv.Waiting = c[stUnclaimed] + c[stLost] + c[stCrashed] + t[stUnclaimed]
	iv.Starting = s.starting
	iv.InstancesRunning = c[stRunning]
	iv.TasksRunning = t[stRunning]
	var sum, sumSq float64
	for i := range s.cells {
		switch s.cells[i].status {
		case cellEvacuating:
			iv.CellsEvacuating++
			continue
		case cellFailed, cellDrained:
			iv.CellsDown++
			continue
		}
		iv.CellsUp++
		st := &s.states[i]
		free := st.Available
		iv.FreeMemoryMB += int64(free.MemoryMB)
		if free.MemoryMB > 0 && (free.Containers < 1 || free.MemoryMB < s.minMem || free.DiskMB < s.minDisk) {
			iv.StrandedMemoryMB += int64(free.MemoryMB)
		}
		u := 0.0
		if st.Total.MemoryMB > 0 {
			u = float64(st.Total.MemoryMB-free.MemoryMB) / float64(st.Total.MemoryMB)
		}
		sum += u
		sumSq += u * u
	}
	if iv.CellsUp > 0 {
		n := float64(iv.CellsUp)
		iv.MemoryUtilMean = sum / n
		iv.MemoryUtilStddev = math.Sqrt(max(0, sumSq/n-iv.MemoryUtilMean*iv.MemoryUtilMean))
	}
	s.rep.Series = append(s.rep.Series, iv)
	s.interval = TimelineSample{}
	s.ivWaits = s.ivWaits[:0]
}

// finish takes the last sample and the summaries.
func (s *tlSim) finish() {
	r := s.rep
	r.EndMS = s.now
	if last := r.Series[len(r.Series)-1]; last.TMS != s.now || len(r.Series) == 1 {
		s.sample()
	}
	var open []int64
	collect := func(req *tlRequest) {
		if req != nil {
			open = append(open, s.now-req.at)
		}
	}
	for _, a := range s.sortedApps() {
		for _, inst := range a.instances {
			if inst != nil {
				collect(inst.req)
			}
		}
	}
	for _, guid := range s.sortedTasks() {
		collect(s.tasks[guid].req)
	}
	r.Totals.Open = len(open)
	r.Waits.Open = summarise(open)
	r.Waits.ToRunning = summarise(s.waitsRun)
	r.Waits.ToPlaced = summarise(s.waitsPl)
	r.Waits.ByCause = map[string]WaitSummary{}
	for i, w := range s.waitsBy {
		if len(w) > 0 {
			r.Waits.ByCause[causeNames[i]] = summarise(w)
		}
	}
	r.waitsRun = s.waitsRun // sorted by summarise
	r.Deploys.Unfinished = len(s.deploys)
	r.Deploys.Duration = summarise(s.deployMS)
}

func (s *tlSim) sortedApps() []*tlApp {
	guids := make([]string, 0, len(s.apps))
	for g := range s.apps {
		guids = append(guids, g)
	}
	sort.Strings(guids)
	out := make([]*tlApp, len(guids))
	for i, g := range guids {
		out[i] = s.apps[g]
	}
	return out
}

func (s *tlSim) sortedTasks() []string {
	guids := make([]string, 0, len(s.tasks))
	for g := range s.tasks {
		guids = append(guids, g)
	}
	sort.Strings(guids)
	return guids
}

// summarise sorts ws in place and summarises it.
func summarise(ws []int64) WaitSummary {
	if len(ws) == 0 {
		return WaitSummary{}
	}
	slices.Sort(ws)
	var sum float64
	for _, w := range ws {
		sum += float64(w)
	}
	return WaitSummary{
		Count:  len(ws),
		MeanMS: math.Round(sum/float64(len(ws))*1000) / 1000,
		P50MS:  percentile(ws, 0.50),
		P90MS:  percentile(ws, 0.90),
		P99MS:  percentile(ws, 0.99),
		MaxMS:  ws[len(ws)-1],
	}
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []int64, p float64) int64 {
	rank := int(math.Ceil(p * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// WriteJSON writes the report as indented JSON.
func (r *TimelineReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write timeline json: %w", err)
	}
	return nil
}

// WriteText writes the report for people: totals, waits, deploys and the
// time series as a table (at most maxTextRows rows, evenly picked).
func (r *TimelineReport) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	t := &r.Totals
	ew.printf("Dynamic run, strategy %s (seed %d): %d events on %d cells, %s simulated\n",
		r.Strategy, r.Seed, r.Events, r.Cells, formatMS(r.EndMS))
	ew.printf("Requests %d: %d ran, %d cancelled, %d failed, %d still waiting\n", t.Requested, t.Running, t.Cancelled, t.RequestsFailed, t.Open)
	ew.printf("Auctions %d (%d items, largest batch %d): %d placements, %d placement failures\n",
		t.Auctions, t.AuctionItems, t.MaxBatch, t.Placed, t.PlacementFailures)
	for _, reason := range sortedKeys(t.FailuresByReason) {
		ew.printf("  %d × %s\n", t.FailuresByReason[reason], reason)
	}
	ew.printf("Displaced: %d lost with failed cells, %d evacuated (%d destroyed at evacuation timeout), %d crashed (%d crash events ignored)\n",
		t.Lost, t.Evacuated, t.EvacuationTimeouts, t.Crashed, t.CrashesIgnored)
	ew.printf("Tasks: %d completed, %d failed; %d events ignored\n", t.TasksCompleted, t.TasksFailed, t.EventsIgnored)
	ew.printf("Deploys: %d started, %d completed, %d superseded, %d unfinished; duration p50 %s p90 %s max %s\n",
		r.Deploys.Started, r.Deploys.Completed, r.Deploys.Superseded, r.Deploys.Unfinished,
		formatMS(r.Deploys.Duration.P50MS), formatMS(r.Deploys.Duration.P90MS), formatMS(r.Deploys.Duration.MaxMS))

	ew.printf("\nWaits (simulated)\n")
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WAIT\tCOUNT\tMEAN\tP50\tP90\tP99\tMAX")
	row := func(name string, s WaitSummary) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", name, s.Count, formatMS(int64(s.MeanMS)),
			formatMS(s.P50MS), formatMS(s.P90MS), formatMS(s.P99MS), formatMS(s.MaxMS))
	}
	row("request → running", r.Waits.ToRunning)
	row("request → placed", r.Waits.ToPlaced)
	for _, c := range causeNames {
		if s, ok := r.Waits.ByCause[c]; ok {
			row("  "+c, s)
		}
	}
	row("still waiting (so far)", r.Waits.Open)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write timeline text: %w", err)
	}
	if r.WaitsDropped > 0 {
		ew.printf("(%d waits beyond the first %d were not kept)\n", r.WaitsDropped, MaxWaitSamples)
	}

	rows := textRows(len(r.Series))
	p99 := "WAIT P99"
	if len(rows) < len(r.Series) {
		// Rows stand for several samples: counters are summed since the
		// previous row, so the columns still add up to the totals above.
		ew.printf("\nOver time (samples every %s; each row sums the counters since the previous row, WORST P99 is the highest sample's)\n", formatMS(r.Options.SampleIntervalMS))
		p99 = "WORST P99"
	} else {
		ew.printf("\nOver time (every %s)\n", formatMS(r.Options.SampleIntervalMS))
	}
	tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "TIME\tREQ\tPLACED\tFAILED\tWAITING\tSTARTING\tLOST\tEVAC\tCRASH\t%s\tUTIL MEAN\tUTIL SD\tFREE MB\tSTRANDED MB\tCELLS UP\t\n", p99)
	prev := -1
	for _, i := range rows {
		p := summedSince(r.Series, prev, i)
		prev = i
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%.4f\t%.4f\t%d\t%d\t%d\t\n", formatMS(p.TMS),
			p.Requested, p.Placed, p.PlacementFailures, p.Waiting, p.Starting, p.Lost, p.Evacuated, p.Crashed,
			formatMS(p.WaitP99MS), p.MemoryUtilMean, p.MemoryUtilStddev, p.FreeMemoryMB, p.StrandedMemoryMB, p.CellsUp)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write timeline text: %w", err)
	}
	if len(r.Series) > maxTextRows {
		ew.printf("(%d of %d samples shown; --format json has them all)\n", maxTextRows, len(r.Series))
	}
	if ew.err != nil {
		return fmt.Errorf("write timeline text: %w", ew.err)
	}
	return nil
}

// summedSince is sample i with the counters of samples prev+1..i summed and
// the highest of their wait percentiles; gauges are sample i's.
func summedSince(series []TimelineSample, prev, i int) TimelineSample {
	p := series[i]
	for _, q := range series[prev+1 : i] {
		p.Requested += q.Requested
		p.Auctions += q.Auctions
		p.Placed += q.Placed
		p.PlacementFailures += q.PlacementFailures
		p.Running += q.Running
		p.Lost += q.Lost
		p.Evacuated += q.Evacuated
		p.Crashed += q.Crashed
		p.TasksCompleted += q.TasksCompleted
		p.TasksFailed += q.TasksFailed
		p.DeploysCompleted += q.DeploysCompleted
		p.WaitP50MS = max(p.WaitP50MS, q.WaitP50MS)
		p.WaitP99MS = max(p.WaitP99MS, q.WaitP99MS)
		p.WaitMaxMS = max(p.WaitMaxMS, q.WaitMaxMS)
	}
	return p
}

// maxTextRows bounds the time-series rows of the text report.
const maxTextRows = 48

// textRows picks at most maxTextRows sample indices, first and last included.
func textRows(n int) []int {
	if n <= maxTextRows {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := make([]int, maxTextRows)
	for i := range out {
		out[i] = i * (n - 1) / (maxTextRows - 1)
	}
	return out
}

// formatMS prints simulated milliseconds compactly: 850ms, 12.5s, 3m20s, 2h0m0s.
func formatMS(ms int64) string {
	switch {
	case ms < 1000:
		return fmt.Sprintf("%dms", ms)
	case ms < 60_000:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", float64(ms)/1000), "0"), ".") + "s"
	}
	return (time.Duration(ms) * time.Millisecond).Round(time.Second).String()
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
