package executor_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/executor"
)

func lrpRequest(action *modelsv1.Action, checks, readiness []*modelsv1.Check) executor.RunRequest {
	return executor.RunRequest{
		Action:          action,
		Ports:           []uint32{8080},
		CheckDefinition: &modelsv1.CheckDefinition{Checks: checks, ReadinessChecks: readiness},
		StartTimeout:    20 * time.Second,
		Env:             []*modelsv1.EnvironmentVariable{{Name: "VCAP_SERVICES", Value: `{"db":[]}`}},
		LogConfig:       executor.LogConfig{Guid: "log-guid", Index: 2, SourceName: "APP/PROC/WEB"},
		InstanceGuid:    "instance-1",
		InstanceIndex:   2,
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// An app that listens on $PORT after a delay becomes running only once its
// TCP and HTTP checks pass; its env describes its ports; killing it completes
// the container as failed with its exit status.
func TestLRPRunsAfterHealthCheckAndCrashesWhenKilled(t *testing.T) {
	h := newHarness(t, nil)
	h.allocate("lrp", true)
	req := lrpRequest(runA(appPath, "-delay=300ms"), []*modelsv1.Check{tcpCheck(8080), httpCheck(8080, "/")}, nil)
	require.NoError(t, h.e.Run(ctx, "lrp", req))

	running := h.next("lrp", isRunning).Snapshot()
	require.Equal(t, executor.StateRunning, running.State)
	require.True(t, running.Routable)
	require.Equal(t, "127.0.0.1", running.NetInfo.HostIP)
	require.Len(t, running.NetInfo.Ports, 1)
	hostPort := running.NetInfo.Ports[0].HostPort
	require.Equal(t, uint32(8080), running.NetInfo.Ports[0].ContainerPort)
	require.NotZero(t, hostPort)

	base := fmt.Sprintf("http://127.0.0.1:%d", hostPort)
	status, body := get(t, base+"/")
	require.Equal(t, http.StatusOK, status, "the app answers as soon as it is running")
	require.Equal(t, "ok\n", body)

	_, body = get(t, base+"/env")
	var env map[string]string
	require.NoError(t, json.Unmarshal([]byte(body), &env))
	hp := strconv.Itoa(int(hostPort))
	require.Equal(t, hp, env["PORT"])
	require.Equal(t, hp, env["VCAP_APP_PORT"])
	require.Equal(t, hp, env["CF_INSTANCE_PORT"])
	require.Equal(t, "127.0.0.1", env["CF_INSTANCE_IP"])
	require.Equal(t, "127.0.0.1", env["CF_INSTANCE_INTERNAL_IP"])
	require.Equal(t, "127.0.0.1:"+hp, env["CF_INSTANCE_ADDR"])
	require.JSONEq(t, fmt.Sprintf(`[{"external":%s,"internal":%s}]`, hp, hp), env["CF_INSTANCE_PORTS"])
	require.Equal(t, "2", env["INSTANCE_INDEX"])
	require.Equal(t, "instance-1", env["INSTANCE_GUID"])
	require.Equal(t, `{"db":[]}`, env["VCAP_SERVICES"])

	remaining := h.e.RemainingResources()
	require.Equal(t, 4096-128, remaining.MemoryMB)

	_, body = get(t, base+"/pid")
	pid, err := strconv.Atoi(body)
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	done := h.completed("lrp")
	require.True(t, done.RunResult.Failed)
	require.False(t, done.RunResult.Stopped)
	require.Equal(t, 137, done.RunResult.ExitStatus)
	require.Equal(t, "APP/PROC/WEB: Exited with status 137", done.RunResult.FailureReason)
	require.Contains(t, h.logText("lrp"), "[APP/PROC/WEB stdout] listening on "+hp)

	lines, err := h.e.Logs("lrp")
	require.NoError(t, err)
	require.Equal(t, "log-guid", lines[0].LogGuid)
	require.Equal(t, 2, lines[0].Index)

	require.NoError(t, h.e.Delete(ctx, "lrp"))
	require.Equal(t, executor.Resources{MemoryMB: 4096, DiskMB: 8192, Containers: 10}, h.e.RemainingResources())
	_, err = h.e.Get("lrp")
	require.ErrorIs(t, err, executor.ErrContainerNotFound)
}

func TestHealthCheckNeverPasses(t *testing.T) {
	h := newHarness(t, nil)
	h.allocate("sick", true)
	req := lrpRequest(runA("sleep", "60"), []*modelsv1.Check{tcpCheck(8080)}, nil)
	req.StartTimeout = time.Second
	require.NoError(t, h.e.Run(ctx, "sick", req))
	c := h.completed("sick")
	require.True(t, c.RunResult.Failed)
	require.Regexp(t, `^Instance never healthy after 1s: failed to make TCP connection to port 8080: .*connection refused`, c.RunResult.FailureReason)
}

func TestLivenessFailureEndsContainer(t *testing.T) {
	h := newHarness(t, nil)
	h.allocate("flaky", true)
	// Healthy while the ready file exists in its directory.
	req := lrpRequest(runA(appPath), []*modelsv1.Check{httpCheck(8080, "/ready")}, nil)
	require.NoError(t, h.e.Run(ctx, "flaky", req))
	require.Eventually(t, func() bool {
		c, err := h.e.Get("flaky")
		return err == nil && c.State == executor.StateCreated
	}, 10*time.Second, 10*time.Millisecond)
	readyFile := filepath.Join(h.rootfs("flaky"), "ready")
	require.NoError(t, os.WriteFile(readyFile, nil, 0o644))
	h.next("flaky", isRunning)
	require.NoError(t, os.Remove(readyFile))
	c := h.completed("flaky")
	require.Equal(t, "Instance became unhealthy: failed to make HTTP request to '/ready' on port 8080: status code 503", c.RunResult.FailureReason)
}

func TestReadinessTogglesRoutable(t *testing.T) {
	h := newHarness(t, nil)
	h.allocate("web", true)
	req := lrpRequest(runA(appPath), []*modelsv1.Check{tcpCheck(8080)}, []*modelsv1.Check{httpCheck(8080, "/ready")})
	require.NoError(t, h.e.Run(ctx, "web", req))
	running := h.next("web", isRunning).Snapshot()
	require.False(t, running.Routable, "not routable before the first readiness pass")

	readyFile := filepath.Join(h.rootfs("web"), "ready")
	routable := func(want bool) func(executor.Event) bool {
		return func(ev executor.Event) bool {
			e, ok := ev.(executor.ContainerRoutableChanged)
			return ok && e.Container.Routable == want
		}
	}
	require.NoError(t, os.WriteFile(readyFile, nil, 0o644))
	h.next("web", routable(true))
	c, err := h.e.Get("web")
	require.NoError(t, err)
	require.True(t, c.Routable)
	require.NoError(t, os.Remove(readyFile))
	h.next("web", routable(false))
	require.NoError(t, os.WriteFile(readyFile, nil, 0o644))
	h.next("web", routable(true))
	c, err = h.e.Get("web")
	require.NoError(t, err)
	require.Equal(t, executor.StateRunning, c.State, "readiness failures do not end the container")
}

func TestLegacyMonitorAction(t *testing.T) {
	h := newHarness(t, nil)
	h.allocate("mon", true)
	req := lrpRequest(runA(appPath, "-delay=200ms"), nil, nil)
	req.CheckDefinition = nil
	req.Monitor = sh(appPath + ` -check "http://127.0.0.1:$PORT/"`)
	require.NoError(t, h.e.Run(ctx, "mon", req))
	running := h.next("mon", isRunning).Snapshot()
	status, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/", running.NetInfo.Ports[0].HostPort))
	require.Equal(t, http.StatusOK, status)
}

// Stopping ends the whole process group within the grace time, leaving no
// process behind, and completes the container as stopped.
func TestStopLeavesNoProcessBehind(t *testing.T) {
	h := newHarness(t, nil)
	h.allocate("stubborn", true)
	// The shell ignores SIGTERM (so SIGKILL is needed) and forks a grandchild.
	req := lrpRequest(sh(`trap "" TERM; sleep 1000 & echo $! > child.pid; echo $$ > sh.pid; wait`), nil, nil)
	req.CheckDefinition = nil
	require.NoError(t, h.e.Run(ctx, "stubborn", req))
	h.next("stubborn", isRunning)
	root := h.rootfs("stubborn")
	child, err := strconv.Atoi(waitForFile(t, filepath.Join(root, "child.pid")))
	require.NoError(t, err)
	shell, err := strconv.Atoi(waitForFile(t, filepath.Join(root, "sh.pid")))
	require.NoError(t, err)
	require.False(t, pidGone(child))

	start := time.Now()
	require.NoError(t, h.e.Stop("stubborn"))
	c := h.completed("stubborn")
	// Grace time 1 s + exit timeout 1 s, with generous slack for a loaded machine.
	require.Less(t, time.Since(start), 10*time.Second)
	require.True(t, c.RunResult.Stopped)
	require.False(t, c.RunResult.Failed)
	require.Eventually(t, func() bool { return pidGone(child) && pidGone(shell) }, 5*time.Second, 10*time.Millisecond)
	require.Contains(t, h.logText("stubborn"), "Cell cell-1 stopping instance stubborn")

	// A well-behaved app exits on SIGTERM.
	h.allocate("polite", true)
	require.NoError(t, h.e.Run(ctx, "polite", lrpRequest(runA(appPath), []*modelsv1.Check{tcpCheck(8080)}, nil)))
	h.next("polite", isRunning)
	require.NoError(t, h.e.Delete(ctx, "polite"))
	_, err = h.backend.Lookup(ctx, "polite")
	require.Error(t, err, "the backend container is destroyed")
}

func TestSetupRunsFirst(t *testing.T) {
	h := newHarness(t, nil)
	c := h.runTask("setup", executor.RunRequest{
		Setup:  sh("echo prepared > marker"),
		Action: sh("cat marker"),
	})
	require.False(t, c.RunResult.Failed, c.RunResult.FailureReason)
	require.Contains(t, h.logText("setup"), "prepared")

	c = h.runTask("setup-fails", executor.RunRequest{Setup: sh("exit 9"), Action: sh("echo never")})
	require.True(t, c.RunResult.Failed)
	require.Equal(t, "Exited with status 9", c.RunResult.FailureReason)
	require.NotContains(t, h.logText("setup-fails"), "never")
}

func TestLogSubscriptionAndRateLimit(t *testing.T) {
	h := newHarness(t, func(o *executor.Options) { o.LogRingSize = 50 })
	h.allocate("chatty", false)
	backlog, lines, cancel, err := h.e.SubscribeLogs("chatty", 1000)
	require.NoError(t, err)
	defer cancel()
	require.Empty(t, backlog)
	require.NoError(t, h.e.Run(ctx, "chatty", executor.RunRequest{
		Action:                     sh(`for i in $(seq 1 200); do echo "line $i"; done`),
		LogRateLimitBytesPerSecond: 100,
	}))
	c := h.completed("chatty")
	require.False(t, c.RunResult.Failed)
	var got []executor.LogLine
	timeout := time.After(10 * time.Second)
	for len(got) == 0 || got[len(got)-1].Source != "CELL" || !containsNotice(got) {
		select {
		case l := <-lines:
			got = append(got, l)
		case <-timeout:
			t.Fatalf("no rate-limit notice in %v", got)
		}
	}
	retained, err := h.e.Logs("chatty")
	require.NoError(t, err)
	require.LessOrEqual(t, len(retained), 50)
	require.Less(t, countSource(retained, ""), 200, "lines over the limit are dropped")
}

func containsNotice(lines []executor.LogLine) bool {
	for _, l := range lines {
		if l.Message == "app instance exceeded log rate limit (100 bytes/sec)" {
			return true
		}
	}
	return false
}

func countSource(lines []executor.LogLine, source string) int {
	n := 0
	for _, l := range lines {
		if l.Source == source {
			n++
		}
	}
	return n
}
