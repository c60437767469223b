package executor_test

import (
	"net/http"
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

// A detached executor leaves the app running; a new executor over a new
// backend on the same root adopts it (running, same ports and tags, its
// resources taken), supervises it again (a kill completes it as failed) and
// can stop it. A container whose process died while nobody watched is
// adopted as completed.
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
	first, err := executor.New(ctx, opts(newBackend()))
	require.NoError(t, err)
	sub := first.Subscribe()
	req := lrpRequest(runA(appPath), []*modelsv1.Check{tcpCheck(8080)}, nil)
	for _, guid := range []string{"keep", "die"} {
		require.Empty(t, first.Allocate([]executor.AllocationRequest{{Guid: guid, LRP: true,
			Resource: executor.Resource{MemoryMB: 128, DiskMB: 256}, Tags: executor.Tags{"lifecycle": "lrp", "process-guid": "pg-" + guid}}}))
		require.NoError(t, first.Run(ctx, guid, req))
	}
	running := map[string]executor.Container{}
	for len(running) < 2 {
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
	keepPid, diePid := pid(running["keep"]), pid(running["die"])

	first.Detach()
	select {
	case ev := <-sub.Events():
		t.Fatalf("detach emitted %T", ev)
	case <-time.After(300 * time.Millisecond):
	}
	sub.Close()
	require.False(t, pidGone(keepPid), "detach leaves the app running")
	require.NoError(t, syscall.Kill(diePid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return pidGone(diePid) }, 5*time.Second, 10*time.Millisecond)

	second, err := executor.New(ctx, opts(newBackend()))
	require.NoError(t, err)
	defer second.Close()
	sub2 := second.Subscribe()
	defer sub2.Close()
	adopted, err := second.Recover(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"keep", "die"}, adopted)
	require.Equal(t, executor.Resources{MemoryMB: 4096 - 256, DiskMB: 8192 - 512, Containers: 8}, second.RemainingResources())

	keep, err := second.Get("keep")
	require.NoError(t, err)
	require.Equal(t, executor.StateRunning, keep.State)
	require.True(t, keep.Routable)
	require.True(t, keep.LRP)
	require.Equal(t, "pg-keep", keep.Tags["process-guid"])
	require.Equal(t, running["keep"].NetInfo, keep.NetInfo)
	status, _ := get(t, "http://127.0.0.1:"+strconv.Itoa(int(keep.NetInfo.Ports[0].HostPort))+"/")
	require.Equal(t, http.StatusOK, status)

	die, err := second.Get("die")
	require.NoError(t, err)
	require.Equal(t, executor.StateCompleted, die.State)
	require.True(t, die.RunResult.Failed)
	require.Equal(t, executor.ReasonLostWhileDetached, die.RunResult.FailureReason)
	require.NoError(t, second.Delete(ctx, "die"))

	// The adopted app is supervised: killing it completes the container.
	require.NoError(t, syscall.Kill(keepPid, syscall.SIGKILL))
	var done executor.Container
	require.Eventually(t, func() bool {
		select {
		case ev := <-sub2.Events():
			if c, ok := ev.(executor.ContainerCompleted); ok && c.Container.Guid == "keep" {
				done = c.Container
				return true
			}
		default:
		}
		return false
	}, 10*time.Second, 5*time.Millisecond)
	require.True(t, done.RunResult.Failed)
	require.True(t, strings.Contains(done.RunResult.FailureReason, "unknown status") ||
		strings.Contains(done.RunResult.FailureReason, "Instance became unhealthy"), done.RunResult.FailureReason)
	require.NoError(t, second.Delete(ctx, "keep"))
	require.Equal(t, total, second.RemainingResources())
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
