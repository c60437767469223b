package sim

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/strategyfile"
)

// tlScenario returns a parsed scenario of n cells of memMB each in one
// zone; cell-1 runs instances 0..onCell1-1 of "web" (256 MB each).
func tlScenario(t *testing.T, n, memMB, onCell1 int) *Scenario {
	t.Helper()
	var cells []string
	for i := 1; i <= n; i++ {
		var lrps []string
		if i == 1 {
			for idx := range onCell1 {
				lrps = append(lrps, fmt.Sprintf(`{"process_guid":"web","index":%d,"memory_mb":256,"disk_mb":256}`, idx))
			}
		}
		cells = append(cells, fmt.Sprintf(`{"cell_id":"cell-%d","zone":"z1","index":%d,"total":{"memory_mb":%d,"disk_mb":%d,"containers":100},"lrps":[%s]}`,
			i, i, memMB, memMB, strings.Join(lrps, ",")))
	}
	s, err := Parse([]byte(`{"options":{"seed":7},"cells":[` + strings.Join(cells, ",") + `],"lrps":[],"tasks":[]}`))
	require.NoError(t, err)
	return s
}

func mustTimeline(t *testing.T, js string) *Timeline {
	t.Helper()
	tl, err := ParseTimelineBytes([]byte(js))
	require.NoError(t, err)
	return tl
}

// cellLRPs returns the process guids on a cell at the end of a run.
func cellLRPs(sim *tlSim, id string) []string {
	var out []string
	for _, l := range sim.states[sim.cellByID[id]].LRPs {
		out = append(out, fmt.Sprintf("%s.%d", l.ProcessGUID, l.Index))
	}
	return out
}

func runSim(t *testing.T, s *Scenario, tl *Timeline) *tlSim {
	t.Helper()
	require.NoError(t, CheckTimeline(s, tl))
	sim := newTimelineSim(s, tl, s.EngineOptions())
	sim.run(nil)
	return sim
}

func TestTimelineCellFailureReplacesLostInstances(t *testing.T) {
	s := tlScenario(t, 3, 4096, 4)
	tl := mustTimeline(t, `{"events":[{"at_ms":60000,"type":"cell_fail","cell_id":"cell-1"}]}`)
	sim := runSim(t, s, tl)
	r := sim.rep

	require.Equal(t, 4, r.Totals.Lost)
	require.Equal(t, 4, r.Totals.Requested)
	require.Equal(t, 4, r.Totals.Running)
	require.Zero(t, r.Totals.Open)
	require.Empty(t, cellLRPs(sim, "cell-1"))
	var moved int
	for _, id := range []string{"cell-2", "cell-3"} {
		moved += len(cellLRPs(sim, id))
	}
	require.Equal(t, 4, moved, "every lost instance runs elsewhere")
	require.Equal(t, 4, r.Series[len(r.Series)-1].InstancesRunning)

	// Failure at 60 s; presence lapses at 75 s; the convergence pass at
	// 90 s asks for replacements; the auction drains after the 200 ms
	// fetch; containers run 10 s later: 40.2 s after the failure.
	want := WaitSummary{Count: 4, MeanMS: 40200, P50MS: 40200, P90MS: 40200, P99MS: 40200, MaxMS: 40200}
	require.Equal(t, want, r.Waits.ByCause[CauseCellFailure])
	require.Equal(t, want, r.Waits.ToRunning)
	require.Equal(t, int64(30200), r.Waits.ToPlaced.P50MS)
	require.Equal(t, 1, r.Totals.Auctions, "the four replacements go in one batch")
	require.Equal(t, int64(100200), r.EndMS, "the run settles once the replacements run")
}

func TestTimelineDrainMovesInstancesOff(t *testing.T) {
	s := tlScenario(t, 3, 4096, 3)
	tl := mustTimeline(t, `{"events":[{"at_ms":10000,"type":"cell_drain","cell_id":"cell-1"}]}`)
	sim := newTimelineSim(s, tl, s.EngineOptions())
	require.NoError(t, CheckTimeline(s, tl))

	// Step to just before the replacements run: the originals still run
	// on the draining cell (evacuating copies), the replacements start.
	sim.o.EndMS = 19000
	sim.run(nil)
	require.Len(t, cellLRPs(sim, "cell-1"), 3, "originals keep running until their replacements run")
	require.Equal(t, 3, sim.starting)
	require.Equal(t, cellEvacuating, sim.cells[0].status)

	sim = runSim(t, s, tl)
	r := sim.rep
	require.Equal(t, 3, r.Totals.Evacuated)
	require.Empty(t, cellLRPs(sim, "cell-1"))
	require.Equal(t, cellDrained, sim.cells[0].status)
	require.Equal(t, 3, len(cellLRPs(sim, "cell-2"))+len(cellLRPs(sim, "cell-3")))
	// Drain at 10 s, auction after the fetch, running 10 s later.
	require.Equal(t, WaitSummary{Count: 3, MeanMS: 10200, P50MS: 10200, P90MS: 10200, P99MS: 10200, MaxMS: 10200}, r.Waits.ByCause[CauseEvacuation])
	require.Zero(t, r.Totals.EvacuationTimeouts)
	last := r.Series[len(r.Series)-1]
	require.Equal(t, 2, last.CellsUp)
	require.Equal(t, 1, last.CellsDown)
}

func TestTimelineRemovalFreesCapacityForLaterArrival(t *testing.T) {
	s := tlScenario(t, 1, 1024, 4) // web fills the only cell
	withRemoval := mustTimeline(t, `{"events":[
		{"at_ms":5000,"type":"remove_lrp","process_guid":"web"},
		{"at_ms":6000,"type":"desire_lrp","process_guid":"api","instances":2,"memory_mb":512}]}`)
	sim := runSim(t, s, withRemoval)
	require.Zero(t, sim.rep.Totals.PlacementFailures)
	require.ElementsMatch(t, []string{"api.0", "api.1"}, cellLRPs(sim, "cell-1"))
	require.Equal(t, int64(10200), sim.rep.Waits.ByCause[CauseArrival].MaxMS)

	// Without the removal the same arrival never fits.
	noRemoval := mustTimeline(t, `{"options":{"end_ms":120000},"events":[
		{"at_ms":6000,"type":"desire_lrp","process_guid":"api","instances":2,"memory_mb":512}]}`)
	sim = runSim(t, s, noRemoval)
	require.Zero(t, sim.rep.Totals.Running)
	require.Equal(t, 2, sim.rep.Totals.Open)
	// Tried at 6.2 s; convergence re-auctions an instance 30 s stale: not
	// at 30 s (23.8 s), at 60 s (then tried at 60.2 s), not at 90 s
	// (29.8 s), and the end comes at 120 s before the 120.2 s drain: two
	// attempts each.
	require.Equal(t, 2*2, sim.rep.Totals.PlacementFailures)
	require.Equal(t, map[string]int{"insufficient resources: disk, memory": 4}, sim.rep.Totals.FailuresByReason)
	require.Equal(t, int64(114000), sim.rep.Waits.Open.MaxMS)
}

func TestTimelineMalformedNamesError(t *testing.T) {
	s := tlScenario(t, 2, 4096, 2)
	for _, tc := range []struct {
		name, js, want string
	}{
		{"unsorted", `{"events":[{"at_ms":5,"type":"cell_fail","cell_id":"cell-1"},{"at_ms":4,"type":"cell_recover","cell_id":"cell-1"}]}`,
			"events[1].at_ms: 4 is before the previous event's 5: events must be sorted by time"},
		{"negative time", `{"events":[{"at_ms":-1,"type":"cell_fail","cell_id":"cell-1"}]}`, "events[0].at_ms: must be >= 0 (got -1)"},
		{"unknown app", `{"events":[{"at_ms":1,"type":"scale","process_guid":"nope","instances":3}]}`, `events[0].process_guid: unknown app "nope" at 1 ms`},
		{"app removed before", `{"events":[{"at_ms":1,"type":"remove_lrp","process_guid":"web"},{"at_ms":2,"type":"crash","process_guid":"web","index":0}]}`, `events[1].process_guid: unknown app "web" at 2 ms`},
		{"app replaced by deploy", `{"events":[{"at_ms":1,"type":"deploy","process_guid":"web","new_process_guid":"web-2"},{"at_ms":2,"type":"scale","process_guid":"web","instances":1}]}`, `events[1].process_guid: unknown app "web"`},
		{"unknown cell", `{"events":[{"at_ms":1,"type":"cell_drain","cell_id":"cell-9"}]}`, `events[0].cell_id: unknown cell "cell-9"`},
		{"crash index", `{"events":[{"at_ms":1,"type":"crash","process_guid":"web","index":2}]}`, `events[0].index: app "web" has 2 instances at 1 ms`},
		{"duplicate app", `{"events":[{"at_ms":1,"type":"desire_lrp","process_guid":"web","instances":1,"memory_mb":1}]}`, `events[0].process_guid: app "web" already exists`},
		{"recover an up cell", `{"events":[{"at_ms":1,"type":"cell_recover","cell_id":"cell-2"}]}`, `events[0].cell_id: cell "cell-2" is up at 1 ms`},
		{"unknown type", `{"events":[{"at_ms":1,"type":"explode"}]}`, `events[0].type: unknown event type "explode"`},
		{"missing field", `{"events":[{"at_ms":1,"type":"scale","process_guid":"web"}]}`, "events[0].instances: required by a scale event"},
		{"field not used", `{"events":[{"at_ms":1,"type":"cell_fail","cell_id":"cell-1","index":3}]}`, "events[0].index: not used by a cell_fail event"},
		{"unknown field", `{"events":[{"at_ms":1,"type":"cell_fail","cell":"cell-1"}]}`, `events[0]: unknown field "cell"`},
		{"wrong type", `{"events":[{"at_ms":"soon","type":"cell_fail","cell_id":"cell-1"}]}`, "events[0].at_ms: want a int64, got a JSON string"},
		{"bad option", `{"options":{"fetch_ms":-5},"events":[]}`, "options.fetch_ms: must be between 0 and"},
		{"too many samples", `{"options":{"sample_interval_ms":1,"end_ms":200000},"events":[]}`, "options.sample_interval_ms: gives 200000 samples"},
		{"end before last event", `{"options":{"end_ms":5},"events":[{"at_ms":6,"type":"cell_fail","cell_id":"cell-1"}]}`, "options.end_ms: 5 is before the last event (6)"},
		{"no events", `{"options":{}}`, "events: required"},
		{"truncated", `{"events":[{"at_ms":1,`, "malformed JSON"},
		{"instances bound", `{"events":[{"at_ms":1,"type":"scale","process_guid":"web","instances":10001}]}`, "events[0].instances: must be between 0 and 10000 (the BBS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl, err := ParseTimelineBytes([]byte(tc.js))
			if err == nil {
				_, err = RunTimeline(s, tl, TimelineRunOptions{})
			}
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalidTimeline), "%v", err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestTimelineBounds(t *testing.T) {
	// The bounds are MaxTimelineEvents and MaxTimelineBytes; decoding a
	// million events takes too long for a unit test, so the same code runs
	// here with small ones. Both refuse while streaming, naming the bound.
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i := 0; i <= 100; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"at_ms":0,"type":"cell_fail","cell_id":"c"}`)
	}
	b.WriteString(`]}`)
	data := b.Bytes()

	_, err := parseTimeline(bytes.NewReader(data), timelineLimits{events: 100, bytes: MaxTimelineBytes})
	require.ErrorIs(t, err, ErrInvalidTimeline)
	require.EqualError(t, err, "invalid timeline: events: a timeline must have at most 100 events")
	_, err = parseTimeline(bytes.NewReader(data), timelineLimits{events: 101, bytes: MaxTimelineBytes})
	require.NoError(t, err, "exactly at the bound is fine")

	_, err = parseTimeline(bytes.NewReader(data), timelineLimits{events: 1000, bytes: 1000})
	require.EqualError(t, err, "invalid timeline: a timeline must be at most 1000 bytes")
	_, err = parseTimeline(bytes.NewReader(data), timelineLimits{events: 1000, bytes: int64(len(data))})
	require.NoError(t, err)
}

func TestTimelineSameSeedSameOutput(t *testing.T) {
	s, err := Generate(GenerateOptions{Cells: 20, Zones: 2, MemoryMB: 8192, Containers: 100, Fill: 0.4,
		Apps: []AppMix{{Count: 5, Instances: 3, MemoryMB: 256}}, Seed: 3})
	require.NoError(t, err)
	tl, err := GenerateTimeline(s, TimelineGenerateOptions{DurationMS: 2 * 3600_000, DeploysPerMinute: 2, CellFailuresPerHour: 2,
		ArrivalsPerHour: 20, CrashesPerHour: 30, DrainsPerHour: 1, RecoverAfterMS: 600_000, Seed: 5})
	require.NoError(t, err)
	render := func() []byte {
		r, err := RunTimeline(s, tl, TimelineRunOptions{})
		require.NoError(t, err)
		var b bytes.Buffer
		require.NoError(t, r.WriteJSON(&b))
		require.NoError(t, r.WriteText(&b))
		require.NoError(t, r.WriteSVG(&b))
		return b.Bytes()
	}
	first := render()
	require.Equal(t, first, render())
	require.Contains(t, string(first), `"deploys"`)
}

func TestTimelineFilteredCellListsPlaceAsFullOnes(t *testing.T) {
	// The engine gets only the batch's apps' instances per cell (with the
	// full count); the result must be the one full lists give.
	s, err := Generate(GenerateOptions{Cells: 30, Zones: 3, MemoryMB: 4096, Containers: 60, Fill: 0.6,
		Apps: []AppMix{{Count: 8, Instances: 4, MemoryMB: 256}, {Count: 4, Instances: 2, MemoryMB: 1024}}, Seed: 11})
	require.NoError(t, err)
	tl, err := GenerateTimeline(s, TimelineGenerateOptions{DurationMS: 3 * 3600_000, DeploysPerMinute: 3, CellFailuresPerHour: 3,
		DrainsPerHour: 2, ArrivalsPerHour: 30, RemovalsPerHour: 10, ScalesPerHour: 20, CrashesPerHour: 60, TasksPerHour: 30,
		RecoverAfterMS: 300_000, Seed: 2})
	require.NoError(t, err)
	// A strategy that reads LRPCount (fewest instances wins, usage breaks
	// ties) checks the count the engine gets; diego reads no count.
	reg := auctioneer.NewRegistry()
	require.NoError(t, reg.Register("fewest", func(auctioneer.Options) (auctioneer.Strategy, error) { return fewestLRPs{}, nil }))
	opts := s.EngineOptions()
	opts.Strategy, opts.Registry = "fewest", reg
	render := func(full bool) string {
		sim := newTimelineSim(s, tl, opts)
		sim.fullCellLists = full
		sim.run(nil)
		var b bytes.Buffer
		require.NoError(t, sim.rep.WriteJSON(&b))
		return b.String()
	}
	full := render(true)
	require.Equal(t, full, render(false))
	require.Contains(t, full, `"strategy": "fewest"`)
	opts.Strategy, opts.Registry = "diego", nil
	require.Equal(t, render(true), render(false))
}

type fewestLRPs struct{}

func (fewestLRPs) Score(c *auctioneer.Cell, w *auctioneer.Work) float64 {
	return float64(c.LRPCount()) + c.UsageAfter(w.MemoryMB(), w.DiskMB())
}

func (fewestLRPs) BalanceZones() bool { return false }

func TestTimelineCrashBackOff(t *testing.T) {
	// Crashes 1 and 2 restart at once; crash 3 waits 30 s, checked by the
	// next convergence pass after it.
	s := tlScenario(t, 2, 4096, 1)
	tl := mustTimeline(t, `{"events":[
		{"at_ms":1000,"type":"crash","process_guid":"web","index":0},
		{"at_ms":20000,"type":"crash","process_guid":"web","index":0},
		{"at_ms":40000,"type":"crash","process_guid":"web","index":0}]}`)
	sim := runSim(t, s, tl)
	r := sim.rep
	require.Equal(t, 3, r.Totals.Crashed)
	require.Equal(t, 3, r.Totals.Running)
	// 1 s → placed 1.2 s, running 11.2 s (10.2 s); 20 s → 30.2 s (10.2 s);
	// 40 s: count 3, back-off 30 s → the pass at 90 s (70 s is too early)
	// → placed 90.2 s, running 100.2 s (60.2 s).
	require.Equal(t, WaitSummary{Count: 3, MeanMS: 26866.667, P50MS: 10200, P90MS: 60200, P99MS: 60200, MaxMS: 60200}, r.Waits.ByCause[CauseCrash])
	require.Equal(t, 3, sim.apps["web"].instances[0].crashCount)
}

func TestTimelineRollingDeploy(t *testing.T) {
	s := tlScenario(t, 3, 4096, 4)
	tl := mustTimeline(t, `{"events":[{"at_ms":1000,"type":"deploy","process_guid":"web","new_process_guid":"web-v2","max_in_flight":2,"memory_mb":512}]}`)
	sim := runSim(t, s, tl)
	r := sim.rep
	require.Equal(t, DeployStats{Started: 1, Completed: 1, Duration: WaitSummary{Count: 1, MeanMS: 29000, P50MS: 29000, P90MS: 29000, P99MS: 29000, MaxMS: 29000}}, r.Deploys)
	require.Nil(t, sim.apps["web"], "the old version is gone")
	v2 := sim.apps["web-v2"]
	require.Equal(t, 4, v2.running)
	for _, inst := range v2.instances {
		require.Equal(t, 512, inst.memoryMB)
	}
	// Two new at 1 s (running at 11.2 s); the ticks at 5 s and 10 s find
	// them starting; the 15 s tick removes two old and starts two new
	// (running at 25.2 s); 20 s and 25 s are too early; the 30 s tick
	// removes the old app: 29 s after the deploy began.
	require.Equal(t, 4, r.Waits.ByCause[CauseDeploy].Count)
}

// A dynamic run takes a strategy file as a static run does: the file places
// and a score that fails during the run fails it.
func TestTimelineRunsAStrategyFile(t *testing.T) {
	s := tlScenario(t, 3, 4096, 4) // cell-1 holds web's 4 instances
	tl := mustTimeline(t, `{"events":[{"at_ms":1000,"type":"desire_lrp","process_guid":"api","instances":1,"memory_mb":256}]}`)
	busiest, err := strategyfile.Parse([]byte(`{"name": "busiest", "score": "double(cell.memory_free_mb)"}`))
	require.NoError(t, err)
	rep, err := RunTimeline(s, tl, TimelineRunOptions{RunOptions: RunOptions{StrategyFile: busiest}})
	require.NoError(t, err)
	require.Equal(t, "busiest", rep.Strategy)
	require.Zero(t, rep.Totals.PlacementFailures)

	bad, err := strategyfile.Parse([]byte(`{"name": "div", "score": "double(100 / (cell.containers_free - 100))"}`))
	require.NoError(t, err)
	_, err = RunTimeline(s, tl, TimelineRunOptions{RunOptions: RunOptions{StrategyFile: bad}})
	require.ErrorContains(t, err, "division by zero")
}

// When the text report shows fewer rows than samples, each row sums the
// counters since the row before, so a column adds up to the run's total
// and no burst between shown rows goes missing.
func TestTimelineTextRowsSumTheSamplesTheyStandFor(t *testing.T) {
	s, err := Generate(GenerateOptions{Cells: 20, Zones: 2, MemoryMB: 8192, Containers: 100, Fill: 0.4,
		Apps: []AppMix{{Count: 5, Instances: 3, MemoryMB: 256}}, Seed: 3})
	require.NoError(t, err)
	tl, err := GenerateTimeline(s, TimelineGenerateOptions{DurationMS: 3 * 3600_000, DeploysPerMinute: 2, CellFailuresPerHour: 2,
		ArrivalsPerHour: 20, CrashesPerHour: 30, RecoverAfterMS: 600_000, Seed: 5})
	require.NoError(t, err)
	r, err := RunTimeline(s, tl, TimelineRunOptions{})
	require.NoError(t, err)
	require.Greater(t, len(r.Series), maxTextRows, "the test needs more samples than rows")
	var want [2]int
	for _, p := range r.Series {
		want[0] += p.Requested
		want[1] += p.Placed
	}
	require.Positive(t, want[0])

	var b bytes.Buffer
	require.NoError(t, r.WriteText(&b))
	text := b.String()
	require.Contains(t, text, "each row sums the counters since the previous row")
	table := text[strings.Index(text, "TIME  REQ"):]
	var got [2]int
	rows := 0
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 15 {
			break
		}
		req, err1 := strconv.Atoi(f[1])
		placed, err2 := strconv.Atoi(f[2])
		require.NoError(t, err1, line)
		require.NoError(t, err2, line)
		got[0] += req
		got[1] += placed
		rows++
	}
	require.Equal(t, maxTextRows, rows)
	require.Equal(t, want, got, "requested and placed over the shown rows")
}

func TestTimelineAxisNumbersCarryNoTrailingZeros(t *testing.T) {
	for v, want := range map[float64]string{361: "361", 180.5: "180.5", 0.0764: "0.0764", 0.15295: "0.153"} {
		require.Equal(t, want, tlNum(v, ""), "%v", v)
	}
	require.Equal(t, "2.5 MB", tlNum(2.5, "MB"))
}
