package store

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/etcdtest"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

type fixture struct {
	store  *Store
	client *clientv3.Client
	ctx    context.Context
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, CommitterOptions{})
}

// newFixtureWith is newFixture with the committer's options (zero: defaults).
func newFixtureWith(t testing.TB, committer CommitterOptions) *fixture {
	t.Helper()
	client := etcdtest.Shared(t)
	s := New(Options{Client: client, KeyPrefix: etcdtest.Prefix(t), Logger: lager.NewLogger("store"), Committer: committer})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, s.WaitSynced(wctx))
	return &fixture{store: s, client: client, ctx: ctx}
}

func desired(guid string, instances int32) *modelsv1.DesiredLRP {
	return &modelsv1.DesiredLRP{
		ProcessGuid: guid, Domain: "d", RootFs: "preloaded:cflinuxfs4", Instances: instances, MemoryMb: 64, DiskMb: 64,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app"}}},
		Routes: map[string]string{"cf-router": `[]`},
	}
}

func ik(cell string) *modelsv1.ActualLRPInstanceKey {
	return &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-" + cell, CellId: cell}
}

func netInfo(port uint32) *modelsv1.ActualLRPNetInfo {
	return &modelsv1.ActualLRPNetInfo{Address: "127.0.0.1", Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: port}}}
}

func (f *fixture) row(t *testing.T, guid string, index int32) *modelsv1.ActualLRP {
	t.Helper()
	a, err := f.store.GetActualLRP(guid, index, models.Ordinary)
	require.NoError(t, err)
	return a
}

func TestDesireCreatesDesiredAndUnclaimedInstancesAtomically(t *testing.T) {
	f := newFixture(t)
	d, err := f.store.DesireLRP(f.ctx, desired("pg-1", 3))
	require.NoError(t, err)
	require.NotEmpty(t, d.GetModificationTag().GetEpoch())

	got, err := f.store.GetDesiredLRP("pg-1")
	require.NoError(t, err)
	require.Equal(t, "/bin/app", got.GetAction().GetRun().GetPath(), "run info and scheduling info merge back")
	require.Equal(t, int32(3), got.GetInstances())

	rows, rev := f.store.ListActualLRPs(ActualFilter{ProcessGUIDs: []string{"pg-1"}})
	require.Len(t, rows, 3)
	require.Positive(t, rev)
	for i, r := range rows {
		require.Equal(t, int32(i), r.GetKey().GetIndex())
		require.Equal(t, models.Unclaimed, r.GetState())
		require.Equal(t, "d", r.GetKey().GetDomain())
	}
	// All three rows and both desired records were one etcd revision.
	resp, err := f.client.Get(f.ctx, f.store.Keys().Prefix(), clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 5)
	for _, kv := range resp.Kvs {
		require.Equal(t, resp.Kvs[0].ModRevision, kv.ModRevision)
	}

	_, err = f.store.DesireLRP(f.ctx, desired("pg-1", 1))
	require.ErrorIs(t, err, models.ErrAlreadyExists)
}

func TestActualLRPLifecycleThroughEtcd(t *testing.T) {
	f := newFixture(t)
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 1))
	require.NoError(t, err)
	key := &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"}

	require.NoError(t, f.store.FailActualLRP(f.ctx, key, "insufficient resources: memory"))
	require.Equal(t, "insufficient resources: memory", f.row(t, "pg", 0).GetPlacementError())

	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("c1")))
	claimed := f.row(t, "pg", 0)
	require.Equal(t, models.Claimed, claimed.GetState())
	require.Empty(t, claimed.GetPlacementError())
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("c1")), "repeating a claim is a no-op")
	require.Equal(t, claimed.GetModificationTag().GetIndex(), f.row(t, "pg", 0).GetModificationTag().GetIndex())
	require.ErrorIs(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("c2")), models.ErrInvalidTransition)
	require.ErrorIs(t, f.store.FailActualLRP(f.ctx, key, "x"), models.ErrInvalidTransition)

	info := models.StartInfo{InstanceKey: ik("c1"), NetInfo: netInfo(61000)}
	require.NoError(t, f.store.StartActualLRP(f.ctx, key, info))
	running := f.row(t, "pg", 0)
	require.Equal(t, models.Running, running.GetState())
	require.NoError(t, f.store.StartActualLRP(f.ctx, key, info), "heartbeat")
	require.Equal(t, running.GetModificationTag().GetIndex(), f.row(t, "pg", 0).GetModificationTag().GetIndex(), "a heartbeat writes nothing")
	require.ErrorIs(t, f.store.StartActualLRP(f.ctx, key, models.StartInfo{InstanceKey: ik("c2"), NetInfo: netInfo(1)}), models.ErrInvalidTransition)

	res, err := f.store.CrashActualLRP(f.ctx, key, ik("c1"), "exit status 2")
	require.NoError(t, err)
	require.True(t, res.Restart)
	crashed := f.row(t, "pg", 0)
	require.Equal(t, models.Unclaimed, crashed.GetState(), "first crash restarts at once")
	require.Equal(t, int32(1), crashed.GetCrashCount())
	require.ErrorIs(t, f.store.RemoveActualLRP(f.ctx, "pg", 0, ik("c1")), models.ErrInvalidTransition, "the crashed instance no longer holds the row")

	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("c2")))
	require.NoError(t, f.store.RemoveActualLRP(f.ctx, "pg", 0, ik("c2")))
	_, err = f.store.GetActualLRP("pg", 0, models.Ordinary)
	require.ErrorIs(t, err, models.ErrNotFound)
	require.ErrorIs(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("c2")), models.ErrNotFound)

	// Start recreates a missing row, taking its domain from the desired LRP.
	require.NoError(t, f.store.StartActualLRP(f.ctx, &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0}, models.StartInfo{InstanceKey: ik("c3"), NetInfo: netInfo(61002)}))
	require.Equal(t, "d", f.row(t, "pg", 0).GetKey().GetDomain())
}

func TestStartOfReplacementDeletesSuspect(t *testing.T) {
	f := newFixture(t)
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 1))
	require.NoError(t, err)
	key := &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"}
	// A suspect row held by the old cell, as convergence leaves it.
	suspect := models.NewUnclaimed(key, time.Now())
	suspect.State, suspect.Presence, suspect.InstanceKey, suspect.NetInfo = models.Running, models.Suspect, ik("old"), netInfo(1)
	b, _ := proto.Marshal(suspect)
	_, err = f.client.Put(f.ctx, f.store.Keys().Actual("pg", 0, models.Suspect), string(b))
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := f.store.GetActualLRP("pg", 0, models.Suspect); return err == nil }, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("old")), "a claim by the suspect instance is ignored")
	require.Equal(t, models.Unclaimed, f.row(t, "pg", 0).GetState())

	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("new")))
	require.NoError(t, f.store.StartActualLRP(f.ctx, key, models.StartInfo{InstanceKey: ik("new"), NetInfo: netInfo(2)}))
	_, err = f.store.GetActualLRP("pg", 0, models.Suspect)
	require.ErrorIs(t, err, models.ErrNotFound, "the running replacement retires the suspect")
}

func TestFiftyConcurrentClaimsOneWins(t *testing.T) {
	f := newFixture(t)
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 1))
	require.NoError(t, err)
	const n = 50
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			errs[i] = f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("cell-"+string(rune('A'+i))))
		}(i)
	}
	close(start)
	wg.Wait()
	winners := 0
	var winner int
	for i, err := range errs {
		if err == nil {
			winners++
			winner = i
		} else {
			require.ErrorIs(t, err, models.ErrInvalidTransition)
		}
	}
	require.Equal(t, 1, winners)
	row := f.row(t, "pg", 0)
	require.Equal(t, models.Claimed, row.GetState())
	require.Equal(t, "cell-"+string(rune('A'+winner)), row.GetInstanceKey().GetCellId())
	require.Equal(t, uint32(1), row.GetModificationTag().GetIndex(), "exactly one write happened")
}

func TestConcurrentRequestsShareTransactions(t *testing.T) {
	f := newFixture(t)
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 200))
	require.NoError(t, err)
	txns0, muts0 := f.store.Committer().Stats()
	var wg sync.WaitGroup
	for i := int32(0); i < 200; i++ {
		wg.Add(1)
		go func(i int32) {
			defer wg.Done()
			require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", i, ik("c1")))
		}(i)
	}
	wg.Wait()
	txns, muts := f.store.Committer().Stats()
	require.Equal(t, int64(200), muts-muts0, "every claim committed once")
	require.Less(t, txns-txns0, int64(200), "concurrent claims were grouped into shared transactions")
	rows, _ := f.store.ListActualLRPs(ActualFilter{CellID: "c1"})
	require.Len(t, rows, 200)
}

func TestUpdateScalesUpAndDown(t *testing.T) {
	f := newFixture(t)
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 2))
	require.NoError(t, err)
	res, err := f.store.UpdateDesiredLRP(f.ctx, "pg", &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(4), Annotation: proto.String("v2")})
	require.NoError(t, err)
	require.Equal(t, []int32{2, 3}, res.NewIndices)
	require.Equal(t, uint32(1), res.After.GetModificationTag().GetIndex())
	rows, _ := f.store.ListActualLRPs(ActualFilter{ProcessGUIDs: []string{"pg"}})
	require.Len(t, rows, 4)

	key := func(i int32) *modelsv1.ActualLRPKey {
		return &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: i, Domain: "d"}
	}
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 3, ik("c1")))
	require.NoError(t, f.store.StartActualLRP(f.ctx, key(3), models.StartInfo{InstanceKey: ik("c1"), NetInfo: netInfo(1)}))

	res, err = f.store.UpdateDesiredLRP(f.ctx, "pg", &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(1)})
	require.NoError(t, err)
	require.Len(t, res.Stop, 1, "the running instance above the count is left to stop through its cell")
	require.Equal(t, int32(3), res.Stop[0].GetKey().GetIndex())
	rows, _ = f.store.ListActualLRPs(ActualFilter{ProcessGUIDs: []string{"pg"}})
	require.Len(t, rows, 2, "unclaimed rows above the count are deleted at once")

	_, err = f.store.UpdateDesiredLRP(f.ctx, "nope", &modelsv1.DesiredLRPUpdate{})
	require.ErrorIs(t, err, models.ErrNotFound)
}

func TestRemoveDesiredLRP(t *testing.T) {
	f := newFixture(t)
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 2))
	require.NoError(t, err)
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 1, ik("c1")))
	removed, stop, err := f.store.RemoveDesiredLRP(f.ctx, "pg")
	require.NoError(t, err)
	require.Equal(t, "pg", removed.GetKey().GetProcessGuid())
	require.Len(t, stop, 1)
	_, err = f.store.GetDesiredLRP("pg")
	require.ErrorIs(t, err, models.ErrNotFound)
	rows, _ := f.store.ListActualLRPs(ActualFilter{ProcessGUIDs: []string{"pg"}})
	require.Len(t, rows, 1, "only the claimed row remains until its cell removes it")
	_, _, err = f.store.RemoveDesiredLRP(f.ctx, "pg")
	require.ErrorIs(t, err, models.ErrNotFound)
}

func TestRetireDeletesWhenTheCellIsGone(t *testing.T) {
	f := newFixture(t)
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 2))
	require.NoError(t, err)
	key := func(i int32) *modelsv1.ActualLRPKey {
		return &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: i, Domain: "d"}
	}
	stop, _, err := f.store.RetireActualLRP(f.ctx, key(0))
	require.NoError(t, err)
	require.Nil(t, stop, "an unclaimed row is deleted")
	_, err = f.store.GetActualLRP("pg", 0, models.Ordinary)
	require.ErrorIs(t, err, models.ErrNotFound)

	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 1, ik("c1")))
	stop, _, err = f.store.RetireActualLRP(f.ctx, key(1))
	require.NoError(t, err)
	require.Nil(t, stop, "a claimed row on a cell with no presence is deleted")

	// With a live cell, the row is handed back for stopping.
	_, err = f.store.DesireLRP(f.ctx, desired("pg2", 1))
	require.NoError(t, err)
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg2", 0, ik("c9")))
	cell, _ := proto.Marshal(&modelsv1.CellPresence{CellId: "c9", RepAddress: "127.0.0.1:1"})
	_, err = f.client.Put(f.ctx, f.store.Keys().Cell("c9"), string(cell))
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := f.store.GetCell("c9"); return err == nil }, 5*time.Second, 10*time.Millisecond)
	stop, c, err := f.store.RetireActualLRP(f.ctx, &modelsv1.ActualLRPKey{ProcessGuid: "pg2", Index: 0})
	require.NoError(t, err)
	require.NotNil(t, stop)
	require.Equal(t, "127.0.0.1:1", c.GetRepAddress())
}

func TestTaskLifecycleThroughEtcd(t *testing.T) {
	f := newFixture(t)
	def := &modelsv1.TaskDefinition{RootFs: "docker:///busybox", Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/true"}}}}
	_, err := f.store.DesireTask(f.ctx, "t1", "d", def)
	require.NoError(t, err)
	_, err = f.store.DesireTask(f.ctx, "t1", "d", def)
	require.ErrorIs(t, err, models.ErrAlreadyExists)

	should, err := f.store.StartTask(f.ctx, "t1", "c1")
	require.NoError(t, err)
	require.True(t, should)
	should, err = f.store.StartTask(f.ctx, "t1", "c1")
	require.NoError(t, err)
	require.False(t, should)
	_, err = f.store.StartTask(f.ctx, "t1", "c2")
	require.ErrorIs(t, err, models.ErrInvalidTransition)

	tasks, _ := f.store.ListTasks(TaskFilter{CellID: "c1"})
	require.Len(t, tasks, 1)

	_, err = f.store.CompleteTask(f.ctx, "t1", "c2", false, "", "x")
	require.ErrorIs(t, err, models.ErrInvalidTransition)
	done, err := f.store.CompleteTask(f.ctx, "t1", "c1", false, "", "the-result")
	require.NoError(t, err)
	require.Equal(t, "the-result", done.GetResult())
	require.ErrorIs(t, f.store.DeleteTask(f.ctx, "t1"), models.ErrInvalidTransition)
	_, err = f.store.ResolvingTask(f.ctx, "t1")
	require.NoError(t, err)
	require.NoError(t, f.store.DeleteTask(f.ctx, "t1"))
	_, err = f.store.GetTask("t1")
	require.ErrorIs(t, err, models.ErrNotFound)

	_, err = f.store.DesireTask(f.ctx, "t2", "d", def)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		_, retry, err := f.store.RejectTask(f.ctx, "t2", "insufficient resources")
		require.NoError(t, err)
		require.True(t, retry)
	}
	after, retry, err := f.store.RejectTask(f.ctx, "t2", "insufficient resources")
	require.NoError(t, err)
	require.False(t, retry)
	require.True(t, after.GetFailed())
	require.Equal(t, models.TaskCompleted, after.GetState())

	_, err = f.store.DesireTask(f.ctx, "t3", "d", def)
	require.NoError(t, err)
	_, cancelled, err := f.store.FailTask(f.ctx, "t3", models.TaskCancelledReason)
	require.NoError(t, err)
	require.Equal(t, models.TaskCancelledReason, cancelled.GetFailureReason())
}

func TestDomainsExpire(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, f.store.UpsertDomain(f.ctx, "forever", 0))
	require.NoError(t, f.store.UpsertDomain(f.ctx, "brief", 2*time.Second))
	domains, _ := f.store.ListDomains()
	require.Len(t, domains, 2)
	require.Eventually(t, func() bool {
		d, _ := f.store.ListDomains()
		return len(d) == 1 && d[0].GetName() == "forever"
	}, 10*time.Second, 50*time.Millisecond)
}

func TestUndecodableRecordIsReportedAndKept(t *testing.T) {
	f := newFixture(t)
	key := f.store.Keys().Task("broken")
	_, err := f.client.Put(f.ctx, key, "\xff\xff not a protobuf")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return f.store.Cache().Undecodable()[key] != nil }, 5*time.Second, 10*time.Millisecond)
	_, err = f.store.GetTask("broken")
	require.ErrorContains(t, err, "cannot be decoded")
	tasks, _ := f.store.ListTasks(TaskFilter{})
	require.Empty(t, tasks)
	resp, err := f.client.Get(f.ctx, key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "the record is kept in etcd")
}

func TestDesireLargerThanOneTransaction(t *testing.T) {
	client := etcdtest.Shared(t)
	s := New(Options{Client: client, KeyPrefix: etcdtest.Prefix(t), Logger: lager.NewLogger("store"), MaxTxnOps: 10})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	require.NoError(t, s.WaitSynced(ctx))
	_, err := s.DesireLRP(ctx, desired("pg", 25))
	require.NoError(t, err)
	rows, _ := s.ListActualLRPs(ActualFilter{ProcessGUIDs: []string{"pg"}})
	require.Len(t, rows, 25, "rows beyond etcd's operation limit are written in follow-up transactions")
	for i, r := range rows {
		require.Equal(t, int32(i), r.GetKey().GetIndex())
	}
}

func TestWaitForARevisionOutsideThePrefix(t *testing.T) {
	f := newFixture(t)
	resp, err := f.client.Put(f.ctx, "/elsewhere/"+t.Name(), "x")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, f.store.Cache().WaitForRevision(ctx, resp.Header.Revision), "a progress notification reveals the revision")
	require.GreaterOrEqual(t, f.store.Cache().Revision(), resp.Header.Revision)

	short, cancelShort := context.WithTimeout(f.ctx, 100*time.Millisecond)
	defer cancelShort()
	require.ErrorIs(t, f.store.Cache().WaitForRevision(short, resp.Header.Revision+1000), context.DeadlineExceeded)
}

// Callers waiting for one revision share one waiter (every request of a
// transaction waits for its revision), woken and forgotten when it arrives;
// another revision has its own.
func TestWaitersOfOneRevisionShareOneWaiter(t *testing.T) {
	f := newFixture(t)
	c := f.store.Cache()
	require.Nil(t, c.waiterFor(c.Revision()), "a revision the cache reflects needs no waiter")
	resp, err := f.client.Get(f.ctx, "/")
	require.NoError(t, err)
	next := resp.Header.Revision + 1
	a, b, later := c.waiterFor(next), c.waiterFor(next), c.waiterFor(next+1)
	require.Same(t, a, b)
	require.NotSame(t, a, later)
	c.mu.RLock()
	require.Same(t, a, c.waiterAt[next])
	require.Same(t, later, c.waiterAt[next+1])
	c.mu.RUnlock()

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- c.WaitForRevision(f.ctx, next) }()
	}
	_, err = f.client.Put(f.ctx, "/elsewhere/"+t.Name(), "x")
	require.NoError(t, err)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	select {
	case <-a.done:
	default:
		t.Fatal("the shared waiter was not woken")
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	require.NotContains(t, c.waiterAt, next, "a woken waiter is forgotten")
	for _, w := range c.waiters {
		require.NotSame(t, a, w)
	}
}

// Many claims and starts in one call: each succeeds or fails alone, two
// claims of one row in the same batch leave exactly one winner (the other's
// guard fails in the shared commit and its retry sees the claim), and every
// answer is readable from the cache when the call returns.
func TestBatchedClaimsAndStartsFailAlone(t *testing.T) {
	f := newFixture(t)
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 40))
	require.NoError(t, err)
	ik := func(cell string, i int) *modelsv1.ActualLRPInstanceKey {
		return &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("%s-%d", cell, i), CellId: cell}
	}
	var claims []Claim
	for i := range 40 {
		claims = append(claims, Claim{ProcessGuid: "pg", Index: int32(i), InstanceKey: ik("cell-a", i)})
	}
	claims = append(claims,
		Claim{ProcessGuid: "pg", Index: 3, InstanceKey: ik("cell-b", 3)},   // loses index 3 to cell-a
		Claim{ProcessGuid: "pg", Index: 99, InstanceKey: ik("cell-a", 99)}, // no such row
		Claim{ProcessGuid: "pg", Index: 5, InstanceKey: ik("cell-a", 5)},   // a repeat in the same batch
	)
	errs := f.store.ClaimActualLRPs(f.ctx, claims)
	require.Len(t, errs, len(claims))
	// Index 3 is claimed twice: either may win, the other is refused.
	winner := "cell-a"
	if errs[3] != nil {
		winner = "cell-b"
		errs[3], errs[40] = errs[40], errs[3]
	}
	require.ErrorIs(t, errs[40], models.ErrInvalidTransition, "one of the two claims of index 3 loses")
	require.Equal(t, winner, f.row(t, "pg", 3).GetInstanceKey().GetCellId())
	for i := range 40 {
		require.NoError(t, errs[i], "claim %d", i)
		require.Equal(t, models.Claimed, f.row(t, "pg", int32(i)).GetState(), "the cache holds claim %d on return", i)
	}
	require.ErrorIs(t, errs[41], models.ErrNotFound)
	require.NoError(t, errs[42], "a repeated claim by the same instance succeeds")

	var starts []Start
	for i := range 40 {
		cell := "cell-a"
		if i == 3 {
			cell = winner
		}
		starts = append(starts, Start{Key: &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: int32(i), Domain: "d"},
			Info: models.StartInfo{InstanceKey: ik(cell, i), NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1"}}})
	}
	errs = f.store.StartActualLRPs(f.ctx, starts)
	for i := range 40 {
		require.NoError(t, errs[i], "start %d", i)
		require.Equal(t, models.Running, f.row(t, "pg", int32(i)).GetState())
	}
	other := starts[7]
	other.Info.InstanceKey = ik("cell-b", 7) // not the instance running index 7
	errs = f.store.StartActualLRPs(f.ctx, []Start{other, starts[8]})
	require.ErrorIs(t, errs[0], models.ErrInvalidTransition)
	require.Equal(t, "cell-a", f.row(t, "pg", 7).GetInstanceKey().GetCellId())
	require.NoError(t, errs[1], "a repeated start is a heartbeat")
	require.Empty(t, f.store.ClaimActualLRPs(f.ctx, nil))
}

func TestStartWithoutClaimNeedsTheCurrentRunInfoVersion(t *testing.T) {
	f := newFixture(t)
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 3))
	require.NoError(t, err)
	cur, ok := f.store.GetRunInfoVersion("pg")
	require.True(t, ok)
	start := func(index int32, cell string, ran *models.RunInfoVersion) Start {
		return Start{Key: &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: index, Domain: "d"},
			Info: models.StartInfo{InstanceKey: ik(cell), NetInfo: netInfo(61000), RanVersion: ran}}
	}
	stale := cur
	stale.Revision--
	otherEpoch := cur
	otherEpoch.Epoch = "another-epoch"

	errs := f.store.StartActualLRPs(f.ctx, []Start{
		start(0, "cell-a", &cur),        // UNCLAIMED → RUNNING with the current run info
		start(1, "cell-a", &stale),      // ran an older run info
		start(2, "cell-a", &otherEpoch), // ran the run info of an earlier desire
	})
	require.NoError(t, errs[0])
	require.Equal(t, models.Running, f.row(t, "pg", 0).GetState(), "a start from UNCLAIMED naming the current run info is the instance's first write")
	require.Equal(t, "cell-a", f.row(t, "pg", 0).GetInstanceKey().GetCellId())
	for i := 1; i <= 2; i++ {
		require.ErrorIs(t, errs[i], models.ErrInvalidTransition, "index %d", i)
		require.ErrorContains(t, errs[i], "without a claim")
		require.Equal(t, models.Unclaimed, f.row(t, "pg", int32(i)).GetState(), "a refused start leaves index %d UNCLAIMED", i)
	}

	// Once claimed, the claim checked the version: a start from CLAIMED is
	// not refused for it.
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 1, ik("cell-a")))
	require.NoError(t, f.store.StartActualLRPs(f.ctx, []Start{start(1, "cell-a", &stale)})[0])
	require.Equal(t, models.Running, f.row(t, "pg", 1).GetState())

	// Nor is an index past the desired instances (a scaled-down one) started
	// into existence without a claim.
	errs = f.store.StartActualLRPs(f.ctx, []Start{start(3, "cell-a", &cur)})
	require.ErrorIs(t, errs[0], models.ErrInvalidTransition)
	require.ErrorContains(t, errs[0], "not desired at that index")
	_, err = f.store.GetActualLRP("pg", 3, models.Ordinary)
	require.Error(t, err, "no row for index 3")

	// A start without a claim of an LRP no longer desired is refused, even
	// though a start of a missing row would otherwise recreate it.
	_, _, err = f.store.RemoveDesiredLRP(f.ctx, "pg")
	require.NoError(t, err)
	errs = f.store.StartActualLRPs(f.ctx, []Start{start(2, "cell-a", &cur)})
	require.ErrorIs(t, errs[0], models.ErrInvalidTransition)
	require.ErrorContains(t, errs[0], "not desired")
}
