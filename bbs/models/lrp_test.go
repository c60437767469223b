package models

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

var (
	t0    = time.Unix(1_700_000_000, 0)
	keyA  = &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-a", CellId: "cell-a"}
	keyB  = &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-b", CellId: "cell-b"}
	lrpK  = &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"}
	netA  = &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61000}}}
	netA2 = &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61001}}}
)

// row builds an instance row in a state, held by ik (nil for none).
func row(state modelsv1.ActualLRPState, ik *modelsv1.ActualLRPInstanceKey) *modelsv1.ActualLRP {
	a := NewUnclaimed(lrpK, t0)
	a.State = state
	a.InstanceKey = ik
	if state == Running {
		a.NetInfo = netA
	}
	return a
}

func TestClaimTransitions(t *testing.T) {
	cases := []struct {
		name        string
		cur         *modelsv1.ActualLRP
		ik          *modelsv1.ActualLRPInstanceKey
		wantErr     bool
		wantChanged bool
	}{
		{"unclaimed to claimed", row(Unclaimed, nil), keyA, false, true},
		{"claimed by same instance is a no-op", row(Claimed, keyA), keyA, false, false},
		{"claimed by other instance refused", row(Claimed, keyA), keyB, true, false},
		{"running reclaimed by same instance", row(Running, keyA), keyA, false, true},
		{"running claimed by other instance refused", row(Running, keyA), keyB, true, false},
		{"crashed refused", row(Crashed, nil), keyA, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next, changed, err := Claim(tc.cur, tc.ik, t0.Add(time.Second))
			if tc.wantErr {
				require.ErrorIs(t, err, ErrInvalidTransition)
				require.Contains(t, err.Error(), StateName(tc.cur.GetState()), "the error names the current state")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantChanged, changed)
			require.Equal(t, Claimed, next.GetState())
			require.True(t, SameInstance(next.GetInstanceKey(), tc.ik))
			if changed {
				require.Nil(t, next.GetNetInfo())
				require.True(t, SucceededBy(tc.cur.GetModificationTag(), next.GetModificationTag()))
			}
		})
	}
}

func TestStartTransitions(t *testing.T) {
	running := row(Running, keyA)
	routable := true
	running.Routable = &routable
	cases := []struct {
		name        string
		cur         *modelsv1.ActualLRP
		ik          *modelsv1.ActualLRPInstanceKey
		net         *modelsv1.ActualLRPNetInfo
		wantErr     bool
		wantChanged bool
	}{
		{"no row creates a running row", nil, keyA, netA, false, true},
		{"unclaimed to running", row(Unclaimed, nil), keyA, netA, false, true},
		{"claimed to running", row(Claimed, keyA), keyA, netA, false, true},
		{"claimed by another cell to running", row(Claimed, keyB), keyA, netA, false, true},
		{"identical start is a heartbeat", running, keyA, netA, false, false},
		{"running with new ports changes", running, keyA, netA2, false, true},
		{"running by another instance refused", running, keyB, netA, true, false},
		{"crashed refused", row(Crashed, nil), keyA, netA, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			routable := true
			next, changed, err := Start(tc.cur, lrpK, StartInfo{InstanceKey: tc.ik, NetInfo: tc.net, Routable: &routable}, t0.Add(time.Minute))
			if tc.wantErr {
				require.ErrorIs(t, err, ErrInvalidTransition)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantChanged, changed)
			require.Equal(t, Running, next.GetState())
			require.Equal(t, tc.net.GetPorts()[0].GetHostPort(), next.GetNetInfo().GetPorts()[0].GetHostPort())
			require.True(t, next.GetRoutable())
		})
	}
}

func TestCrashTransitions(t *testing.T) {
	policy := DefaultCrashPolicy()
	cases := []struct {
		name        string
		cur         *modelsv1.ActualLRP
		ik          *modelsv1.ActualLRPInstanceKey
		count       int32
		since       time.Time
		wantErr     bool
		wantState   modelsv1.ActualLRPState
		wantCount   int32
		wantRestart bool
	}{
		{"first crash restarts at once", row(Running, keyA), keyA, 0, t0, false, Unclaimed, 1, true},
		{"second crash restarts at once", row(Running, keyA), keyA, 1, t0, false, Unclaimed, 2, true},
		{"third crash waits", row(Running, keyA), keyA, 2, t0, false, Crashed, 3, false},
		{"claimed instance crashes too", row(Claimed, keyA), keyA, 4, t0, false, Crashed, 5, false},
		{"long-running instance resets its count", row(Running, keyA), keyA, 50, t0.Add(-10 * time.Minute), false, Unclaimed, 1, true},
		{"crash by another instance refused", row(Running, keyA), keyB, 0, t0, true, 0, 0, false},
		{"crash of unclaimed refused", row(Unclaimed, nil), keyA, 0, t0, true, 0, 0, false},
		{"crash of crashed refused", row(Crashed, nil), keyA, 3, t0, true, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cur.CrashCount = tc.count
			tc.cur.Since = tc.since.UnixNano()
			next, restart, err := Crash(tc.cur, tc.ik, "exit status 1", policy, t0.Add(time.Second))
			if tc.wantErr {
				require.ErrorIs(t, err, ErrInvalidTransition)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantState, next.GetState())
			require.Equal(t, tc.wantCount, next.GetCrashCount())
			require.Equal(t, tc.wantRestart, restart)
			require.Nil(t, next.GetInstanceKey())
			require.Nil(t, next.GetNetInfo())
			require.Equal(t, "exit status 1", next.GetCrashReason())
		})
	}
}

func TestFailAndUnclaimAndRemove(t *testing.T) {
	next, err := Fail(row(Unclaimed, nil), "insufficient resources: memory")
	require.NoError(t, err)
	require.Equal(t, "insufficient resources: memory", next.GetPlacementError())
	require.Equal(t, Unclaimed, next.GetState())

	_, err = Fail(row(Running, keyA), "x")
	require.ErrorIs(t, err, ErrInvalidTransition)

	long := make([]byte, 5000)
	for i := range long {
		long[i] = 'x'
	}
	next, err = Fail(row(Unclaimed, nil), string(long))
	require.NoError(t, err)
	require.Len(t, next.GetPlacementError(), MaxReasonBytes)

	un := Unclaim(row(Running, keyA), t0)
	require.Equal(t, Unclaimed, un.GetState())
	require.Nil(t, un.GetInstanceKey())

	require.NoError(t, CheckRemove(row(Running, keyA), keyA))
	require.NoError(t, CheckRemove(row(Running, keyA), nil))
	require.ErrorIs(t, CheckRemove(row(Running, keyA), keyB), ErrInvalidTransition)
}

func TestCrashPolicy(t *testing.T) {
	p := DefaultCrashPolicy()
	cases := []struct {
		count   int32
		elapsed time.Duration
		want    bool
	}{
		{0, 0, true}, {1, 0, true}, {2, 0, true},
		{3, 29 * time.Second, false}, {3, 30 * time.Second, true},
		{4, 59 * time.Second, false}, {4, 60 * time.Second, true},
		{5, 119 * time.Second, false}, {5, 2 * time.Minute, true},
		{6, 4*time.Minute - time.Second, false}, {6, 4 * time.Minute, true},
		{7, 8*time.Minute - time.Second, false}, {7, 8 * time.Minute, true},
		{8, 16*time.Minute - time.Second, false}, {8, 16 * time.Minute, true},
		{50, 16 * time.Minute, true}, {199, 16*time.Minute - time.Second, false}, {199, 16 * time.Minute, true},
		{200, 24 * time.Hour, false}, {500, 24 * time.Hour, false},
	}
	for _, tc := range cases {
		got := p.ShouldRestart(tc.count, t0, t0.Add(tc.elapsed))
		require.Equalf(t, tc.want, got, "crash count %d after %s", tc.count, tc.elapsed)
	}
	require.Equal(t, int32(1), p.NextCrashCount(Running, 7, t0, t0.Add(5*time.Minute+time.Second)))
	require.Equal(t, int32(8), p.NextCrashCount(Running, 7, t0, t0.Add(5*time.Minute)))
	require.Equal(t, int32(8), p.NextCrashCount(Claimed, 7, t0, t0.Add(time.Hour)), "a claimed instance never ran, so no reset")
}

func TestTaskTransitions(t *testing.T) {
	def := &modelsv1.TaskDefinition{RootFs: "preloaded:cflinuxfs4"}
	pending := NewTask("tg", "d", def, t0)
	running, should, err := StartTask(pending, "cell-a", t0)
	require.NoError(t, err)
	require.True(t, should)
	completed, err := CompleteTask(running, "cell-a", false, "", "42", t0)
	require.NoError(t, err)
	resolving, err := ResolvingTask(completed, t0)
	require.NoError(t, err)

	type step func(*modelsv1.Task) (*modelsv1.Task, error)
	start := func(cell string) step {
		return func(cur *modelsv1.Task) (*modelsv1.Task, error) {
			n, _, err := StartTask(cur, cell, t0)
			return n, err
		}
	}
	complete := func(cell string) step {
		return func(cur *modelsv1.Task) (*modelsv1.Task, error) { return CompleteTask(cur, cell, true, "boom", "", t0) }
	}
	fail := func(cur *modelsv1.Task) (*modelsv1.Task, error) { return FailTask(cur, TaskCancelledReason, t0) }
	reject := func(cur *modelsv1.Task) (*modelsv1.Task, error) {
		n, _, err := RejectTask(cur, "no room", 3, t0)
		return n, err
	}
	resolve := func(cur *modelsv1.Task) (*modelsv1.Task, error) { return ResolvingTask(cur, t0) }
	del := func(cur *modelsv1.Task) (*modelsv1.Task, error) { return cur, CheckDeleteTask(cur) }

	cases := []struct {
		name      string
		cur       *modelsv1.Task
		step      step
		wantErr   bool
		wantState modelsv1.TaskState
	}{
		{"pending starts", pending, start("cell-a"), false, TaskRunning},
		{"running restarted by same cell is a no-op", running, start("cell-a"), false, TaskRunning},
		{"running started by other cell refused", running, start("cell-b"), true, 0},
		{"completed cannot start", completed, start("cell-a"), true, 0},
		{"running completes", running, complete("cell-a"), false, TaskCompleted},
		{"completion from other cell refused", running, complete("cell-b"), true, 0},
		{"pending cannot complete", pending, complete("cell-a"), true, 0},
		{"pending fails (cancel)", pending, fail, false, TaskCompleted},
		{"running fails (cancel)", running, fail, false, TaskCompleted},
		{"completed cannot be cancelled", completed, fail, true, 0},
		{"pending rejected stays pending", pending, reject, false, TaskPending},
		{"running rejected goes back to pending", running, reject, false, TaskPending},
		{"completed cannot be rejected", completed, reject, true, 0},
		{"completed resolves", completed, resolve, false, TaskResolving},
		{"running cannot resolve", running, resolve, true, 0},
		{"resolving deletes", resolving, del, false, TaskResolving},
		{"completed cannot delete", completed, del, true, 0},
		{"pending cannot delete", pending, del, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next, err := tc.step(tc.cur)
			if tc.wantErr {
				require.Error(t, err)
				require.True(t, errors.Is(err, ErrInvalidTransition))
				return
			}
			require.NoError(t, err)
			if next == nil {
				next = tc.cur
			}
			require.Equal(t, tc.wantState, next.GetState())
		})
	}
}

func TestRejectFailsAfterMaxRetries(t *testing.T) {
	task := NewTask("tg", "d", &modelsv1.TaskDefinition{}, t0)
	for i := 1; i <= 3; i++ {
		next, retry, err := RejectTask(task, "no room", 3, t0)
		require.NoError(t, err)
		require.True(t, retry, "rejection %d retries", i)
		require.Equal(t, int32(i), next.GetRejectionCount())
		task = next
	}
	next, retry, err := RejectTask(task, "no room", 3, t0)
	require.NoError(t, err)
	require.False(t, retry, "the 4th rejection fails the task")
	require.Equal(t, TaskCompleted, next.GetState())
	require.True(t, next.GetFailed())
	require.Equal(t, "no room", next.GetFailureReason())
}

func TestStartHeartbeatDetectsEveryChange(t *testing.T) {
	yes, no := true, false
	base := StartInfo{InstanceKey: keyA, NetInfo: netA, Routable: &yes, AvailabilityZone: "z1", MetricTags: map[string]string{"app": "a"},
		InternalRoutes: []*modelsv1.ActualLRPInternalRoute{{Hostname: "a.internal"}}}
	running, changed, err := Start(row(Claimed, keyA), lrpK, base, t0)
	require.NoError(t, err)
	require.True(t, changed)
	cases := []struct {
		name    string
		mutate  func(i *StartInfo)
		changed bool
	}{
		{"identical", func(*StartInfo) {}, false},
		{"routable unset means routable", func(i *StartInfo) { i.Routable = nil }, false},
		{"not routable", func(i *StartInfo) { i.Routable = &no }, true},
		{"new port", func(i *StartInfo) { i.NetInfo = netA2 }, true},
		{"new zone", func(i *StartInfo) { i.AvailabilityZone = "z2" }, true},
		{"new metric tag value", func(i *StartInfo) { i.MetricTags = map[string]string{"app": "b"} }, true},
		{"new internal route", func(i *StartInfo) {
			i.InternalRoutes = []*modelsv1.ActualLRPInternalRoute{{Hostname: "b.internal"}}
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info := base
			tc.mutate(&info)
			next, changed, err := Start(running, lrpK, info, t0.Add(time.Minute))
			require.NoError(t, err)
			require.Equal(t, tc.changed, changed)
			require.Equal(t, !tc.changed, StartRepeats(running, info), "StartRepeats agrees with Start")
			if !changed {
				require.Same(t, running, next, "a heartbeat returns the row as it is")
			} else {
				require.Equal(t, running.GetSince(), next.GetSince(), "a running instance keeps its since")
			}
		})
	}
	require.False(t, StartRepeats(row(Claimed, keyA), base), "a claimed row lacks the start")
	other := base
	other.InstanceKey = keyB
	require.False(t, StartRepeats(running, other), "another instance's report is no repeat")
	require.False(t, StartRepeats(nil, base))
}
