package integration_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// pids asks each instance of the test app for its process id.
func pids(t *testing.T, rows []*modelsv1.ActualLRP) map[int32]string {
	t.Helper()
	out := map[int32]string{}
	for _, a := range rows {
		pid, err := get(hostAddr(a), "/pid")
		if err != nil {
			t.Fatalf("instance %d: %v", a.GetKey().GetIndex(), err)
		}
		out[a.GetKey().GetIndex()] = pid
	}
	return out
}

func instanceGUIDs(rows []*modelsv1.ActualLRP) map[int32]string {
	out := map[int32]string{}
	for _, a := range rows {
		out[a.GetKey().GetIndex()] = a.GetInstanceKey().GetInstanceGuid()
	}
	return out
}

func sameMap(a, b map[int32]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (c *cluster) desiredLRP(guid string) *modelsv1.DesiredLRP {
	c.t.Helper()
	resp, err := c.client().GetDesiredLRP(ctx(c.t), &bbsv1.GetDesiredLRPRequest{ProcessGuid: guid})
	if err != nil {
		c.t.Fatalf("get desired %s: %v", guid, err)
	}
	return resp.GetDesiredLrp()
}

// SIGKILL the BBS (its etcd is a separate process) right after a desire and a
// task were accepted, and start it again: the desired and actual state are
// intact, the running apps were never restarted, the work accepted before
// the kill is done, and new desires work.
func TestBBSRestartLosesNothing(t *testing.T) {
	t.Parallel()
	c := start(t, options{})
	c.desire(appLRP("steady", 3))
	steady := c.waitRunning("steady", 3, placeTimeout)
	steadyDesired := c.desiredLRP("steady")
	steadyPids := pids(t, steady)
	for index, p := range steadyPids {
		pid, err := strconv.Atoi(p)
		require.NoError(t, err)
		keeper := keeperOf(pid)
		require.NotZero(t, keeper, "instance %d (pid %d) runs under a process keeper", index, pid)
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", keeper))
		require.NoError(t, err)
		require.Equal(t, bin("gavel-keeper"), exe, "the cells use the gavel-keeper of their config")
	}

	// In flight when the BBS dies: an LRP whose instances are not running
	// yet and a task that is still to run.
	c.desire(appLRP("late", 2))
	task := taskDef("mid-flight", `sleep 1; printf done > out.txt`)
	task.ResultFile = "/out.txt"
	c.desireTask("mid-flight", task)
	c.stopBBS(0)
	lateDesired := appLRP("late", 2)

	// The apps do not need the BBS to keep serving.
	checkAnswers(t, steady)
	time.Sleep(presenceTTL)
	c.startBBS(0)
	c.waitActiveBBS(startTimeout)

	if got := c.desiredLRP("steady"); !proto.Equal(got, steadyDesired) {
		t.Errorf("steady's desired LRP changed across the restart:\nbefore %v\nafter  %v", steadyDesired, got)
	}
	if got := c.desiredLRP("late"); got.GetInstances() != 2 || !proto.Equal(got.GetAction(), lateDesired.GetAction()) {
		t.Errorf("late's desired LRP was not kept: %v", got)
	}
	after := c.waitRunning("steady", 3, placeTimeout)
	if !sameMap(instanceGUIDs(after), instanceGUIDs(steady)) {
		t.Errorf("steady's instances were replaced: before %s, after %s", describe(steady), describe(after))
	}
	if got := pids(t, after); !sameMap(got, steadyPids) {
		t.Errorf("steady's processes were restarted: pids before %v, after %v", steadyPids, got)
	}
	checkAnswers(t, c.waitRunning("late", 2, placeTimeout))
	done := c.waitTask("mid-flight", models.TaskCompleted, placeTimeout)
	if done.GetFailed() || done.GetResult() != "done" {
		t.Errorf("mid-flight task: failed=%v reason=%q result=%q", done.GetFailed(), done.GetFailureReason(), done.GetResult())
	}

	c.desire(appLRP("after-restart", 2))
	checkAnswers(t, c.waitRunning("after-restart", 2, placeTimeout))
}

// Two BBS replicas: SIGKILL the active one and the other takes the lock and
// serves within the lock TTL plus a few seconds; the reps and the auctioneer,
// given both addresses, keep working through it; the killed replica comes
// back as the passive one.
func TestTwoBBSReplicasFailOver(t *testing.T) {
	t.Parallel()
	c := start(t, options{bbsReplicas: 2})
	active := c.waitActiveBBS(startTimeout)
	other := 1 - active
	if ok, err := c.pingBBS(other); ok || err != nil {
		t.Fatalf("bbs-%d should be passive and answer: available=%v err=%v", other, ok, err)
	}
	c.desire(appLRP("ha", 2))
	before := c.waitRunning("ha", 2, placeTimeout)

	c.stopBBS(active)
	took := waitFor(t, lockTTL+5*time.Second, fmt.Sprintf("bbs-%d takes over", other), func() error {
		ok, err := c.pingBBS(other)
		if !ok {
			return fmt.Errorf("available=%v err=%v", ok, err)
		}
		return nil
	})
	t.Logf("bbs-%d active %s after bbs-%d was killed (lock TTL %s)", other, took.Round(time.Millisecond), active, lockTTL)

	after := c.waitRunning("ha", 2, 10*time.Second)
	if !sameMap(instanceGUIDs(after), instanceGUIDs(before)) {
		t.Errorf("failover replaced instances: before %s, after %s", describe(before), describe(after))
	}
	checkAnswers(t, after)

	// New work goes through the new active BBS, the auctioneer and the reps.
	c.desire(appLRP("after-failover", 2))
	checkAnswers(t, c.waitRunning("after-failover", 2, placeTimeout))
	n := int32(3)
	if _, err := c.client().UpdateDesiredLRP(ctx(t), &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: "ha", Update: &modelsv1.DesiredLRPUpdate{Instances: &n}}); err != nil {
		t.Fatalf("scale ha: %v", err)
	}
	checkAnswers(t, c.waitRunning("ha", 3, placeTimeout))
	c.desireTask("after-failover-task", taskDef("after-failover-task", "true"))
	if done := c.waitTask("after-failover-task", models.TaskCompleted, placeTimeout); done.GetFailed() {
		t.Errorf("task failed: %s", done.GetFailureReason())
	}

	// The killed replica returns as the passive one.
	c.startBBS(active)
	waitFor(t, startTimeout, fmt.Sprintf("bbs-%d serves again, passive", active), func() error {
		ok, err := c.pingBBS(active)
		if err != nil || ok {
			return fmt.Errorf("available=%v err=%v", ok, err)
		}
		return nil
	})
	if ok, err := c.pingBBS(other); !ok {
		t.Errorf("bbs-%d lost the lock when bbs-%d came back: %v", other, active, err)
	}
}
