package bench

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

const exposition = `# HELP etcd_mvcc_put_total Total number of puts seen by this member.
# TYPE etcd_mvcc_put_total counter
etcd_mvcc_put_total 120
gavel_auctioneer_auctions_started_total{kind="lrp"} 7
gavel_auctioneer_auctions_started_total{kind="task"} 2
odd{path="a\"b,c",x="y"} 1.5e+03
h_bucket{le="1"} 2
h_bucket{le="4"} 6
h_bucket{le="16"} 10
h_bucket{le="+Inf"} 10
h_sum 60
h_count 10
`

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(exposition))
	require.NoError(t, err)
	assert.Equal(t, 120.0, m.value("etcd_mvcc_put_total"))
	assert.Equal(t, 9.0, m.value("gavel_auctioneer_auctions_started_total"), "series are added up")
	_, ok := m.sum("missing")
	assert.False(t, ok)
	var odd sample
	for _, s := range m {
		if s.name == "odd" {
			odd = s
		}
	}
	assert.Equal(t, map[string]string{"path": `a"b,c`, "x": "y"}, odd.labels)
	assert.Equal(t, 1500.0, odd.value)

	_, err = parseMetrics(strings.NewReader("name{a=\"b\"} notanumber\n"))
	assert.Error(t, err)
}

func TestHistogram(t *testing.T) {
	after, err := parseMetrics(strings.NewReader(exposition))
	require.NoError(t, err)
	before, err := parseMetrics(strings.NewReader("h_bucket{le=\"1\"} 2\nh_bucket{le=\"4\"} 2\nh_bucket{le=\"16\"} 2\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"))
	require.NoError(t, err)
	// Over the interval: 0 in (0,1], 4 in (1,4], 4 in (4,16].
	h := histogram(before, after, "h")
	assert.Equal(t, 8.0, h.Count)
	assert.Equal(t, 59.0, h.Sum)
	// p50: rank 4 is the last of the 4 in (1,4] → 4.
	assert.InDelta(t, 4.0, h.P50, 1e-9)
	// p99: rank 7.92 is 3.92 of 4 into (4,16] → 4 + 12×0.98.
	assert.InDelta(t, 15.76, h.P99, 1e-9)
	assert.Equal(t, 16.0, h.Max)
}

func TestTenths(t *testing.T) {
	t0 := time.Unix(0, 0)
	var times []time.Time
	// 100 instances: the first 50 at 1 per 10 ms, the rest at 1 per 20 ms.
	at := t0
	for i := range 100 {
		if i < 50 {
			at = at.Add(10 * time.Millisecond)
		} else {
			at = at.Add(20 * time.Millisecond)
		}
		times = append(times, at)
	}
	ts := tenths(t0, times)
	require.Len(t, ts, 10)
	// The first part runs from the first RUNNING (10 ms) to the tenth (100 ms): 9 in 90 ms.
	assert.Equal(t, 0, ts[0].From)
	assert.Equal(t, 10, ts[0].To)
	assert.InDelta(t, 0.01, ts[0].StartSec, 1e-9)
	assert.InDelta(t, 0.1, ts[0].EndSec, 1e-9)
	assert.InDelta(t, 100, ts[0].PerSecond, 1e-6)
	assert.InDelta(t, 100, ts[4].PerSecond, 1e-6)
	assert.InDelta(t, 50, ts[9].PerSecond, 1e-6)
	assert.Equal(t, 90, ts[9].From)
	assert.Nil(t, tenths(t0, times[:5]), "too few to split")

	// Equal time slices of 10 ms..1.5 s: the first slices hold the fast
	// half (about 100/s), the last ones the slow half (50/s), and every
	// instance is in exactly one slice.
	sl := timeTenths(t0, times)
	require.Len(t, sl, 10)
	total := 0
	for _, s := range sl {
		total += s.To - s.From
		assert.InDelta(t, 0.149, s.EndSec-s.StartSec, 1e-9)
	}
	assert.Equal(t, 100, total)
	assert.InDelta(t, 100, sl[0].PerSecond, 10)
	assert.InDelta(t, 50, sl[9].PerSecond, 10)
	assert.Nil(t, timeTenths(t0, times[:5]), "too few to split")
}

func TestReadProcStats(t *testing.T) {
	st, err := readProcStats(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, st.PeakRSSBytes)
	assert.GreaterOrEqual(t, st.PeakRSSBytes, st.RSSBytes)
	assert.GreaterOrEqual(t, st.CPUSeconds, st.SystemCPUSeconds)
	// The kernel's own count of this process's minor faults, read after:
	// the stat's figure is positive and no larger.
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	assert.Positive(t, st.MinorFaults)
	assert.LessOrEqual(t, st.MinorFaults, ru.Minflt)
	_, err = readProcStats(1 << 30)
	assert.Error(t, err)
}

func TestSelectedMode(t *testing.T) {
	for list, want := range map[string]string{
		"always [madvise] never\n": "madvise",
		"[always] madvise never":   "always",
		"always madvise [never]":   "never",
		"always madvise never":     "",
		"":                         "",
		"[]":                       "",
	} {
		assert.Equal(t, want, selectedMode(list), "%q", list)
	}
}

func TestProcUseSharesAndFaults(t *testing.T) {
	u := procUse(ProcStats{CPUSeconds: 1, SystemCPUSeconds: 0.5, MinorFaults: 100},
		ProcStats{CPUSeconds: 5, SystemCPUSeconds: 1.5, MinorFaults: 900, PeakRSSBytes: 1 << 20})
	assert.InDelta(t, 4, u.CPUSeconds, 1e-9)
	assert.InDelta(t, 0.25, u.SystemCPUShare, 1e-9)
	assert.EqualValues(t, 800, u.MinorFaults)
	assert.InDelta(t, 1, u.PeakRSSMiB, 1e-9)
}

func TestTrackerCountsOrdinaryRunning(t *testing.T) {
	tr := newTracker()
	now := time.Now()
	tr.desired("g", now)
	a := func(state modelsv1.ActualLRPState, presence modelsv1.ActualLRPPresence, cell string) *modelsv1.ActualLRP {
		return &modelsv1.ActualLRP{Key: &modelsv1.ActualLRPKey{ProcessGuid: "g", Index: 0}, State: state, Presence: presence,
			InstanceKey: &modelsv1.ActualLRPInstanceKey{CellId: cell}}
	}
	ord, sus := modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY, modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_SUSPECT
	created := func(x *modelsv1.ActualLRP) *modelsv1.Event {
		return &modelsv1.Event{Revision: 1, Event: &modelsv1.Event_ActualLrpInstanceCreated{ActualLrpInstanceCreated: &modelsv1.ActualLRPInstanceCreatedEvent{ActualLrp: x}}}
	}
	changed := func(x *modelsv1.ActualLRP) *modelsv1.Event {
		return &modelsv1.Event{Revision: 2, Event: &modelsv1.Event_ActualLrpInstanceChanged{ActualLrpInstanceChanged: &modelsv1.ActualLRPInstanceChangedEvent{After: x}}}
	}
	removed := func(x *modelsv1.ActualLRP) *modelsv1.Event {
		return &modelsv1.Event{Revision: 3, Event: &modelsv1.Event_ActualLrpInstanceRemoved{ActualLrpInstanceRemoved: &modelsv1.ActualLRPInstanceRemovedEvent{ActualLrp: x}}}
	}
	tr.apply(created(a(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_UNCLAIMED, ord, "")), now)
	assert.Equal(t, 0, tr.runningCount())
	running := a(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING, ord, "c1")
	tr.apply(changed(running), now.Add(time.Second))
	tr.apply(changed(running), now.Add(2*time.Second)) // a replay changes nothing
	assert.Equal(t, 1, tr.runningCount())
	assert.Equal(t, []time.Duration{time.Second}, tr.latencies())
	assert.Len(t, tr.onCells(map[string]bool{"c1": true}), 1)

	// The cell is lost: the row turns suspect, a new ordinary row runs on c2.
	tr.apply(removed(running), now)
	tr.apply(created(a(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING, sus, "c1")), now)
	assert.Equal(t, 0, tr.runningCount(), "a suspect row does not count")
	keys := []instanceKey{{"g", 0}}
	dead := map[string]bool{"c1": true}
	assert.Equal(t, 1, tr.displacedLeft(keys, dead))
	tr.apply(created(a(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING, ord, "c2")), now)
	assert.Equal(t, 0, tr.displacedLeft(keys, dead))
	assert.Equal(t, 1, tr.runningCount())
	assert.Equal(t, 1, tr.placedCount(), "first RUNNING is counted once")
}

func TestPlanFarms(t *testing.T) {
	opts := Options{Cells: 1000, CellsPerProcess: 250, KillShare: 0.1}.withDefaults()
	farms := planFarms(opts)
	var sizes []int
	var victims int
	for _, f := range farms {
		sizes = append(sizes, len(f.cells))
		if f.victim {
			victims += len(f.cells)
		}
	}
	assert.Equal(t, []int{250, 250, 250, 150, 100}, sizes)
	assert.Equal(t, 100, victims)
	assert.Equal(t, "cells-04-0", farms[4].cells[0])
}

func TestLRPShapes(t *testing.T) {
	opts := Options{Instances: 250, InstancesPerLRP: 100, Sizes: []Size{{64, 2}, {512, 1}}}.withDefaults()
	assert.Equal(t, 3, opts.lrpCount())
	assert.Equal(t, []int{100, 100, 50}, []int{opts.lrpInstances(0), opts.lrpInstances(1), opts.lrpInstances(2)})
	assert.Equal(t, []int32{64, 64, 512, 64}, []int32{opts.lrpMemory(0), opts.lrpMemory(1), opts.lrpMemory(2), opts.lrpMemory(3)})
}

func TestSummarizeTakesMedianAndRange(t *testing.T) {
	mk := func(pps float64) *Result {
		r := &Result{}
		r.Placement.PerSecond = pps
		r.Placement.EtcdLeastMicros = pps / 10
		r.Placement.BBS.CPUPerPlacedInEtcdKeys = pps / 100
		r.Placement.Cells.CPUPerPlacedInEtcdKeys = pps / 50
		return r
	}
	failed := mk(1)
	failed.Failure = &Failure{Reason: "x"}
	r := Summarize([]*Result{mk(300), mk(100), failed, mk(200), mk(400)})
	assert.Equal(t, 5, r.Runs)
	assert.Equal(t, 1, r.Failed)
	assert.Equal(t, Spread{Median: 250, Min: 100, Max: 400}, r.PlacementsPerSecond)
	assert.Equal(t, Spread{Median: 25, Min: 10, Max: 40}, r.EtcdLeastMicros)
	assert.Equal(t, Spread{Median: 2.5, Min: 1, Max: 4}, r.BBSInEtcdKeys)
	assert.Equal(t, Spread{Median: 5, Min: 2, Max: 8}, r.CellsInEtcdKeys)
	// A run without the batched measurement has no figure in keys.
	unmeasured := mk(1000)
	unmeasured.Placement.BBS.CPUPerPlacedInEtcdKeys = 0
	assert.Equal(t, Spread{Median: 3.5, Min: 3, Max: 4}, Summarize([]*Result{mk(300), unmeasured, mk(400)}).BBSInEtcdKeys)
	assert.Equal(t, Spread{Median: 2, Min: 2, Max: 2}, spreadOf([]float64{2}))
	assert.Equal(t, Spread{}, spreadOf(nil))
}

// With etcd embedded there is no etcd process: its use is absent, not zero,
// and the summary says the BBS's figure includes etcd's.
func TestEtcdProcessUse(t *testing.T) {
	embedded := &snapshot{}
	assert.Nil(t, etcdProcUse(embedded, embedded))
	assert.Contains(t, cpuLine(Placement{}), "BBS+etcd")

	before := &snapshot{etcdProc: &ProcStats{CPUSeconds: 1}}
	after := &snapshot{etcdProc: &ProcStats{CPUSeconds: 3.5, PeakRSSBytes: 64 << 20}}
	u := etcdProcUse(before, after)
	require.NotNil(t, u)
	assert.InDelta(t, 2.5, u.CPUSeconds, 1e-9)
	assert.InDelta(t, 64.0, u.PeakRSSMiB, 1e-9)
	u.CPUMicrosPerPlaced = 250
	assert.Contains(t, cpuLine(Placement{EtcdProcess: u}), "etcd 250 µs")
}

// CPU in etcd keys is the µs over etcd's CPU per batched key of the run.
func TestCPUInEtcdKeys(t *testing.T) {
	assert.InDelta(t, 8.5, inEtcdKeys(255, 30), 1e-9)
	assert.Zero(t, inEtcdKeys(255, 0), "no batched measurement, no figure")
	p := Placement{BBS: ProcUse{CPUPerPlacedInEtcdKeys: 8.46}, Auctioneer: ProcUse{CPUPerPlacedInEtcdKeys: 2}, Cells: ProcUse{CPUPerPlacedInEtcdKeys: 9.54}}
	assert.Contains(t, inEtcdKeysLine(p), "BBS+etcd 8.5, auctioneer 2.0, cells 9.5")
	p.EtcdProcess = &ProcUse{CPUPerPlacedInEtcdKeys: 3}
	assert.Contains(t, inEtcdKeysLine(p), "etcd 3.0, BBS 8.5")
}

// The etcd server's CPU over a ceiling measurement is the difference of
// two readings of its process, in all and per write; no writes, no rate.
func TestServerCPUOver(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after float64
		writes        float64
		cpu, perWrite float64
	}{
		{"per txn", 10, 12.5, 50_000, 2.5, 50},
		{"per key", 3, 4, 400_000, 1, 2.5},
		{"no writes", 3, 4, 0, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := serverCPUOver(ProcStats{CPUSeconds: tc.before}, ProcStats{CPUSeconds: tc.after}, tc.writes)
			assert.InDelta(t, tc.cpu, u.CPUSeconds, 1e-9)
			assert.InDelta(t, tc.perWrite, u.MicrosPerWrite, 1e-9)
		})
	}
}

// The BBS's RSS bound follows issue 16: 1 GiB up to 100k instances, 2 GiB
// at 250k; the target line names the bound it applied.
func TestBBSRSSTargetFollowsTheRunSize(t *testing.T) {
	for _, tc := range []struct {
		instances int
		rssMiB    float64
		goal      string
		met       bool
	}{
		{100_000, 1000, "< 1024", true},
		{100_000, 1100, "< 1024", false},
		{250_000, 1600, "< 2048", true},
		{250_000, 2100, "< 2048", false},
	} {
		r := &Result{Placement: Placement{Instances: tc.instances, BBS: ProcUse{PeakRSSMiB: tc.rssMiB}}}
		var got *Target
		for _, tg := range targets(r) {
			if tg.Name == "BBS peak RSS (MiB)" {
				got = &tg
			}
		}
		if got == nil {
			t.Fatalf("%d instances: no BBS RSS target", tc.instances)
		}
		if got.Goal != tc.goal || got.Met != tc.met {
			t.Errorf("%d instances, %.0f MiB: goal %q met %v, want %q %v", tc.instances, tc.rssMiB, got.Goal, got.Met, tc.goal, tc.met)
		}
	}
}

func TestConvergenceCountsByLabel(t *testing.T) {
	before, err := parseMetrics(strings.NewReader(`gavel_bbs_convergence_passes_total{trigger="interval"} 3
gavel_bbs_convergence_passes_total{trigger="cell_lost"} 1
gavel_bbs_convergence_actions_total{action="unclaim_and_auction"} 10
gavel_bbs_convergence_conflicts_total 2
`))
	require.NoError(t, err)
	after, err := parseMetrics(strings.NewReader(`gavel_bbs_convergence_passes_total{trigger="interval"} 3
gavel_bbs_convergence_passes_total{trigger="cell_lost"} 4
gavel_bbs_convergence_passes_total{trigger="start"} 1
gavel_bbs_convergence_actions_total{action="unclaim_and_auction"} 25
gavel_bbs_convergence_conflicts_total 7
`))
	require.NoError(t, err)
	c := convergence(&snapshot{bbs: before}, &snapshot{bbs: after})
	require.Equal(t, map[string]float64{"cell_lost": 3, "start": 1}, c.Passes, "a trigger that did not fire is left out")
	require.Equal(t, map[string]float64{"unclaim_and_auction": 15}, c.Actions)
	require.Equal(t, 5.0, c.Conflicts)
	require.Equal(t, "passes: cell_lost 3, start 1; actions: unclaim_and_auction 15; 5 conflicts", c.String())
	require.Equal(t, "passes: none; actions: none; 0 conflicts", Convergence{}.String())
}

func TestCellCallErrorsSkipACellProcessThatWentAway(t *testing.T) {
	parse := func(s string) metrics {
		m, err := parseMetrics(strings.NewReader(s))
		require.NoError(t, err)
		return m
	}
	before := &snapshot{cells: map[string]metrics{
		"farm-0": parse(`gavel_rep_bbs_call_errors_total{call="ClaimActualLRP",code="DeadlineExceeded"} 1` + "\n"),
		"farm-1": parse(`gavel_rep_bbs_call_errors_total{call="ClaimActualLRP",code="DeadlineExceeded"} 5` + "\n"),
	}}
	after := &snapshot{cells: map[string]metrics{
		"farm-0": parse(`gavel_rep_bbs_call_errors_total{call="ClaimActualLRP",code="DeadlineExceeded"} 4` + "\n" +
			`gavel_rep_bbs_call_errors_total{call="GetDesiredLRP",code="Unavailable"} 2` + "\n"),
		"farm-2": parse(`gavel_rep_bbs_call_errors_total{call="ClaimActualLRP",code="DeadlineExceeded"} 9` + "\n"), // started after the phase began
	}}
	require.Equal(t, map[string]float64{"ClaimActualLRP/DeadlineExceeded": 3, "GetDesiredLRP/Unavailable": 2}, cellCallErrors(before, after))
	require.Equal(t, "ClaimActualLRP/DeadlineExceeded 3, GetDesiredLRP/Unavailable 2", countList(cellCallErrors(before, after)))
}

func TestHistogramsByLabel(t *testing.T) {
	// hist is one method's histogram: under calls up to 0.5 s, total calls
	// (all up to 2 s) taking sum seconds.
	hist := func(method string, under, total int, sum float64) string {
		return fmt.Sprintf("calls_bucket{method=%[1]q,le=\"0.5\"} %[2]d\n"+
			"calls_bucket{method=%[1]q,le=\"2\"} %[3]d\n"+
			"calls_bucket{method=%[1]q,le=\"+Inf\"} %[3]d\n"+
			"calls_sum{method=%[1]q} %[4]g\n"+
			"calls_count{method=%[1]q} %[3]d\n", method, under, total, sum)
	}
	before := hist("/s/Claim", 1, 1, 0.1) + hist("/s/Idle", 5, 5, 1)
	after := hist("/s/Claim", 1, 201, 250.1) + hist("/s/Start", 150, 150, 15) + hist("/s/Idle", 5, 5, 1)
	b, err := parseMetrics(strings.NewReader(before))
	require.NoError(t, err)
	a, err := parseMetrics(strings.NewReader(after))
	require.NoError(t, err)

	got := histogramsBy(b, a, "calls", "method")
	require.Len(t, got, 2, "a method not called in between is left out: %v", got)
	claim := got["/s/Claim"]
	assert.Equal(t, 200.0, claim.Count, "only the claims of the interval, not the start's")
	assert.InDelta(t, 250.0, claim.Sum, 1e-9)
	// All 200 of the interval lie in (0.5, 2]: p50 is halfway in.
	assert.InDelta(t, 1.25, claim.P50, 1e-9)
	start := got["/s/Start"]
	assert.Equal(t, 150.0, start.Count)
	assert.InDelta(t, 0.25, start.P50, 1e-9)

	assert.Equal(t, "Claim 200 × 1.2 s/2.0 s, Start 150 × 250 ms/495 ms", callList(got))
	assert.Equal(t, "none", callList(map[string]Histogram{"/s/Rare": {Count: 99}}), "calls made under 100 times are left out")
}
