package executor_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/backend/process"
	"github.com/gavelhq/gavel/rep/executor"
)

// completions collects the ContainerCompleted events of a subscription.
type completions struct {
	t    *testing.T
	sub  *executor.Subscription
	seen map[string]executor.Container
}

// wait returns the completed container guid, failing after 15 s.
func (c *completions) wait(guid string) executor.Container {
	c.t.Helper()
	if c.seen == nil {
		c.seen = map[string]executor.Container{}
	}
	deadline := time.After(15 * time.Second)
	for {
		if done, ok := c.seen[guid]; ok {
			return done
		}
		select {
		case ev := <-c.sub.Events():
			if done, ok := ev.(executor.ContainerCompleted); ok {
				c.seen[done.Container.Guid] = done.Container
			}
		case <-deadline:
			c.t.Fatalf("%s never completed", guid)
		}
	}
}

// keeperPid reads the pid of the keeper of a container's only process from
// the process backend's state.json.
func keeperPid(t *testing.T, root, guid string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, guid, "state.json"))
	require.NoError(t, err)
	var st struct {
		Processes []struct {
			KeeperPid int `json:"keeper_pid"`
		} `json:"processes"`
	}
	require.NoError(t, json.Unmarshal(data, &st))
	require.Len(t, st.Processes, 1)
	return st.Processes[0].KeeperPid
}

// A detached executor leaves the app running; a new executor over a new
// backend on the same root adopts it (running, same ports and tags, its
// resources taken), supervises it again (a kill completes it as crashed with
// its real status) and can stop it. A container whose process died while
// nobody watched completes with the status its keeper recorded; one whose
// keeper died too is adopted as completed, lost.
func TestDetachAndRecover(t *testing.T) {
	root := t.TempDir()
	newBackend := func() *process.Backend {
		b, err := process.New(process.Options{
			Root: root, PortRangeStart: 45000, PortRangeEnd: 45999,
			GraceTime: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		})
		require.NoError(t, err)
		return b
	}
	total := executor.Resources{MemoryMB: 4096, DiskMB: 8192, Containers: 10}
	opts := func(b *process.Backend) executor.Options {
		return executor.Options{Backend: b, CellID: "cell-1", TotalResources: total, GraceTime: time.Second,
			StartupCheckInterval: 50 * time.Millisecond, LivenessCheckInterval: 200 * time.Millisecond}
	}
	b1 := newBackend()
	first, err := executor.New(ctx, opts(b1))
	require.NoError(t, err)
	sub := first.Subscribe()
	req := lrpRequest(runA(appPath), []*modelsv1.Check{tcpCheck(8080)}, nil)
	guids := []string{"keep", "die", "lost"}
	for _, guid := range guids {
		require.Empty(t, first.Allocate([]executor.AllocationRequest{{Guid: guid, LRP: true,
			Resource: executor.Resource{MemoryMB: 128, DiskMB: 256}, Tags: executor.Tags{"lifecycle": "lrp", "process-guid": "pg-" + guid}}}))
		require.NoError(t, first.Run(ctx, guid, req))
	}
	running := map[string]executor.Container{}
	for len(running) < len(guids) {
		select {
		case ev := <-sub.Events():
			if r, ok := ev.(executor.ContainerRunning); ok {
				running[r.Container.Guid] = r.Container
			}
			_, completed := ev.(executor.ContainerCompleted)
			require.False(t, completed, "nothing completes")
		case <-time.After(30 * time.Second):
			t.Fatal("containers never ran")
		}
	}
	pid := func(c executor.Container) int {
		_, body := get(t, "http://127.0.0.1:"+strconv.Itoa(int(c.NetInfo.Ports[0].HostPort))+"/pid")
		p, err := strconv.Atoi(body)
		require.NoError(t, err)
		return p
	}
	keepPid, diePid, lostPid := pid(running["keep"]), pid(running["die"]), pid(running["lost"])

	first.Detach()
	b1.Detach() // as when the cell's OS process exits
	select {
	case ev := <-sub.Events():
		t.Fatalf("detach emitted %T", ev)
	case <-time.After(300 * time.Millisecond):
	}
	sub.Close()
	require.False(t, pidGone(keepPid), "detach leaves the app running")
	require.NoError(t, syscall.Kill(diePid, syscall.SIGKILL))
	lostKeeper := keeperPid(t, root, "lost")
	require.NoError(t, syscall.Kill(lostKeeper, syscall.SIGKILL))
	require.NoError(t, syscall.Kill(lostPid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return pidGone(diePid) && pidGone(lostPid) && pidGone(lostKeeper) }, 5*time.Second, 10*time.Millisecond)

	second, err := executor.New(ctx, opts(newBackend()))
	require.NoError(t, err)
	defer second.Close()
	sub2 := second.Subscribe()
	defer sub2.Close()
	done := &completions{t: t, sub: sub2}
	adopted, err := second.Recover(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, guids, adopted)
	require.Equal(t, executor.Resources{MemoryMB: 4096 - 384, DiskMB: 8192 - 768, Containers: 7}, second.RemainingResources())

	keep, err := second.Get("keep")
	require.NoError(t, err)
	require.Equal(t, executor.StateRunning, keep.State)
	require.True(t, keep.Routable)
	require.True(t, keep.LRP)
	require.Equal(t, "pg-keep", keep.Tags["process-guid"])
	require.Equal(t, running["keep"].NetInfo, keep.NetInfo)
	status, _ := get(t, "http://127.0.0.1:"+strconv.Itoa(int(keep.NetInfo.Ports[0].HostPort))+"/")
	require.Equal(t, http.StatusOK, status)

	lost, err := second.Get("lost")
	require.NoError(t, err)
	require.Equal(t, executor.StateCompleted, lost.State)
	require.True(t, lost.RunResult.Failed)
	require.Equal(t, executor.ReasonLostWhileDetached, lost.RunResult.FailureReason)
	require.NoError(t, second.Delete(ctx, "lost"))

	die := done.wait("die")
	require.True(t, die.RunResult.Failed)
	require.Equal(t, "APP/PROC/WEB: Exited with status 137", die.RunResult.FailureReason)
	require.Equal(t, 137, die.RunResult.ExitStatus)
	require.NoError(t, second.Delete(ctx, "die"))

	// The adopted app is supervised: killing it completes the container.
	require.NoError(t, syscall.Kill(keepPid, syscall.SIGKILL))
	crashed := done.wait("keep")
	require.True(t, crashed.RunResult.Failed)
	require.True(t, crashed.RunResult.FailureReason == "APP/PROC/WEB: Exited with status 137" ||
		strings.Contains(crashed.RunResult.FailureReason, "Instance became unhealthy"), crashed.RunResult.FailureReason)
	require.NoError(t, second.Delete(ctx, "keep"))
	require.Equal(t, total, second.RemainingResources())
}

// A task adopted after a restart completes by the status its keeper
// recorded: exiting 0 after the adoption, it succeeds with its result file;
// exiting 5 while no executor ran, it fails with that status.
func TestRecoveredTaskCompletesWithItsStatus(t *testing.T) {
	root := t.TempDir()
	newBackend := func() *process.Backend {
		b, err := process.New(process.Options{Root: root, PortRangeStart: 46000, PortRangeEnd: 46999, PollInterval: 20 * time.Millisecond})
		require.NoError(t, err)
		return b
	}
	opts := func(b *process.Backend) executor.Options {
		return executor.Options{Backend: b, TotalResources: executor.Resources{MemoryMB: 1024, DiskMB: 1024, Containers: 4}}
	}
	b1 := newBackend()
	first, err := executor.New(ctx, opts(b1))
	require.NoError(t, err)
	sub := first.Subscribe()
	const waitForRelease = `echo $$ > task.pid; while [ ! -e release ]; do sleep 0.02; done; `
	tasks := map[string]string{
		"ok":    waitForRelease + `printf forty-two > result.txt; exit 0`,
		"fails": waitForRelease + `printf partial > result.txt; exit 5`,
	}
	for guid, script := range tasks {
		require.Empty(t, first.Allocate([]executor.AllocationRequest{{Guid: guid, Resource: executor.Resource{MemoryMB: 10, DiskMB: 10}}}))
		require.NoError(t, first.Run(ctx, guid, executor.RunRequest{Action: sh(script), ResultFile: "/result.txt"}))
	}
	rootfs := func(guid string) string { return filepath.Join(root, guid, "rootfs") }
	pids := map[string]int{}
	for guid := range tasks {
		pid, err := strconv.Atoi(waitForFile(t, filepath.Join(rootfs(guid), "task.pid")))
		require.NoError(t, err)
		pids[guid] = pid
	}
	first.Detach()
	b1.Detach()
	sub.Close()

	// "fails" exits while no executor runs.
	require.NoError(t, os.WriteFile(filepath.Join(rootfs("fails"), "release"), nil, 0o644))
	require.Eventually(t, func() bool { return pidGone(pids["fails"]) }, 10*time.Second, 10*time.Millisecond)

	second, err := executor.New(ctx, opts(newBackend()))
	require.NoError(t, err)
	defer second.Close()
	sub2 := second.Subscribe()
	defer sub2.Close()
	done := &completions{t: t, sub: sub2}
	adopted, err := second.Recover(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"ok", "fails"}, adopted)

	// "ok" exits after the adoption.
	require.False(t, pidGone(pids["ok"]))
	require.NoError(t, os.WriteFile(filepath.Join(rootfs("ok"), "release"), nil, 0o644))

	ok := done.wait("ok")
	require.False(t, ok.RunResult.Failed, ok.RunResult.FailureReason)
	require.Equal(t, "forty-two", ok.RunResult.Result)
	fails := done.wait("fails")
	require.True(t, fails.RunResult.Failed)
	require.Equal(t, "APP: Exited with status 5", fails.RunResult.FailureReason)
	require.Equal(t, 5, fails.RunResult.ExitStatus)
	require.Empty(t, fails.RunResult.Result)
	for guid := range tasks {
		require.NoError(t, second.Delete(ctx, guid))
	}
}

// Stopping an adopted container stops its process gracefully.
func TestStopAdoptedContainer(t *testing.T) {
	root := t.TempDir()
	b1, err := process.New(process.Options{Root: root, PortRangeStart: 46000, PortRangeEnd: 46999, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	first, err := executor.New(ctx, executor.Options{Backend: b1, TotalResources: executor.Resources{MemoryMB: 1024, DiskMB: 1024, Containers: 4},
		StartupCheckInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	sub := first.Subscribe()
	require.Empty(t, first.Allocate([]executor.AllocationRequest{{Guid: "c", LRP: true, Resource: executor.Resource{MemoryMB: 10, DiskMB: 10}}}))
	require.NoError(t, first.Run(ctx, "c", lrpRequest(runA(appPath), []*modelsv1.Check{tcpCheck(8080)}, nil)))
	var c executor.Container
	for c.State != executor.StateRunning {
		c = (<-sub.Events()).Snapshot()
	}
	sub.Close()
	_, body := get(t, "http://127.0.0.1:"+strconv.Itoa(int(c.NetInfo.Ports[0].HostPort))+"/pid")
	pid, err := strconv.Atoi(body)
	require.NoError(t, err)
	first.Detach()
	b1.Detach()

	b2, err := process.New(process.Options{Root: root, PortRangeStart: 46000, PortRangeEnd: 46999, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	second, err := executor.New(ctx, executor.Options{Backend: b2, TotalResources: executor.Resources{MemoryMB: 1024, DiskMB: 1024, Containers: 4},
		GraceTime: 2 * time.Second})
	require.NoError(t, err)
	defer second.Close()
	_, err = second.Recover(ctx)
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, second.Delete(ctx, "c"))
	require.Less(t, time.Since(start), 2*time.Second+time.Second, "the app exits on SIGTERM, within the grace time")
	require.True(t, pidGone(pid), "no process is left behind")
	_, err = second.Get("c")
	require.ErrorIs(t, err, executor.ErrContainerNotFound)
}
