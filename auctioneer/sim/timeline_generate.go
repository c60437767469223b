package sim

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/gavelhq/gavel/bbs/models"
)

// TimelineGenerateOptions describe a generated timeline. Rates are means
// of Poisson processes; a rate of 0 generates none of that event.
type TimelineGenerateOptions struct {
	// DurationMS is the simulated length (> 0, at most MaxTimelineMS); the
	// timeline's end_ms is set to it.
	DurationMS int64
	// DeploysPerMinute is the rate of rolling deploys of live apps.
	DeploysPerMinute float64
	// MaxInFlight is how many instances a deploy replaces at a time (default 1).
	MaxInFlight int
	// CellFailuresPerHour is the rate of cell failures.
	CellFailuresPerHour float64
	// DrainsPerHour is the rate of cell drains (evacuations).
	DrainsPerHour float64
	// RecoverAfterMS brings a failed cell back this long after it failed,
	// and a drained one this long after its evacuation timeout; 0 leaves
	// them down.
	RecoverAfterMS int64
	// ArrivalsPerHour is the rate of new apps; each copies the instance
	// count and memory of a random live app (2 × 256 MB when none is live).
	ArrivalsPerHour float64
	// RemovalsPerHour is the rate of app removals.
	RemovalsPerHour float64
	// ScalesPerHour is the rate of scale events (±1 to 3 instances, at least 1).
	ScalesPerHour float64
	// CrashesPerHour is the rate of instance crashes.
	CrashesPerHour float64
	// TasksPerHour is the rate of task arrivals; TaskMemoryMB (default 512)
	// and TaskRunMS (default 300000) size them.
	TasksPerHour float64
	TaskMemoryMB int
	TaskRunMS    int64
	// Seed makes the timeline reproducible.
	Seed int64
}

// Validate checks the options, naming the first bad one.
func (o TimelineGenerateOptions) Validate() error {
	switch {
	case o.DurationMS <= 0 || o.DurationMS > MaxTimelineMS:
		return fmt.Errorf("duration: must be between 1 ms and %d ms (30 days)", int64(MaxTimelineMS))
	case o.RecoverAfterMS < 0 || o.RecoverAfterMS > MaxTimelineMS:
		return errors.New("recover-after: must be between 0 and 30 days")
	case o.MaxInFlight < 0 || o.MaxInFlight > models.DefaultMaxInstances:
		return fmt.Errorf("max-in-flight: must be between 1 and %d", models.DefaultMaxInstances)
	case o.TaskMemoryMB < 0 || o.TaskMemoryMB > maxResourceMB:
		return fmt.Errorf("task-memory-mb: must be between 1 and %d", maxResourceMB)
	case o.TaskRunMS < 0 || o.TaskRunMS > MaxTimelineMS:
		return errors.New("task-run: must be between 0 and 30 days")
	}
	var expected float64
	for _, r := range []struct {
		name string
		v    float64
		per  float64 // ms per unit of the rate
	}{
		{"deploys-per-min", o.DeploysPerMinute, 60_000},
		{"cell-failures-per-hour", o.CellFailuresPerHour, 3600_000},
		{"drains-per-hour", o.DrainsPerHour, 3600_000},
		{"arrivals-per-hour", o.ArrivalsPerHour, 3600_000},
		{"removals-per-hour", o.RemovalsPerHour, 3600_000},
		{"scales-per-hour", o.ScalesPerHour, 3600_000},
		{"crashes-per-hour", o.CrashesPerHour, 3600_000},
		{"tasks-per-hour", o.TasksPerHour, 3600_000},
	} {
		if math.IsNaN(r.v) || math.IsInf(r.v, 0) || r.v < 0 {
			return fmt.Errorf("%s: must be a finite number >= 0", r.name)
		}
		expected += r.v * float64(o.DurationMS) / r.per
	}
	// Recoveries can double the cell events; leave room for the spread.
	if expected*1.1+2*(o.CellFailuresPerHour+o.DrainsPerHour)*float64(o.DurationMS)/3600_000 > MaxTimelineEvents {
		return fmt.Errorf("rates × duration: about %.0f events expected; a timeline holds at most %d", expected, MaxTimelineEvents)
	}
	return nil
}

type genKind uint8

const (
	genDeploy genKind = iota
	genFail
	genDrain
	genArrival
	genRemoval
	genScale
	genCrash
	genTask
)

type genApp struct {
	guid      string
	base      string
	version   int
	instances int
	memoryMB  int
	deployed  int64
}

// GenerateTimeline builds a timeline for a scenario: events drawn from
// Poisson processes at the given rates, aimed at the scenario's apps and
// cells as they stand at each moment (so CheckTimeline accepts it). A
// deploy of app X names the new version X-v2, X-v3, …; it avoids apps
// deployed in the last 30 minutes when it can. The same scenario and
// options give the same timeline.
func GenerateTimeline(s *Scenario, o TimelineGenerateOptions) (*Timeline, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("generate timeline: %w", err)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 1
	}
	if o.TaskMemoryMB == 0 {
		o.TaskMemoryMB = 512
	}
	if o.TaskRunMS == 0 {
		o.TaskRunMS = 300_000
	}
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x7157))

	type at struct {
		ms   int64
		kind genKind
	}
	var times []at
	for _, p := range []struct {
		kind genKind
		rate float64 // per ms
	}{
		{genDeploy, o.DeploysPerMinute / 60_000}, {genFail, o.CellFailuresPerHour / 3600_000},
		{genDrain, o.DrainsPerHour / 3600_000}, {genArrival, o.ArrivalsPerHour / 3600_000},
		{genRemoval, o.RemovalsPerHour / 3600_000}, {genScale, o.ScalesPerHour / 3600_000},
		{genCrash, o.CrashesPerHour / 3600_000}, {genTask, o.TasksPerHour / 3600_000},
	} {
		if p.rate <= 0 {
			continue
		}
		t := 0.0
		for {
			t += rng.ExpFloat64() / p.rate
			if t >= float64(o.DurationMS) {
				break
			}
			times = append(times, at{int64(t), p.kind})
		}
	}
	slices.SortStableFunc(times, func(a, b at) int { return cmp.Compare(a.ms, b.ms) })

	// The scenario's apps and cells.
	var apps []*genApp
	byGUID := map[string]*genApp{}
	addInstance := func(guid string, index, mem int) {
		a := byGUID[guid]
		if a == nil {
			a = &genApp{guid: guid, base: guid, version: 1, memoryMB: mem, deployed: math.MinInt64 / 2}
			byGUID[guid] = a
			apps = append(apps, a)
		}
		a.instances = max(a.instances, index+1)
	}
	up := make([]string, 0, len(s.Cells))
	for _, c := range s.Cells {
		if !c.Evacuating {
			up = append(up, c.CellID)
		}
		for _, l := range c.LRPs {
			addInstance(l.ProcessGUID, l.Index, l.MemoryMB)
		}
	}
	for _, l := range s.LRPs {
		addInstance(l.ProcessGUID, l.Index, l.MemoryMB)
	}
	taken := map[string]bool{}
	for _, t := range s.Tasks {
		taken["task:"+t.TaskGUID] = true
	}
	for _, c := range s.Cells {
		for _, t := range c.Tasks {
			taken["task:"+t.TaskGUID] = true
		}
	}
	for g := range byGUID {
		taken[g] = true
	}
	fresh := func(prefix string, n *int) string {
		for {
			*n++
			g := fmt.Sprintf("%s%d", prefix, *n)
			if !taken[g] && !taken["task:"+g] {
				taken[g] = true
				return g
			}
		}
	}

	tl := &Timeline{Options: TimelineOptions{EndMS: o.DurationMS}}
	type recovery struct {
		ms   int64
		cell string
	}
	var recoveries []recovery // sorted by ms
	flushRecoveries := func(until int64) {
		for len(recoveries) > 0 && recoveries[0].ms <= until {
			r := recoveries[0]
			recoveries = recoveries[1:]
			tl.Events = append(tl.Events, TimelineEvent{AtMS: r.ms, Type: EventCellRecover, CellID: r.cell})
			up = append(up, r.cell)
		}
	}
	scheduleRecovery := func(ms int64, cell string) {
		if o.RecoverAfterMS == 0 || ms > o.DurationMS {
			return
		}
		i, _ := slices.BinarySearchFunc(recoveries, ms, func(r recovery, t int64) int { return cmp.Compare(r.ms, t+1) })
		recoveries = slices.Insert(recoveries, i, recovery{ms, cell})
	}
	takeCell := func() (string, bool) {
		if len(up) == 0 {
			return "", false
		}
		i := rng.IntN(len(up))
		c := up[i]
		up[i] = up[len(up)-1]
		up = up[:len(up)-1]
		return c, true
	}
	pickApp := func() *genApp {
		if len(apps) == 0 {
			return nil
		}
		return apps[rng.IntN(len(apps))]
	}
	removeApp := func(a *genApp) {
		i := slices.Index(apps, a)
		apps[i] = apps[len(apps)-1]
		apps = apps[:len(apps)-1]
		delete(byGUID, a.guid)
	}
	var nApp, nTask int
	const redeployGapMS = 30 * 60_000
	for _, t := range times {
		flushRecoveries(t.ms)
		ev := TimelineEvent{AtMS: t.ms}
		switch t.kind {
		case genDeploy:
			var a *genApp
			for range 8 {
				if a = pickApp(); a == nil || t.ms-a.deployed >= redeployGapMS {
					break
				}
			}
			if a == nil {
				continue
			}
			var next string
			for {
				a.version++
				next = fmt.Sprintf("%s-v%d", a.base, a.version)
				if !taken[next] {
					break
				}
			}
			taken[next] = true
			ev.Type, ev.ProcessGUID, ev.NewProcessGUID = EventDeploy, a.guid, next
			if o.MaxInFlight > 1 {
				ev.MaxInFlight = o.MaxInFlight
			}
			delete(byGUID, a.guid)
			a.guid, a.deployed = next, t.ms
			byGUID[next] = a
		case genFail:
			c, ok := takeCell()
			if !ok {
				continue
			}
			ev.Type, ev.CellID = EventCellFail, c
			scheduleRecovery(t.ms+o.RecoverAfterMS, c)
		case genDrain:
			c, ok := takeCell()
			if !ok {
				continue
			}
			ev.Type, ev.CellID = EventCellDrain, c
			scheduleRecovery(t.ms+DefaultEvacuationTimeoutMS+o.RecoverAfterMS, c)
		case genArrival:
			inst, mem := 2, 256
			if tpl := pickApp(); tpl != nil {
				inst, mem = max(1, tpl.instances), tpl.memoryMB
			}
			g := fresh("app-gen-", &nApp)
			a := &genApp{guid: g, base: g, version: 1, instances: inst, memoryMB: mem, deployed: math.MinInt64 / 2}
			apps = append(apps, a)
			byGUID[g] = a
			ev.Type, ev.ProcessGUID, ev.Instances, ev.MemoryMB = EventDesireLRP, g, ptr(inst), mem
		case genRemoval:
			a := pickApp()
			if a == nil {
				continue
			}
			removeApp(a)
			ev.Type, ev.ProcessGUID = EventRemoveLRP, a.guid
		case genScale:
			a := pickApp()
			if a == nil {
				continue
			}
			delta := 1 + rng.IntN(3)
			if rng.IntN(2) == 0 {
				delta = -delta
			}
			a.instances = min(max(1, a.instances+delta), models.DefaultMaxInstances)
			ev.Type, ev.ProcessGUID, ev.Instances = EventScale, a.guid, ptr(a.instances)
		case genCrash:
			a := pickApp()
			if a == nil || a.instances == 0 {
				continue
			}
			ev.Type, ev.ProcessGUID, ev.Index = EventCrash, a.guid, ptr(rng.IntN(a.instances))
		case genTask:
			g := fresh("task-gen-", &nTask)
			delete(taken, g)
			taken["task:"+g] = true
			ev.Type, ev.TaskGUID, ev.MemoryMB, ev.RunMS = EventDesireTask, g, o.TaskMemoryMB, o.TaskRunMS
		}
		tl.Events = append(tl.Events, ev)
	}
	flushRecoveries(o.DurationMS)
	if len(tl.Events) > MaxTimelineEvents {
		return nil, fmt.Errorf("generate timeline: %d events; a timeline holds at most %d (lower the rates or the duration)", len(tl.Events), MaxTimelineEvents)
	}
	if err := tl.validate(); err != nil {
		return nil, fmt.Errorf("generate timeline: %w", err)
	}
	if err := CheckTimeline(s, tl); err != nil {
		return nil, fmt.Errorf("generate timeline: %w", err)
	}
	return tl, nil
}

func ptr(n int) *int { return &n }

// Describe summarises a timeline: events per type.
func (tl *Timeline) Describe() string {
	counts := map[string]int{}
	for i := range tl.Events {
		counts[tl.Events[i].Type]++
	}
	parts := make([]string, 0, len(counts))
	for _, typ := range eventTypes() {
		if n := counts[typ]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, typ))
		}
	}
	return fmt.Sprintf("%d events (%s)", len(tl.Events), strings.Join(parts, ", "))
}
