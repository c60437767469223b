package converger

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/store"
	"github.com/gavelhq/gavel/internal/config"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

var t0 = time.Unix(1_700_000_000, 0)

// world builds snapshots: every record gets a distinct revision.
type world struct {
	snap *store.Snapshot
	rev  int64
}

func newWorld() *world {
	return &world{snap: &store.Snapshot{
		Desired: map[string]store.DesiredRow{}, Actuals: map[string][]store.ActualRow{},
		Cells: map[string]*modelsv1.CellPresence{}, Domains: map[string]*modelsv1.Domain{},
	}}
}

func (w *world) next() int64 { w.rev++; return w.rev }

// fresh adds a domain that is fresh forever.
func (w *world) fresh(name string) *world {
	w.snap.Domains[name] = &modelsv1.Domain{Name: name}
	return w
}

func (w *world) cell(ids ...string) *world {
	for _, id := range ids {
		w.snap.Cells[id] = &modelsv1.CellPresence{CellId: id, RepAddress: id + ":1800"}
	}
	return w
}

func (w *world) desired(guid, domain string, instances int32) *world {
	w.snap.Desired[guid] = store.DesiredRow{Rev: w.next(), Info: &modelsv1.DesiredLRPSchedulingInfo{
		Key: &modelsv1.DesiredLRPKey{ProcessGuid: guid, Domain: domain}, Instances: instances,
		Resource: &modelsv1.DesiredLRPResource{MemoryMb: 64, RootFs: "preloaded:x"},
	}}
	return w
}

// row adds an instance row; cell is "" for UNCLAIMED and CRASHED rows.
func (w *world) row(guid, domain string, index int32, presence modelsv1.ActualLRPPresence, state modelsv1.ActualLRPState, cell string, since time.Time, crashes int32) *world {
	lrp := &modelsv1.ActualLRP{
		Key:   &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: index, Domain: domain},
		State: state, Presence: presence, Since: since.UnixNano(), CrashCount: crashes, ModificationTag: models.NewTag(),
	}
	if cell != "" {
		lrp.InstanceKey = &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("ig-%s-%d-%d", guid, index, presence), CellId: cell}
	}
	if state == models.Running {
		lrp.NetInfo = &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1"}
	}
	w.snap.Actuals[guid] = append(w.snap.Actuals[guid], store.ActualRow{ProcessGUID: guid, Index: index, Presence: presence, LRP: lrp, Rev: w.next()})
	return w
}

func (w *world) ord(guid string, index int32, state modelsv1.ActualLRPState, cell string) *world {
	return w.row(guid, "d", index, models.Ordinary, state, cell, t0, 0)
}

func (w *world) task(guid string, state modelsv1.TaskState, cell string, created, updated, completed time.Time, callback string) *world {
	t := &modelsv1.Task{
		TaskGuid: guid, Domain: "d", State: state, CellId: cell,
		CreatedAt: created.UnixNano(), UpdatedAt: updated.UnixNano(),
		Definition: &modelsv1.TaskDefinition{RootFs: "docker:///x", CompletionCallbackUrl: callback}, ModificationTag: models.NewTag(),
	}
	if !completed.IsZero() {
		t.FirstCompletedAt = completed.UnixNano()
	}
	w.snap.Tasks = append(w.snap.Tasks, store.TaskRow{Task: t, Rev: w.next()})
	return w
}

// describe lists a plan's actions as sorted strings, e.g. "create pg/1".
func describe(p *Plan) []string {
	var out []string
	id := func(r store.ActualRow) string {
		return fmt.Sprintf("%s/%d/%s", r.ProcessGUID, r.Index, models.PresenceName(r.Presence))
	}
	for _, c := range p.Create {
		out = append(out, fmt.Sprintf("create %s/%d", c.Desired.GetKey().GetProcessGuid(), c.Index))
	}
	for _, a := range p.AuctionStale {
		out = append(out, "auction "+id(a.Row))
	}
	for _, a := range p.Restart {
		out = append(out, "restart "+id(a.Row))
	}
	for _, a := range p.Suspect {
		out = append(out, "suspect "+id(a.Row))
	}
	for _, a := range p.Unclaim {
		out = append(out, "unclaim "+id(a.Row))
	}
	for _, pr := range p.Promote {
		out = append(out, "promote "+id(pr.Suspect))
	}
	for _, a := range p.Delete {
		out = append(out, "delete "+id(a.Row)+" ("+a.Reason+")")
	}
	for _, s := range p.Stop {
		out = append(out, "stop "+id(s.Row)+" on "+s.Cell.GetCellId()+" ("+s.Reason+")")
	}
	for _, f := range p.FailTasks {
		out = append(out, "fail "+f.Row.Task.GetTaskGuid()+" ("+f.Reason+")")
	}
	for _, t := range p.AuctionTasks {
		out = append(out, "auction task "+t.Task.GetTaskGuid())
	}
	for _, t := range p.DemoteTasks {
		out = append(out, "demote "+t.Task.GetTaskGuid())
	}
	for _, t := range p.KickTasks {
		out = append(out, "kick "+t.Task.GetTaskGuid())
	}
	for _, t := range p.DeleteTasks {
		out = append(out, "delete task "+t.Task.GetTaskGuid())
	}
	sort.Strings(out)
	return out
}

func TestPlanLRPs(t *testing.T) {
	cases := []struct {
		name  string
		world *world
		now   time.Time
		want  []string
	}{
		{"converged: nothing to do", newWorld().cell("c1").desired("pg", "d", 2).
			ord("pg", 0, models.Running, "c1").ord("pg", 1, models.Claimed, "c1"), t0, nil},
		{"missing indices are created", newWorld().desired("pg", "d", 3).ord("pg", 1, models.Unclaimed, ""), t0,
			[]string{"create pg/0", "create pg/2"}},
		{"a desire of zero instances creates nothing", newWorld().desired("pg", "d", 0), t0, nil},
		{"stale unclaimed is auctioned again, fresh is not", newWorld().desired("pg", "d", 2).
			row("pg", "d", 0, models.Ordinary, models.Unclaimed, "", t0.Add(-30*time.Second), 0).
			row("pg", "d", 1, models.Ordinary, models.Unclaimed, "", t0.Add(-29*time.Second), 0), t0,
			[]string{"auction pg/0/ORDINARY"}},
		{"extras stay in a domain that is not fresh", newWorld().cell("c1").desired("pg", "d", 1).
			ord("pg", 0, models.Running, "c1").ord("pg", 1, models.Running, "c1").ord("pg", 2, models.Unclaimed, "").ord("pg", 3, models.Crashed, ""), t0, nil},
		{"extras retire in a fresh domain", newWorld().fresh("d").cell("c1").desired("pg", "d", 1).
			ord("pg", 0, models.Running, "c1").ord("pg", 1, models.Running, "c1").ord("pg", 2, models.Unclaimed, "").ord("pg", 3, models.Crashed, "").ord("pg", 4, models.Claimed, "gone"), t0,
			[]string{
				"delete pg/2/ORDINARY (" + ReasonExtra + ")", "delete pg/3/ORDINARY (" + ReasonExtra + ")", "delete pg/4/ORDINARY (" + ReasonExtra + ")",
				"stop pg/1/ORDINARY on c1 (" + ReasonExtra + ")",
			}},
		{"an expired domain is not fresh", func() *world {
			w := newWorld().cell("c1").desired("pg", "d", 0).ord("pg", 0, models.Running, "c1")
			w.snap.Domains["d"] = &modelsv1.Domain{Name: "d", ExpiresAt: t0.UnixNano()}
			return w
		}(), t0, nil},
		{"orphans stay in a domain that is not fresh", newWorld().cell("c1").ord("gone", 0, models.Running, "c1"), t0, nil},
		{"orphans retire in a fresh domain", newWorld().fresh("d").cell("c1").ord("gone", 0, models.Running, "c1").ord("gone", 1, models.Crashed, "").
			row("gone", "d", 0, models.Suspect, models.Running, "lost", t0, 0).row("gone", "d", 1, models.Evacuating, models.Running, "c1", t0, 0), t0,
			[]string{
				"delete gone/0/SUSPECT (" + ReasonOrphan + ")", "delete gone/1/EVACUATING (" + ReasonOrphan + ")", "delete gone/1/ORDINARY (" + ReasonOrphan + ")",
				"stop gone/0/ORDINARY on c1 (" + ReasonOrphan + ")",
			}},
		{"instances on a vanished cell become suspect", newWorld().cell("c1").desired("pg", "d", 3).
			ord("pg", 0, models.Running, "lost").ord("pg", 1, models.Claimed, "lost").ord("pg", 2, models.Running, "c1"), t0,
			[]string{"suspect pg/0/ORDINARY", "suspect pg/1/ORDINARY"}},
		{"vanished cell in a domain that is not fresh still makes suspects", newWorld().desired("pg", "other", 1).
			row("pg", "other", 0, models.Ordinary, models.Running, "lost", t0, 0), t0, []string{"suspect pg/0/ORDINARY"}},
		{"a replacement on a vanished cell with a suspect is unclaimed", newWorld().desired("pg", "d", 1).
			ord("pg", 0, models.Claimed, "lost2").row("pg", "d", 0, models.Suspect, models.Running, "lost1", t0, 0), t0,
			[]string{"unclaim pg/0/ORDINARY"}},
		{"the suspect waits while its replacement starts", newWorld().cell("c2").desired("pg", "d", 1).
			ord("pg", 0, models.Claimed, "c2").row("pg", "d", 0, models.Suspect, models.Running, "lost", t0, 0), t0, nil},
		{"the suspect goes once the replacement runs", newWorld().cell("c2").desired("pg", "d", 2).
			ord("pg", 0, models.Running, "c2").row("pg", "d", 0, models.Suspect, models.Running, "lost", t0, 0).
			ord("pg", 1, models.Running, "c2").row("pg", "d", 1, models.Suspect, models.Claimed, "lost", t0, 0), t0,
			[]string{"delete pg/0/SUSPECT (" + ReasonReplacementRunning + ")", "delete pg/1/SUSPECT (" + ReasonReplacementRunning + ")"}},
		{"the suspect is promoted when its cell returns", newWorld().cell("c1", "c2").desired("pg", "d", 2).
			ord("pg", 0, models.Claimed, "c2").row("pg", "d", 0, models.Suspect, models.Running, "c1", t0, 0).
			row("pg", "d", 1, models.Suspect, models.Running, "c1", t0, 0), t0,
			[]string{"promote pg/0/SUSPECT", "promote pg/1/SUSPECT"}},
		{"the suspect is promoted over a replacement whose own cell vanished", newWorld().cell("c1").desired("pg", "d", 1).
			ord("pg", 0, models.Running, "lost").row("pg", "d", 0, models.Suspect, models.Running, "c1", t0, 0), t0,
			[]string{"promote pg/0/SUSPECT"}},
		{"a suspect whose replacement vanished gets a new one", newWorld().desired("pg", "d", 1).
			row("pg", "d", 0, models.Suspect, models.Running, "lost", t0, 0), t0, []string{"create pg/0"}},
		{"extra suspects go in a fresh domain only", newWorld().fresh("d").desired("pg", "d", 1).desired("pg2", "nf", 1).
			ord("pg", 0, models.Unclaimed, "").row("pg", "d", 1, models.Suspect, models.Running, "lost", t0, 0).
			row("pg2", "nf", 0, models.Ordinary, models.Unclaimed, "", t0, 0).row("pg2", "nf", 1, models.Suspect, models.Running, "lost", t0, 0), t0,
			[]string{"delete pg/1/SUSPECT (" + ReasonExtra + ")"}},
		{"evacuating rows on gone cells are deleted", newWorld().cell("c1").desired("pg", "d", 2).
			ord("pg", 0, models.Running, "c1").row("pg", "d", 0, models.Evacuating, models.Running, "drained", t0, 0).
			ord("pg", 1, models.Running, "c1").row("pg", "d", 1, models.Evacuating, models.Running, "c1", t0, 0), t0,
			[]string{"delete pg/0/EVACUATING (" + ReasonCellGone + ")"}},
		{"crashed instances restart by the policy", newWorld().desired("pg", "d", 4).
			row("pg", "d", 0, models.Ordinary, models.Crashed, "", t0.Add(-29*time.Second), 3).
			row("pg", "d", 1, models.Ordinary, models.Crashed, "", t0.Add(-30*time.Second), 3).
			row("pg", "d", 2, models.Ordinary, models.Crashed, "", t0.Add(-16*time.Minute), 8).
			row("pg", "d", 3, models.Ordinary, models.Crashed, "", t0.Add(-24*time.Hour), 200), t0,
			[]string{"restart pg/1/ORDINARY", "restart pg/2/ORDINARY"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := MakePlan(tc.world.snap, tc.now, DefaultConfig())
			require.Equal(t, tc.want, describe(p))
		})
	}
}

func TestPlanCounts(t *testing.T) {
	w := newWorld().cell("c1").desired("pg", "d", 4).
		ord("pg", 0, models.Running, "c1").ord("pg", 1, models.Claimed, "c1").ord("pg", 2, models.Crashed, "").
		ord("pg", 5, models.Unclaimed, "").row("pg", "d", 1, models.Suspect, models.Running, "lost", t0, 0).
		task("a", models.TaskPending, "", t0, t0, time.Time{}, "").task("b", models.TaskRunning, "c1", t0, t0, time.Time{}, "")
	c := MakePlan(w.snap, t0, DefaultConfig()).Counts
	require.Equal(t, 4, c.Desired)
	require.Equal(t, [4]int{1, 1, 1, 1}, [4]int{c.Running, c.Claimed, c.Crashed, c.Unclaimed})
	require.Equal(t, 1, c.Missing, "index 3")
	require.Equal(t, 1, c.Extra, "index 5")
	require.Equal(t, 1, c.Suspect)
	require.Equal(t, 1, c.Cells)
	require.Equal(t, map[modelsv1.TaskState]int{models.TaskPending: 1, models.TaskRunning: 1}, c.Tasks)
}

func TestPlanTasks(t *testing.T) {
	cb := "http://cc/callback"
	w := newWorld().cell("c1").
		task("pending-new", models.TaskPending, "", t0.Add(-29*time.Minute), t0, time.Time{}, "").
		task("pending-old", models.TaskPending, "", t0.Add(-30*time.Minute), t0, time.Time{}, "").
		task("running", models.TaskRunning, "c1", t0.Add(-time.Hour), t0.Add(-time.Hour), time.Time{}, "").
		task("running-lost", models.TaskRunning, "lost", t0, t0, time.Time{}, "").
		task("completed-new", models.TaskCompleted, "c1", t0, t0.Add(-29*time.Second), t0.Add(-29*time.Second), cb).
		task("completed-kick", models.TaskCompleted, "c1", t0, t0.Add(-30*time.Second), t0.Add(-30*time.Second), cb).
		task("completed-poll", models.TaskCompleted, "c1", t0, t0.Add(-90*time.Second), t0.Add(-90*time.Second), "").
		task("completed-expired", models.TaskCompleted, "c1", t0, t0.Add(-30*time.Second), t0.Add(-2*time.Minute), cb).
		task("resolving-new", models.TaskResolving, "c1", t0, t0.Add(-29*time.Second), t0.Add(-time.Minute), cb).
		task("resolving-stuck", models.TaskResolving, "c1", t0, t0.Add(-30*time.Second), t0.Add(-time.Minute), cb).
		task("resolving-expired", models.TaskResolving, "c1", t0, t0.Add(-30*time.Second), t0.Add(-3*time.Minute), cb)
	p := MakePlan(w.snap, t0, DefaultConfig())
	require.Equal(t, []string{
		"auction task pending-new",
		"delete task completed-expired",
		"delete task resolving-expired",
		"demote resolving-stuck",
		"fail pending-old (" + TaskExpiredReason + ")",
		"fail running-lost (" + TaskCellGoneReason + ")",
		"kick completed-kick",
	}, describe(p))

	// The applier's changes: failed tasks are COMPLETED, failed, with the reason
	// and first_completed_at; the demoted task is COMPLETED and resubmitted.
	steps := p.steps(store.NewKeys(""))
	byAction := map[string][]step{}
	for _, s := range steps {
		byAction[s.action] = append(byAction[s.action], s)
	}
	require.Len(t, byAction[actionFailTask], 2)
	for _, s := range byAction[actionFailTask] {
		next := s.change.Writes[0].Value.(*modelsv1.Task)
		require.Equal(t, models.TaskCompleted, next.GetState())
		require.True(t, next.GetFailed())
		require.Equal(t, t0.UnixNano(), next.GetFirstCompletedAt())
		require.Nil(t, s.submit, "no callback URL")
	}
	demoted := byAction[actionDemoteTask][0]
	require.Equal(t, models.TaskCompleted, demoted.change.Writes[0].Value.(*modelsv1.Task).GetState())
	require.NotNil(t, demoted.submit, "the callback is retried at once")
}

func TestPlanHonoursConfiguredDurations(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StaleUnclaimed = 0 // zero means the default
	cfg.ExpirePendingTask = 0
	cfg.KickTask = cfgDuration(5 * time.Second)
	w := newWorld().desired("pg", "d", 1).row("pg", "d", 0, models.Ordinary, models.Unclaimed, "", t0.Add(-10*time.Second), 0).
		task("c", models.TaskCompleted, "c1", t0, t0.Add(-5*time.Second), t0.Add(-5*time.Second), "http://cb")
	require.Equal(t, []string{"kick c"}, describe(MakePlan(w.snap, t0, cfg)))
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	require.NoError(t, AcceleratedConfig().Validate())
	require.NoError(t, Config{}.Validate(), "zero durations take the defaults")
	bad := DefaultConfig()
	bad.Interval = cfgDuration(-time.Second)
	bad.ExpireCompletedTask = cfgDuration(time.Second)
	err := bad.Validate()
	require.ErrorContains(t, err, "convergence.interval")
	require.ErrorContains(t, err, "convergence.expire_completed_task")
}

// --- properties -------------------------------------------------------------

// randomWorld builds a valid state: ordinary rows in any state, suspects and
// evacuating rows CLAIMED or RUNNING, cells that may be gone, domains that may
// not be fresh, orphans, and tasks of every state and age.
func randomWorld(r *rand.Rand) *world {
	w := newWorld()
	cells := []string{"c0", "c1", "c2", "c3"}
	for _, c := range cells {
		if r.Intn(3) > 0 {
			w.cell(c)
		}
	}
	anyCell := func() string { return cells[r.Intn(len(cells))] }
	domains := []string{"fresh", "stale"}
	w.fresh("fresh")
	ago := func(max time.Duration) time.Time { return t0.Add(-time.Duration(r.Int63n(int64(max)))) }
	for g := 0; g < 6; g++ {
		guid := fmt.Sprintf("pg%d", g)
		domain := domains[r.Intn(2)]
		if r.Intn(4) > 0 {
			w.desired(guid, domain, int32(r.Intn(4)))
		}
		for i := int32(0); i < 6; i++ {
			if r.Intn(2) == 0 {
				states := []modelsv1.ActualLRPState{models.Unclaimed, models.Claimed, models.Running, models.Crashed}
				st := states[r.Intn(4)]
				cell := ""
				if st == models.Claimed || st == models.Running {
					cell = anyCell()
				}
				w.row(guid, domain, i, models.Ordinary, st, cell, ago(2*time.Minute), int32(r.Intn(10)))
			}
			for _, pres := range []modelsv1.ActualLRPPresence{models.Suspect, models.Evacuating} {
				if r.Intn(4) == 0 {
					st := []modelsv1.ActualLRPState{models.Claimed, models.Running}[r.Intn(2)]
					w.row(guid, domain, i, pres, st, anyCell(), ago(time.Minute), 0)
				}
			}
		}
	}
	taskStates := []modelsv1.TaskState{models.TaskPending, models.TaskRunning, models.TaskCompleted, models.TaskResolving}
	for i := 0; i < 10; i++ {
		st := taskStates[r.Intn(4)]
		created := ago(time.Hour)
		updated := ago(time.Minute)
		var completed time.Time
		cell := ""
		if st != models.TaskPending {
			cell = anyCell()
		}
		if st == models.TaskCompleted || st == models.TaskResolving {
			completed = ago(3 * time.Minute)
		}
		cb := ""
		if r.Intn(2) == 0 {
			cb = "http://cb"
		}
		w.task(fmt.Sprintf("t%d", i), st, cell, created, updated, completed, cb)
	}
	return w
}

// memStore is an in-memory etcd of the snapshot's records, to apply steps to.
type memStore struct {
	keys store.Keys
	recs map[string]memRec
	rev  int64
	snap *store.Snapshot // for cells, domains and desired LRPs
}

type memRec struct {
	msg proto.Message
	rev int64
}

func newMemStore(snap *store.Snapshot) *memStore {
	m := &memStore{keys: store.NewKeys(""), recs: map[string]memRec{}, snap: snap}
	for _, rows := range snap.Actuals {
		for _, r := range rows {
			m.recs[m.keys.Actual(r.ProcessGUID, r.Index, r.Presence)] = memRec{r.LRP, r.Rev}
			m.rev = max(m.rev, r.Rev)
		}
	}
	for _, t := range snap.Tasks {
		m.recs[m.keys.Task(t.Task.GetTaskGuid())] = memRec{t.Task, t.Rev}
		m.rev = max(m.rev, t.Rev)
	}
	for _, d := range snap.Desired {
		m.rev = max(m.rev, d.Rev)
	}
	return m
}

// apply commits a change as etcd would: all guards hold, or nothing happens.
func (m *memStore) apply(c store.Change) bool {
	for _, g := range c.Guards {
		if m.recs[g.Key].rev != g.Rev {
			return false
		}
	}
	m.rev++
	for _, w := range c.Writes {
		if w.Value == nil {
			delete(m.recs, w.Key)
		} else {
			m.recs[w.Key] = memRec{w.Value, m.rev}
		}
	}
	return true
}

func (m *memStore) snapshot() *store.Snapshot {
	out := &store.Snapshot{Desired: m.snap.Desired, Cells: m.snap.Cells, Domains: m.snap.Domains, Actuals: map[string][]store.ActualRow{}}
	for _, rec := range m.recs {
		switch v := rec.msg.(type) {
		case *modelsv1.ActualLRP:
			g := v.GetKey().GetProcessGuid()
			out.Actuals[g] = append(out.Actuals[g], store.ActualRow{ProcessGUID: g, Index: v.GetKey().GetIndex(), Presence: v.GetPresence(), LRP: v, Rev: rec.rev})
		case *modelsv1.Task:
			out.Tasks = append(out.Tasks, store.TaskRow{Task: v, Rev: rec.rev})
		}
	}
	return out
}

// runningLive lists the (guid, index) of the domain that have a RUNNING row on a live cell.
func runningLive(snap *store.Snapshot, domain string) map[string]bool {
	out := map[string]bool{}
	for _, rows := range snap.Actuals {
		for _, r := range rows {
			if _, up := snap.Cells[cellOf(&r)]; up && r.LRP.GetState() == models.Running && r.LRP.GetKey().GetDomain() == domain {
				out[fmt.Sprintf("%s/%d", r.ProcessGUID, r.Index)] = true
			}
		}
	}
	return out
}

func TestPlanProperties(t *testing.T) {
	keys := store.NewKeys("")
	for seed := int64(0); seed < 2000; seed++ {
		r := rand.New(rand.NewSource(seed))
		w := randomWorld(r)
		p := MakePlan(w.snap, t0, DefaultConfig())
		steps := p.steps(keys)
		mem := newMemStore(w.snap)
		before := runningLive(w.snap, "stale")

		// Every change is guarded by what the plan read, and no two changes write one key.
		written := map[string]bool{}
		for _, s := range steps {
			guarded := map[string]bool{}
			for _, g := range s.change.Guards {
				require.Equalf(t, mem.recs[g.Key].rev, g.Rev, "seed %d: guard on %s is not the snapshot's revision", seed, g.Key)
				guarded[g.Key] = true
			}
			for _, wr := range s.change.Writes {
				require.Truef(t, guarded[wr.Key], "seed %d: unguarded write of %s", seed, wr.Key)
				require.Falsef(t, written[wr.Key], "seed %d: two changes write %s", seed, wr.Key)
				written[wr.Key] = true
				if lrp, ok := wr.Value.(*modelsv1.ActualLRP); ok {
					require.Equalf(t, wr.Key, keys.Actual(lrp.GetKey().GetProcessGuid(), lrp.GetKey().GetIndex(), lrp.GetPresence()), "seed %d: record and key disagree", seed)
				}
			}
		}
		// Nothing is stopped in a domain that is not fresh.
		for _, s := range p.Stop {
			require.Equalf(t, "fresh", s.Row.LRP.GetKey().GetDomain(), "seed %d: stop in a domain that is not fresh", seed)
		}
		for _, s := range steps {
			require.Truef(t, mem.apply(s.change), "seed %d: change failed against its own snapshot", seed)
		}
		after := mem.snapshot()

		// A domain that is not fresh never loses a running instance on a live cell.
		for k := range before {
			require.Truef(t, runningLive(after, "stale")[k], "seed %d: %s lost its running instance", seed, k)
		}
		// Every desired index has an ordinary row; no index has two rows of one presence.
		for guid, d := range after.Desired {
			seen := map[string]bool{}
			for _, r := range after.Actuals[guid] {
				k := fmt.Sprintf("%d/%d", r.Index, r.Presence)
				require.Falsef(t, seen[k], "seed %d: duplicate row %s/%s", seed, guid, k)
				seen[k] = true
			}
			for i := int32(0); i < d.Info.GetInstances(); i++ {
				require.Truef(t, seen[fmt.Sprintf("%d/%d", i, models.Ordinary)], "seed %d: %s/%d has no ordinary row", seed, guid, i)
			}
		}
		// Convergence reaches a fixed point: planning again at the same time writes nothing.
		again := MakePlan(after, t0, DefaultConfig())
		require.Zerof(t, again.Writes(), "seed %d: second plan still writes: %v", seed, describe(again))
	}
}

func TestPlanDoesNotModifyTheSnapshot(t *testing.T) {
	w := randomWorld(rand.New(rand.NewSource(7)))
	before := map[*modelsv1.ActualLRP]*modelsv1.ActualLRP{}
	for _, rows := range w.snap.Actuals {
		for _, r := range rows {
			before[r.LRP] = proto.Clone(r.LRP).(*modelsv1.ActualLRP)
		}
	}
	p := MakePlan(w.snap, t0, DefaultConfig())
	_ = p.steps(store.NewKeys(""))
	for ptr, want := range before {
		require.True(t, proto.Equal(want, ptr))
	}
}

func cfgDuration(d time.Duration) config.Duration { return config.Duration(d) }
