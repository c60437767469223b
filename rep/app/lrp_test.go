package app_test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// An LRP whose app listens on $PORT after a delay is CLAIMED at once and
// RUNNING only once its TCP and HTTP checks pass; its net info reaches the
// BBS and the port answers. Killing the app is reported as a crash naming
// the exit status; the BBS restarts it by policy (UNCLAIMED, crash count 1)
// and a second placement runs it again with a new instance.
func TestLRPRunsCrashesAndRestarts(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBS(t, prefix)
	r, _ := startRep(t, repConfig(t, prefix, b.Addr(), "cell-lrp"))
	cell := r.Cells()[0]
	repc := dialRep(t, cell.Addr())

	d := desiredLRP("lrp-web", runA(appPath, "-delay=1s"), healthChecks())
	_, err := bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
	require.NoError(t, err)
	performLRP(t, repc, "cell-lrp", d, 0)

	// Watch the row: CLAIMED while the app is still starting, then RUNNING.
	var seen []modelsv1.ActualLRPState
	var running *modelsv1.ActualLRP
	require.Eventually(t, func() bool {
		a := actual(t, bbs, "lrp-web", 0)
		if a == nil {
			return false
		}
		if len(seen) == 0 || seen[len(seen)-1] != a.GetState() {
			seen = append(seen, a.GetState())
		}
		if a.GetState() == modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING {
			running = a
			return true
		}
		return false
	}, 30*time.Second, 5*time.Millisecond)
	require.Contains(t, seen, modelsv1.ActualLRPState_ACTUAL_LRP_STATE_CLAIMED, "claimed before it ran: %v", seen)

	// The health check passed before RUNNING was reported: the port answers now.
	ni := running.GetNetInfo()
	require.Equal(t, "127.0.0.1", ni.GetAddress())
	require.Len(t, ni.GetPorts(), 1)
	require.Equal(t, uint32(8080), ni.GetPorts()[0].GetContainerPort())
	hostPort := ni.GetPorts()[0].GetHostPort()
	require.NotZero(t, hostPort)
	require.True(t, running.GetRoutable())
	require.Equal(t, "cell-lrp", running.GetInstanceKey().GetCellId())
	require.Equal(t, "z1", running.GetAvailabilityZone())
	base := fmt.Sprintf("http://127.0.0.1:%d", hostPort)
	status, body, err := get(base + "/")
	require.NoError(t, err, "the app answers as soon as the BBS says RUNNING")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "ok\n", body)

	state, err := repc.State(ctx, &repv1.StateRequest{})
	require.NoError(t, err)
	require.Len(t, state.GetLrps(), 1)
	require.Equal(t, running.GetInstanceKey().GetInstanceGuid(), state.GetLrps()[0].GetInstanceGuid())
	require.Equal(t, int32(4096-64), state.GetAvailableResources().GetMemoryMb())
	require.Zero(t, state.GetStartingContainerCount())

	// Kill the app: a crash with the exit status, restarted by policy.
	_, body, err = get(base + "/pid")
	require.NoError(t, err)
	pid, err := strconv.Atoi(body)
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	crashed := waitActual(t, bbs, "lrp-web", 0, "restarted after the crash", isState(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_UNCLAIMED))
	require.Equal(t, int32(1), crashed.GetCrashCount())
	require.Contains(t, crashed.GetCrashReason(), "Exited with status 137")
	require.Nil(t, crashed.GetInstanceKey())
	require.Eventually(t, func() bool { return len(cell.Executor().List()) == 0 }, 10*time.Second, 10*time.Millisecond,
		"the crashed container is deleted")

	performLRP(t, repc, "cell-lrp", d, 0)
	again := waitActual(t, bbs, "lrp-web", 0, "running again", isState(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING))
	require.NotEqual(t, running.GetInstanceKey().GetInstanceGuid(), again.GetInstanceKey().GetInstanceGuid())
	require.Equal(t, int32(1), again.GetCrashCount())
}

// StopLRPInstance stops an app that ignores SIGTERM with SIGKILL at the end
// of the grace time; no process of its group is left, and the instance is
// removed from the BBS.
func TestStopLRPInstanceWithinGraceTime(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBS(t, prefix)
	cfg := repConfig(t, prefix, b.Addr(), "cell-stop")
	r, _ := startRep(t, cfg)
	cell := r.Cells()[0]
	repc := dialRep(t, cell.Addr())

	d := desiredLRP("lrp-stubborn", sh(`trap "" TERM; sleep 1000 & echo $! > sleep.pid; echo $$ > sh.pid; wait`), nil)
	_, err := bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
	require.NoError(t, err)
	performLRP(t, repc, "cell-stop", d, 0)
	running := waitActual(t, bbs, "lrp-stubborn", 0, "running", isState(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING))
	ik := running.GetInstanceKey()
	rootfs := cfg.Process.RootDir + "/" + ik.GetInstanceGuid() + "/rootfs/"
	shPid, sleepPid := readPid(t, rootfs+"sh.pid"), readPid(t, rootfs+"sleep.pid")
	require.False(t, pidGone(shPid))
	require.False(t, pidGone(sleepPid))

	start := time.Now()
	_, err = repc.StopLRPInstance(ctx, &repv1.StopLRPInstanceRequest{Key: running.GetKey(), InstanceKey: ik})
	require.NoError(t, err)
	// pidGone reads /proc: a process is gone when it is absent or a zombie
	// (the orphaned sleep is reparented to the machine's init, which may
	// reap it late).
	require.Eventually(t, func() bool { return pidGone(shPid) && pidGone(sleepPid) }, cfg.GraceTime.D()+2*time.Second, 10*time.Millisecond,
		"the processes are killed within the grace time")
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, cfg.GraceTime.D()-100*time.Millisecond, "SIGTERM is ignored, so SIGKILL comes at the end of the grace time")
	require.Eventually(t, func() bool { return actual(t, bbs, "lrp-stubborn", 0) == nil }, 10*time.Second, 10*time.Millisecond,
		"the stopped instance is removed from the BBS")
	require.Eventually(t, func() bool { return len(cell.Executor().List()) == 0 }, 10*time.Second, 10*time.Millisecond)
	_, err = repc.StopLRPInstance(ctx, &repv1.StopLRPInstanceRequest{Key: running.GetKey(), InstanceKey: ik})
	require.NoError(t, err, "stopping again is not an error")
}
