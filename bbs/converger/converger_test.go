package converger_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/converger"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/store"
	"github.com/gavelhq/gavel/bbs/taskcallback"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdtest"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

var epoch = time.Unix(1_700_000_000, 0)

// recorder stands in for the auction requester, the cell client and the callback worker.
type recorder struct {
	mu        sync.Mutex
	lrps      []*auctioneerv1.LRPStartRequest
	lrpCalls  [][]string // each RequestLRPs call's instances, as "guid/index"
	tasks     []*auctioneerv1.TaskStartRequest
	stops     []string
	submitted []string
	forward   converger.Completions
}

func (r *recorder) RequestLRPs(reqs ...*auctioneerv1.LRPStartRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lrps = append(r.lrps, reqs...)
	var call []string
	for _, l := range reqs {
		for _, i := range l.GetIndices() {
			call = append(call, fmt.Sprintf("%s/%d", l.GetProcessGuid(), i))
		}
	}
	r.lrpCalls = append(r.lrpCalls, call)
}

func (r *recorder) RequestTasks(reqs ...*auctioneerv1.TaskStartRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tasks = append(r.tasks, reqs...)
}

func (r *recorder) StopLRPInstance(_ context.Context, cell *modelsv1.CellPresence, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stops = append(r.stops, key.GetProcessGuid()+"/"+itoa(key.GetIndex())+"@"+cell.GetCellId())
	return nil
}

func (r *recorder) Submit(t *modelsv1.Task) {
	r.mu.Lock()
	r.submitted = append(r.submitted, t.GetTaskGuid())
	fwd := r.forward
	r.mu.Unlock()
	if fwd != nil {
		fwd.Submit(t)
	}
}

// take returns and clears what was recorded: LRP auctions as "guid/index", task auctions, stops, submissions.
func (r *recorder) take() (lrps, tasks, stops, submitted []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lrps {
		for _, i := range l.GetIndices() {
			lrps = append(lrps, l.GetProcessGuid()+"/"+itoa(i))
		}
	}
	for _, t := range r.tasks {
		tasks = append(tasks, t.GetTaskGuid())
	}
	stops, submitted = r.stops, r.submitted
	r.lrps, r.tasks, r.stops, r.submitted = nil, nil, nil, nil
	sort.Strings(lrps)
	sort.Strings(tasks)
	sort.Strings(stops)
	sort.Strings(submitted)
	return lrps, tasks, stops, submitted
}

func itoa(i int32) string { return string(rune('0' + i)) }

type fixture struct {
	t     *testing.T
	ctx   context.Context
	etcd  *clientv3.Client
	store *store.Store
	clock *fakeclock.FakeClock
	rec   *recorder
	conv  *converger.Converger
	reg   *prometheus.Registry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	clk := fakeclock.NewFakeClock(epoch)
	client := etcdtest.Shared(t)
	st := store.New(store.Options{Client: client, KeyPrefix: etcdtest.Prefix(t), Clock: clk, Logger: lager.NewLogger("test")})
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.NoError(t, st.WaitSynced(ctx))
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	conv, err := converger.New(converger.Options{
		Store: st, Auctions: rec, Cells: rec, Completions: rec, Clock: clk,
		Config: converger.DefaultConfig(), Logger: lager.NewLogger("test"), Metrics: converger.NewMetrics(reg),
	})
	require.NoError(t, err)
	return &fixture{t: t, ctx: ctx, etcd: client, store: st, clock: clk, rec: rec, conv: conv, reg: reg}
}

func (f *fixture) converge() *converger.Result {
	f.t.Helper()
	res, err := f.conv.Converge(f.ctx, "test")
	require.NoError(f.t, err)
	return res
}

// cellUp registers a cell presence (no lease) and waits for the cache to see it.
func (f *fixture) cellUp(id string) {
	f.t.Helper()
	b, err := proto.Marshal(&modelsv1.CellPresence{CellId: id, RepAddress: id + ":1800"})
	require.NoError(f.t, err)
	resp, err := f.etcd.Put(f.ctx, f.store.Keys().Cell(id), string(b))
	require.NoError(f.t, err)
	require.NoError(f.t, f.store.Cache().WaitForRevision(f.ctx, resp.Header.Revision))
}

func (f *fixture) cellDown(id string) {
	f.t.Helper()
	resp, err := f.etcd.Delete(f.ctx, f.store.Keys().Cell(id))
	require.NoError(f.t, err)
	require.NoError(f.t, f.store.Cache().WaitForRevision(f.ctx, resp.Header.Revision))
}

func (f *fixture) desire(guid, domain string, instances int32) {
	f.t.Helper()
	_, err := f.store.DesireLRP(f.ctx, &modelsv1.DesiredLRP{
		ProcessGuid: guid, Domain: domain, RootFs: "preloaded:x", Instances: instances, MemoryMb: 64,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/app"}}},
	})
	require.NoError(f.t, err)
}

func ik(guid string, index int32, cell string) *modelsv1.ActualLRPInstanceKey {
	return &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-" + guid + "-" + itoa(index) + "-" + cell, CellId: cell}
}

// run starts an instance on a cell (creating the row when there is none).
func (f *fixture) run(guid, domain string, index int32, cell string) {
	f.t.Helper()
	require.NoError(f.t, f.store.StartActualLRP(f.ctx, &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: index, Domain: domain},
		models.StartInfo{InstanceKey: ik(guid, index, cell), NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1"}}))
}

// rows lists a process's rows as "index/PRESENCE/STATE@cell".
func (f *fixture) rows(guid string) []string {
	lrps, _ := f.store.ListActualLRPs(store.ActualFilter{ProcessGUIDs: []string{guid}})
	var out []string
	for _, a := range lrps {
		out = append(out, itoa(a.GetKey().GetIndex())+"/"+models.PresenceName(a.GetPresence())+"/"+models.StateName(a.GetState())+"@"+a.GetInstanceKey().GetCellId())
	}
	return out
}

func TestDomainFreshnessGatesRetirement(t *testing.T) {
	f := newFixture(t)
	f.cellUp("c1")
	f.desire("pg", "d", 4)
	for i := int32(0); i < 4; i++ {
		f.run("pg", "d", i, "c1")
	}
	_, err := f.store.UpdateDesiredLRP(f.ctx, "pg", &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(2)})
	require.NoError(t, err)
	// Rows the scale-down left (RUNNING 2 and 3), plus an orphan whose LRP is gone.
	f.run("orphan", "d", 0, "c1")
	want := []string{"0/ORDINARY/RUNNING@c1", "1/ORDINARY/RUNNING@c1", "2/ORDINARY/RUNNING@c1", "3/ORDINARY/RUNNING@c1"}
	require.Equal(t, want, f.rows("pg"))

	for pass := 0; pass < 3; pass++ {
		res := f.converge()
		require.Equal(t, 2, res.Plan.Counts.Extra)
		f.clock.Increment(time.Minute)
	}
	_, _, stops, _ := f.rec.take()
	require.Empty(t, stops, "nothing is retired while the domain is not fresh")
	require.Equal(t, want, f.rows("pg"))
	require.Len(t, f.rows("orphan"), 1)

	require.NoError(t, f.store.UpsertDomain(f.ctx, "d", 0))
	f.converge()
	_, _, stops, _ = f.rec.take()
	require.Equal(t, []string{"orphan/0@c1", "pg/2@c1", "pg/3@c1"}, stops, "a fresh domain loses its extras and orphans")
	require.Equal(t, want[:2], f.rows("pg")[:2], "desired instances stay")
}

func TestLostCellMakesSuspectsThenPromotesThemWhenItReturns(t *testing.T) {
	f := newFixture(t)
	f.cellUp("c1")
	f.cellUp("c2")
	f.desire("pg", "d", 2)
	f.run("pg", "d", 0, "c1")
	f.run("pg", "d", 1, "c2")
	f.converge()
	f.rec.take()

	f.cellDown("c1")
	res := f.converge()
	require.Equal(t, []string{"0/ORDINARY/UNCLAIMED@", "0/SUSPECT/RUNNING@c1", "1/ORDINARY/RUNNING@c2"}, f.rows("pg"))
	f.rec.mu.Lock()
	require.Len(t, f.rec.lrps, 1)
	require.True(t, f.rec.lrps[0].GetRepair(), "the replacement is asked for as a repair, which an auctioneer never holds")
	f.rec.mu.Unlock()
	lrps, _, _, _ := f.rec.take()
	require.Equal(t, []string{"pg/0"}, lrps, "the replacement is auctioned")
	require.Len(t, res.Plan.Suspect, 1)

	// A second pass while the cell is still gone changes nothing: the suspect stays routable.
	f.clock.Increment(10 * time.Second)
	res = f.converge()
	require.Zero(t, res.Plan.Writes())
	require.Equal(t, []string{"0/ORDINARY/UNCLAIMED@", "0/SUSPECT/RUNNING@c1", "1/ORDINARY/RUNNING@c2"}, f.rows("pg"))

	// The replacement is claimed elsewhere, then the cell comes back first.
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("pg", 0, "c2")))
	f.cellUp("c1")
	f.converge()
	require.Equal(t, []string{"0/ORDINARY/RUNNING@c1", "1/ORDINARY/RUNNING@c2"}, f.rows("pg"), "the suspect is promoted and the replacement dropped")
	a, err := f.store.GetActualLRP("pg", 0, models.Ordinary)
	require.NoError(t, err)
	require.Equal(t, ik("pg", 0, "c1").GetInstanceGuid(), a.GetInstanceKey().GetInstanceGuid())
	require.Equal(t, models.Ordinary, a.GetPresence())
}

// TestLostCellReplacementsAuctionedChunkByChunk: a lost cell's replacements
// are asked for a chunk at a time as their changes commit, not all at once
// after the last commit, and each exactly once.
func TestLostCellReplacementsAuctionedChunkByChunk(t *testing.T) {
	f := newFixture(t)
	conv, err := converger.New(converger.Options{
		Store: f.store, Auctions: f.rec, Cells: f.rec, Completions: f.rec, Clock: f.clock,
		Config: converger.DefaultConfig(), Logger: lager.NewLogger("test"), AuctionChunk: 4,
	})
	require.NoError(t, err)
	f.cellUp("c1")
	f.desire("pg", "d", 10)
	for i := int32(0); i < 10; i++ {
		f.run("pg", "d", i, "c1")
	}
	f.cellDown("c1")
	res, err := conv.Converge(f.ctx, "test")
	require.NoError(t, err)
	require.Len(t, res.Plan.Suspect, 10)
	require.Equal(t, 10, res.AuctionedLRPs)

	f.rec.mu.Lock()
	calls := f.rec.lrpCalls
	f.rec.mu.Unlock()
	var sizes []int
	var all []string
	for _, c := range calls {
		sizes = append(sizes, len(c))
		all = append(all, c...)
	}
	require.Equal(t, []int{4, 4, 2}, sizes, "one request per committed chunk of four")
	sort.Strings(all)
	want := make([]string, 10)
	for i := range want {
		want[i] = fmt.Sprintf("pg/%d", i)
	}
	require.Equal(t, want, all, "every replacement auctioned once")
}

func TestSuspectGoesWhenItsReplacementRuns(t *testing.T) {
	f := newFixture(t)
	f.cellUp("c1")
	f.cellUp("c2")
	f.desire("pg", "d", 1)
	f.run("pg", "d", 0, "c1")
	f.cellDown("c1")
	f.converge()
	require.Equal(t, []string{"0/ORDINARY/UNCLAIMED@", "0/SUSPECT/RUNNING@c1"}, f.rows("pg"))
	f.run("pg", "d", 0, "c2")
	require.Equal(t, []string{"0/ORDINARY/RUNNING@c2"}, f.rows("pg"))

	// The replacement's cell vanishes too: the replacement becomes the suspect.
	f.cellDown("c2")
	f.converge()
	require.Equal(t, []string{"0/ORDINARY/UNCLAIMED@", "0/SUSPECT/RUNNING@c2"}, f.rows("pg"))
	// Its own replacement vanishes before running: it is unclaimed, the suspect stays.
	f.cellUp("c3")
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("pg", 0, "c3")))
	f.cellDown("c3")
	f.rec.take()
	f.converge()
	require.Equal(t, []string{"0/ORDINARY/UNCLAIMED@", "0/SUSPECT/RUNNING@c2"}, f.rows("pg"))
	lrps, _, _, _ := f.rec.take()
	require.Equal(t, []string{"pg/0"}, lrps)
}

func TestMissingCreatedAndStaleUnclaimedAuctionedAgain(t *testing.T) {
	f := newFixture(t)
	f.desire("pg", "d", 2)
	require.NoError(t, f.store.RemoveActualLRP(f.ctx, "pg", 1, nil))
	f.clock.Increment(10 * time.Second)
	f.converge()
	lrps, _, _, _ := f.rec.take()
	require.Equal(t, []string{"pg/1"}, lrps, "the missing index is created and auctioned; index 0 is not stale yet")
	require.Equal(t, []string{"0/ORDINARY/UNCLAIMED@", "1/ORDINARY/UNCLAIMED@"}, f.rows("pg"))

	f.clock.Increment(19 * time.Second)
	f.converge()
	lrps, _, _, _ = f.rec.take()
	require.Empty(t, lrps)
	f.clock.Increment(time.Second)
	res := f.converge()
	lrps, _, _, _ = f.rec.take()
	require.Equal(t, []string{"pg/0"}, lrps, "index 0 is 30 s old, index 1 20 s")
	require.Zero(t, res.Applied, "a stale row is auctioned again without a write")
}

func TestCrashedRestartedAfterBackoff(t *testing.T) {
	f := newFixture(t)
	f.desire("pg", "d", 1)
	key := &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"}
	crash := func() *store.CrashResult {
		require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("pg", 0, "c1")))
		res, err := f.store.CrashActualLRP(f.ctx, key, ik("pg", 0, "c1"), "exit 1")
		require.NoError(t, err)
		return res
	}
	require.True(t, crash().Restart)
	require.True(t, crash().Restart)
	require.False(t, crash().Restart, "the third crash waits")
	require.Equal(t, []string{"0/ORDINARY/CRASHED@"}, f.rows("pg"))

	f.clock.Increment(29 * time.Second)
	f.converge()
	lrps, _, _, _ := f.rec.take()
	require.Empty(t, lrps)
	require.Equal(t, []string{"0/ORDINARY/CRASHED@"}, f.rows("pg"))

	f.clock.Increment(time.Second)
	f.converge()
	lrps, _, _, _ = f.rec.take()
	require.Equal(t, []string{"pg/0"}, lrps)
	a, err := f.store.GetActualLRP("pg", 0, models.Ordinary)
	require.NoError(t, err)
	require.Equal(t, models.Unclaimed, a.GetState())
	require.Equal(t, int32(3), a.GetCrashCount(), "the count survives the restart")

	// The fourth crash waits 60 s.
	crash()
	f.clock.Increment(59 * time.Second)
	f.converge()
	lrps, _, _, _ = f.rec.take()
	require.Empty(t, lrps)
	f.clock.Increment(time.Second)
	f.converge()
	lrps, _, _, _ = f.rec.take()
	require.Equal(t, []string{"pg/0"}, lrps)
}

func (f *fixture) task(guid, callback string) {
	f.t.Helper()
	_, err := f.store.DesireTask(f.ctx, guid, "d", &modelsv1.TaskDefinition{
		RootFs: "docker:///x", CompletionCallbackUrl: callback,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/x"}}},
	})
	require.NoError(f.t, err)
}

func (f *fixture) taskState(guid string) string {
	t, err := f.store.GetTask(guid)
	if err != nil {
		return "gone"
	}
	s := models.TaskStateName(t.GetState())
	if t.GetFailed() {
		s += " failed: " + t.GetFailureReason()
	}
	return s
}

func TestTaskConvergence(t *testing.T) {
	f := newFixture(t)
	f.cellUp("c1")
	f.cellUp("c2")
	f.task("expires", "")
	f.clock.Increment(29 * time.Minute)
	f.task("pending", "")
	f.task("lost", "http://127.0.0.1:1/cb")
	f.task("polled", "")
	f.task("resolving", "")
	for guid, cell := range map[string]string{"lost": "c2", "polled": "c1", "resolving": "c1"} {
		_, err := f.store.StartTask(f.ctx, guid, cell)
		require.NoError(t, err)
	}
	for _, guid := range []string{"polled", "resolving"} {
		_, err := f.store.CompleteTask(f.ctx, guid, "c1", false, "", "ok")
		require.NoError(t, err)
	}
	_, err := f.store.ResolvingTask(f.ctx, "resolving")
	require.NoError(t, err)

	f.converge()
	_, tasks, _, _ := f.rec.take()
	require.Equal(t, []string{"expires", "pending"}, tasks, "every PENDING task is auctioned again each pass")

	f.clock.Increment(time.Minute) // expires is 30 min old; resolving is stuck 60 s
	f.cellDown("c2")
	res := f.converge()
	require.Equal(t, "COMPLETED failed: "+converger.TaskExpiredReason, f.taskState("expires"))
	require.Equal(t, "COMPLETED failed: "+converger.TaskCellGoneReason, f.taskState("lost"))
	require.Equal(t, "PENDING", f.taskState("pending"))
	require.Equal(t, "COMPLETED", f.taskState("resolving"), "a stuck RESOLVING task goes back to COMPLETED")
	_, tasks, _, submitted := f.rec.take()
	require.Equal(t, []string{"pending"}, tasks)
	require.Equal(t, []string{"lost"}, submitted, "the failed task's callback; the demoted task has none (its client polls)")
	require.Equal(t, 2, len(res.Plan.FailTasks))

	// Completed tasks are deleted 2 min after their first completion, polled or not.
	f.clock.Increment(59 * time.Second)
	f.converge()
	require.Equal(t, "COMPLETED", f.taskState("polled"))
	f.clock.Increment(time.Second)
	f.converge()
	require.Equal(t, "gone", f.taskState("polled"))
	require.Equal(t, "gone", f.taskState("resolving"))
	require.Equal(t, "COMPLETED failed: "+converger.TaskCellGoneReason, f.taskState("lost"), "completed 60 s ago")
	f.clock.Increment(time.Minute)
	f.converge()
	require.Equal(t, "gone", f.taskState("lost"))
	require.Equal(t, "gone", f.taskState("expires"))
}

func TestCallbackRekickedByConvergenceUntilItSucceeds(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int32
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer cb.Close()
	// One attempt per delivery, so every retry after the first comes from convergence.
	worker := taskcallback.New(taskcallback.Options{Store: f.store, Logger: lager.NewLogger("test"), Attempts: 1})
	go func() { _ = worker.Run(f.ctx) }()
	f.rec.mu.Lock()
	f.rec.forward = worker
	f.rec.mu.Unlock()

	f.cellUp("c1")
	f.task("t", cb.URL)
	_, err := f.store.StartTask(f.ctx, "t", "c1")
	require.NoError(t, err)
	done, err := f.store.CompleteTask(f.ctx, "t", "c1", false, "", "42")
	require.NoError(t, err)
	worker.Submit(done) // as the API does on completion
	require.Eventually(t, func() bool { return calls.Load() == 1 && f.taskState("t") == "RESOLVING" }, 10*time.Second, 10*time.Millisecond)

	f.clock.Increment(29 * time.Second)
	f.converge()
	require.Equal(t, "RESOLVING", f.taskState("t"), "not stuck long enough")
	f.clock.Increment(time.Second)
	f.converge()
	require.Eventually(t, func() bool { return calls.Load() == 2 && f.taskState("t") == "RESOLVING" }, 10*time.Second, 10*time.Millisecond)

	f.clock.Increment(30 * time.Second)
	f.converge()
	require.Eventually(t, func() bool { return f.taskState("t") == "gone" }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, int32(3), calls.Load(), "503, 503, then 200")
}

func TestConcurrentLifecycleWriteBeatsThePlan(t *testing.T) {
	f := newFixture(t)
	f.cellUp("c1")
	f.desire("pg", "d", 1)
	f.run("pg", "d", 0, "c1")
	f.cellDown("c1")
	plan := converger.MakePlan(f.store.Snapshot(), f.clock.Now(), converger.DefaultConfig())
	require.Len(t, plan.Suspect, 1)
	// The cell reports a crash between plan and apply.
	_, err := f.store.CrashActualLRP(f.ctx, &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"}, ik("pg", 0, "c1"), "oom")
	require.NoError(t, err)
	res, err := f.conv.Apply(f.ctx, plan)
	require.NoError(t, err)
	require.Equal(t, 1, res.Conflicts)
	require.Zero(t, res.Applied)
	require.Equal(t, []string{"0/ORDINARY/UNCLAIMED@"}, f.rows("pg"), "the crash (an immediate restart) stands")
	lrps, _, _, _ := f.rec.take()
	require.Empty(t, lrps, "nothing is auctioned for a change that did not commit")
}

func TestPassMetrics(t *testing.T) {
	f := newFixture(t)
	f.cellUp("c1")
	f.desire("pg", "d", 3)
	f.run("pg", "d", 0, "c1")
	f.task("t", "")
	f.converge()
	got := map[string]float64{}
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			switch {
			case m.GetGauge() != nil:
				got[name] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				got[name] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[name] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	require.Equal(t, 3.0, got["gavel_bbs_lrps{desired}"])
	require.Equal(t, 1.0, got["gavel_bbs_lrps{running}"])
	require.Equal(t, 2.0, got["gavel_bbs_lrps{unclaimed}"])
	require.Equal(t, 1.0, got["gavel_bbs_tasks{PENDING}"])
	require.Equal(t, 1.0, got["gavel_bbs_convergence_passes_total{test}"])
	require.Equal(t, 1.0, got["gavel_bbs_convergence_pass_duration_seconds"])
	require.Equal(t, 1.0, got["gavel_bbs_convergence_tasks_kicked_total"])
	require.Equal(t, 1.0, got["gavel_bbs_convergence_present_cells"])
}

// passes reads gavel_bbs_convergence_passes_total for one trigger.
func (f *fixture) passes(trigger string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(f.t, err)
	for _, mf := range mfs {
		if mf.GetName() != "gavel_bbs_convergence_passes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "trigger" && l.GetValue() == trigger {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// The row of an instance its desired LRP still wants, removed (a restarted
// cell with no container for it, a retire), is replaced by a pass right
// away, not at the next periodic pass; a removal a scale-down explains
// triggers no pass.
func TestRemovedWantedInstanceIsReplacedAtOnce(t *testing.T) {
	f := newFixture(t)
	f.cellUp("c1")
	f.desire("web", "d", 2)
	f.run("web", "d", 0, "c1")
	f.run("web", "d", 1, "c1")
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	done := make(chan struct{})
	signals := make(chan os.Signal, 1)
	ready := make(chan struct{})
	go func() { defer close(done); _ = f.conv.Run(signals, ready) }()
	defer func() { signals <- os.Interrupt; <-done }()
	<-ready
	require.Eventually(t, func() bool { return f.passes(converger.TriggerStart) == 1 }, 10*time.Second, 10*time.Millisecond)
	f.rec.take()

	// The interval (30 s on the fake clock) never elapses in this test.
	require.NoError(t, f.store.RemoveActualLRP(ctx, "web", 0, ik("web", 0, "c1")))
	require.Eventually(t, func() bool {
		f.clock.Increment(50 * time.Millisecond) // the pass waits 100 ms for a burst to gather
		return f.passes(converger.TriggerInstanceRemoved) == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		return slices.Contains(f.rows("web"), "0/ORDINARY/UNCLAIMED@")
	}, 10*time.Second, 10*time.Millisecond, "rows %v", f.rows("web"))
	lrps, _, _, _ := f.rec.take()
	require.Contains(t, lrps, "web/0", "the replacement is auctioned")

	// Scaled down to 1: instance 1's removal is explained, no pass.
	_, err := f.store.UpdateDesiredLRP(ctx, "web", &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(1)})
	require.NoError(t, err)
	require.NoError(t, f.store.RemoveActualLRP(ctx, "web", 1, ik("web", 1, "c1")))
	time.Sleep(300 * time.Millisecond)
	f.clock.Increment(time.Second)
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 1.0, f.passes(converger.TriggerInstanceRemoved), "no pass for an instance the scale-down removed")
}

// With cell_return set, one extra pass runs that long after the start (the
// cells of a restarted cluster have had their presence TTL to come back),
// and only one.
func TestCellReturnPassRunsOnceAfterTheStart(t *testing.T) {
	f := newFixture(t)
	cfg := converger.DefaultConfig()
	cfg.CellReturn = config.Duration(5 * time.Second)
	f.reg = prometheus.NewRegistry()
	conv, err := converger.New(converger.Options{
		Store: f.store, Auctions: f.rec, Cells: f.rec, Completions: f.rec, Clock: f.clock,
		Config: cfg, Logger: lager.NewLogger("test"), Metrics: converger.NewMetrics(f.reg),
	})
	require.NoError(t, err)
	f.desire("web", "d", 1)
	done := make(chan struct{})
	signals := make(chan os.Signal, 1)
	ready := make(chan struct{})
	go func() { defer close(done); _ = conv.Run(signals, ready) }()
	defer func() { signals <- os.Interrupt; <-done }()
	<-ready
	require.Eventually(t, func() bool { return f.passes(converger.TriggerStart) == 1 }, 10*time.Second, 10*time.Millisecond)
	f.clock.WaitForNWatchersAndIncrement(4*time.Second, 2)
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, 0.0, f.passes(converger.TriggerCellReturn), "no pass before cell_return")
	f.clock.Increment(time.Second)
	require.Eventually(t, func() bool { return f.passes(converger.TriggerCellReturn) == 1 }, 10*time.Second, 10*time.Millisecond)
	f.clock.Increment(20 * time.Second)
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, 1.0, f.passes(converger.TriggerCellReturn), "one cell_return pass only")
	require.Error(t, converger.Config{CellReturn: config.Duration(-time.Second)}.Validate())
}
