package executor_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/backend/process"
	"github.com/gavelhq/gavel/rep/executor"
)

// appPath is the test application built by TestMain (testdata/app).
var appPath string

func TestMain(m *testing.M) {
	if process.KeeperRequested() {
		os.Exit(process.RunKeeper())
	}
	dir, err := os.MkdirTemp("", "executor-test-app")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	appPath = filepath.Join(dir, "app")
	if out, err := exec.Command("go", "build", "-o", appPath, "./testdata/app").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build test app: %v\n%s", err, out))
	}
	m.Run()
}

var ctx = context.Background()

type harness struct {
	t       *testing.T
	e       *executor.Executor
	backend *process.Backend
	sub     *executor.Subscription
}

func newHarness(t *testing.T, tweak func(*executor.Options)) *harness {
	t.Helper()
	b, err := process.New(process.Options{
		Root: t.TempDir(), PortRangeStart: 44000, PortRangeEnd: 44999,
		GraceTime: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	opts := executor.Options{
		Backend:               b,
		CellID:                "cell-1",
		TotalResources:        executor.Resources{MemoryMB: 4096, DiskMB: 8192, Containers: 10},
		GraceTime:             time.Second,
		StartupCheckInterval:  50 * time.Millisecond,
		LivenessCheckInterval: 200 * time.Millisecond,
		DownloadCacheDir:      t.TempDir(),
	}
	if tweak != nil {
		tweak(&opts)
	}
	e, err := executor.New(ctx, opts)
	require.NoError(t, err)
	h := &harness{t: t, e: e, backend: b, sub: e.Subscribe()}
	t.Cleanup(func() {
		for _, c := range e.List() {
			_ = e.Delete(ctx, c.Guid)
		}
		h.sub.Close()
		e.Close()
	})
	return h
}

// next returns the next event of guid matching match, failing after 30 s.
func (h *harness) next(guid string, match func(executor.Event) bool) executor.Event {
	h.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-h.sub.Events():
			if ev.Snapshot().Guid == guid && match(ev) {
				return ev
			}
		case <-timeout:
			h.t.Fatalf("no matching event for %s", guid)
			return nil
		}
	}
}

func isRunning(ev executor.Event) bool   { _, ok := ev.(executor.ContainerRunning); return ok }
func isCompleted(ev executor.Event) bool { _, ok := ev.(executor.ContainerCompleted); return ok }

func (h *harness) completed(guid string) executor.Container {
	h.t.Helper()
	return h.next(guid, isCompleted).Snapshot()
}

func (h *harness) allocate(guid string, lrp bool) {
	h.t.Helper()
	failures := h.e.Allocate([]executor.AllocationRequest{{Guid: guid, LRP: lrp, Resource: executor.Resource{MemoryMB: 128, DiskMB: 256}}})
	require.Empty(h.t, failures)
}

// runTask runs a task-like container and returns it completed.
func (h *harness) runTask(guid string, req executor.RunRequest) executor.Container {
	h.t.Helper()
	h.allocate(guid, false)
	require.NoError(h.t, h.e.Run(ctx, guid, req))
	return h.completed(guid)
}

// rootfs is the container directory paths inside the container map to.
func (h *harness) rootfs(guid string) string {
	h.t.Helper()
	c, err := h.backend.Lookup(ctx, guid)
	require.NoError(h.t, err)
	info, err := c.Info(ctx)
	require.NoError(h.t, err)
	return filepath.Join(info.Path, "rootfs")
}

func (h *harness) logText(guid string) string {
	lines, err := h.e.Logs(guid)
	require.NoError(h.t, err)
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "[%s %s] %s\n", l.Source, l.Stream, l.Message)
	}
	return b.String()
}

func pidGone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0] == "Z"
}

func waitForFile(t *testing.T, path string) string {
	t.Helper()
	var data []byte
	require.Eventually(t, func() bool {
		var err error
		data, err = os.ReadFile(path)
		return err == nil && strings.HasSuffix(string(data), "\n")
	}, 10*time.Second, 10*time.Millisecond, "file %s never written", path)
	return strings.TrimSpace(string(data))
}

// Action builders.

func runA(path string, args ...string) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: path, Args: args}}}
}

func sh(script string) *modelsv1.Action { return runA("sh", "-c", script) }

func serial(as ...*modelsv1.Action) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Serial{Serial: &modelsv1.SerialAction{Actions: as}}}
}

func parallel(as ...*modelsv1.Action) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Parallel{Parallel: &modelsv1.ParallelAction{Actions: as}}}
}

func codependent(as ...*modelsv1.Action) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Codependent{Codependent: &modelsv1.CodependentAction{Actions: as}}}
}

func try(a *modelsv1.Action) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Try{Try: &modelsv1.TryAction{Action: a}}}
}

func timeout(a *modelsv1.Action, d time.Duration) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Timeout{Timeout: &modelsv1.TimeoutAction{Action: a, TimeoutMs: d.Milliseconds()}}}
}

func emit(a *modelsv1.Action, start, success, failure string) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_EmitProgress{EmitProgress: &modelsv1.EmitProgressAction{
		Action: a, StartMessage: start, SuccessMessage: success, FailureMessagePrefix: failure}}}
}

func download(from, to, cacheKey, algo, sum string) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Download{Download: &modelsv1.DownloadAction{
		Artifact: "app", From: from, To: to, CacheKey: cacheKey, ChecksumAlgorithm: algo, ChecksumValue: sum}}}
}

func tcpCheck(port uint32) *modelsv1.Check {
	return &modelsv1.Check{Check: &modelsv1.Check_TcpCheck{TcpCheck: &modelsv1.TCPCheck{Port: port}}}
}

func httpCheck(port uint32, path string) *modelsv1.Check {
	return &modelsv1.Check{Check: &modelsv1.Check_HttpCheck{HttpCheck: &modelsv1.HTTPCheck{Port: port, Path: path}}}
}
