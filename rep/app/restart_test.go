package app_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/app"
)

// daemon is the rep running as its own OS process (the test binary re-run).
type daemon struct {
	t   *testing.T
	cmd *exec.Cmd
}

func startDaemon(t *testing.T, configPath string) *daemon {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), daemonEnv+"="+configPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	d := &daemon{t: t, cmd: cmd}
	t.Cleanup(func() { d.signal(syscall.SIGKILL) })
	return d
}

func (d *daemon) signal(sig syscall.Signal) {
	if d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(sig)
	_ = d.cmd.Wait()
}

// repAddress waits for the cell's presence and returns its rep address.
func repAddress(t *testing.T, bbs *client.Client, cellID, not string) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		resp, err := bbs.ListCells(ctx, &bbsv1.ListCellsRequest{})
		require.NoError(t, err)
		for _, c := range resp.GetCells() {
			if c.GetCellId() == cellID && c.GetRepAddress() != not {
				addr = c.GetRepAddress()
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "cell %s never registered", cellID)
	return addr
}

// A restart of the rep (SIGTERM, then SIGKILL) keeps the app process
// running and its instance RUNNING in the BBS under the same instance guid;
// the new rep adopts the container: it reports it in State, keeps its
// resources, and reports its crash when the app is killed afterwards.
func TestRestartKeepsTheAppRunning(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBS(t, prefix)
	cfg := repConfig(t, prefix, b.Addr(), "cell-restart")
	// The restart must be done within the presence TTL (the graceful stop
	// leaves the presence for the next run); 2 s is too tight on a loaded
	// 2-core machine, and nothing here waits for an expiry.
	cfg.PresenceTTL = config.Duration(8 * time.Second)
	configPath := writeJSON(t, cfg)

	first := startDaemon(t, configPath)
	addr := repAddress(t, bbs, "cell-restart", "")
	d := desiredLRP("lrp-survivor", runA(appPath), healthChecks())
	_, err := bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
	require.NoError(t, err)
	performLRP(t, dialRep(t, addr), "cell-restart", d, 0)
	running := waitActual(t, bbs, "lrp-survivor", 0, "running", isState(modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING))
	url := fmt.Sprintf("http://127.0.0.1:%d", running.GetNetInfo().GetPorts()[0].GetHostPort())
	_, body, err := get(url + "/pid")
	require.NoError(t, err)
	pid, err := strconv.Atoi(body)
	require.NoError(t, err)

	restarts := []struct {
		name string
		sig  syscall.Signal
	}{{"graceful", syscall.SIGTERM}, {"killed", syscall.SIGKILL}}
	current := first
	for _, rs := range restarts {
		current.signal(rs.sig)
		require.False(t, pidGone(pid), "%s: the app survives the rep", rs.name)
		status, _, err := get(url + "/")
		require.NoError(t, err, rs.name)
		require.Equal(t, http.StatusOK, status)

		current = startDaemon(t, configPath)
		newAddr := repAddress(t, bbs, "cell-restart", addr)
		addr = newAddr
		repc := dialRep(t, addr)
		require.Eventually(t, func() bool {
			st, err := repc.State(ctx, &repv1.StateRequest{})
			return err == nil && len(st.GetLrps()) == 1 && st.GetLrps()[0].GetInstanceGuid() == running.GetInstanceKey().GetInstanceGuid()
		}, 30*time.Second, 20*time.Millisecond, "%s: the new rep reports the adopted instance", rs.name)
		st, err := repc.State(ctx, &repv1.StateRequest{})
		require.NoError(t, err)
		require.Equal(t, int32(cfg.Capacity.MemoryMB)-d.GetMemoryMb(), st.GetAvailableResources().GetMemoryMb())

		// Several bulk syncs later the instance is still RUNNING, unchanged.
		time.Sleep(3 * cfg.BulkSyncInterval.D())
		now := actual(t, bbs, "lrp-survivor", 0)
		require.Equal(t, modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING, now.GetState(), "%s: %v", rs.name, now)
		require.Equal(t, running.GetInstanceKey().GetInstanceGuid(), now.GetInstanceKey().GetInstanceGuid(), rs.name)
		require.Equal(t, running.GetNetInfo().GetPorts(), now.GetNetInfo().GetPorts())
		require.Zero(t, now.GetCrashCount())
		require.False(t, pidGone(pid))
	}

	// The adopted app is still supervised: its death is reported as a crash.
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	crashed := waitActual(t, bbs, "lrp-survivor", 0, "crashed", func(a *modelsv1.ActualLRP) bool { return a.GetCrashCount() == 1 })
	require.Contains(t, crashed.GetCrashReason(), "Exited with status 137", "the status the keeper recorded")
	current.signal(syscall.SIGTERM)
	require.Equal(t, 0, current.cmd.ProcessState.ExitCode(), "a signalled rep exits 0")
}

// A task running when the rep is SIGKILLed completes by its real exit
// status under the next rep, as its keeper recorded it: one that exits 0
// after the new rep adopted it succeeds with its result file; one that exits
// 5 while no rep runs fails with "Exited with status 5".
func TestRestartKeepsTaskExitStatus(t *testing.T) {
	const cellID = "cell-task-restart"
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBS(t, prefix)
	cfg := repConfig(t, prefix, b.Addr(), cellID)
	configPath := writeJSON(t, cfg)
	getTask := func(guid string) func() *modelsv1.Task {
		return func() *modelsv1.Task {
			resp, err := bbs.GetTask(ctx, &bbsv1.GetTaskRequest{TaskGuid: guid})
			require.NoError(t, err)
			return resp.GetTask()
		}
	}
	const waitForRelease = `echo $$ > task.pid; while [ ! -e release ]; do sleep 0.02; done; `
	tasks := []struct{ guid, script string }{
		{"task-ok", waitForRelease + `printf forty-two > result.txt; exit 0`},
		{"task-fails", waitForRelease + `printf partial > result.txt; exit 5`},
	}

	first := startDaemon(t, configPath)
	addr := repAddress(t, bbs, cellID, "")
	repc := dialRep(t, addr)
	pids := map[string]int{}
	for _, tk := range tasks {
		def := &modelsv1.TaskDefinition{Action: sh(tk.script), ResultFile: "/result.txt",
			RootFs: "preloaded:cflinuxfs4", MemoryMb: 32, DiskMb: 32, LogGuid: tk.guid, LogSource: "TASK"}
		_, err := bbs.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: tk.guid, Domain: "tasks", Definition: def})
		require.NoError(t, err)
		performTask(t, repc, cellID, tk.guid)
		waitTask(t, getTask(tk.guid), "running", func(task *modelsv1.Task) bool {
			return task.GetState() == modelsv1.TaskState_TASK_STATE_RUNNING
		})
		pids[tk.guid] = readPid(t, filepath.Join(cfg.Process.RootDir, tk.guid, "rootfs", "task.pid"))
		// The task is RUNNING (and wrote its pid) as soon as its process
		// starts, a moment before the rep records the process in
		// state.json; the SIGKILL below must come after that record (a rep
		// killed inside that moment loses the process: a known gap).
		require.Eventually(t, func() bool {
			data, err := os.ReadFile(filepath.Join(cfg.Process.RootDir, tk.guid, "state.json"))
			return err == nil && strings.Contains(string(data), `"processes"`) && strings.Contains(string(data), `"pid"`)
		}, 10*time.Second, 10*time.Millisecond, "the rep records %s's process", tk.guid)
	}
	release := func(guid string) {
		require.NoError(t, os.WriteFile(filepath.Join(cfg.Process.RootDir, guid, "rootfs", "release"), nil, 0o644))
	}

	first.signal(syscall.SIGKILL)
	require.False(t, pidGone(pids["task-ok"]), "the task survives the rep")
	release("task-fails")
	require.Eventually(t, func() bool { return pidGone(pids["task-fails"]) }, 10*time.Second, 10*time.Millisecond,
		"task-fails exits while no rep runs")
	require.Equal(t, modelsv1.TaskState_TASK_STATE_RUNNING, getTask("task-fails")().GetState())

	second := startDaemon(t, configPath)
	repc = dialRep(t, repAddress(t, bbs, cellID, addr))
	require.Eventually(t, func() bool {
		st, err := repc.State(ctx, &repv1.StateRequest{})
		if err != nil {
			return false
		}
		for _, task := range st.GetTasks() {
			if task.GetTaskGuid() == "task-ok" {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "the new rep adopts task-ok")
	require.False(t, pidGone(pids["task-ok"]))
	release("task-ok")

	isCompleted := func(task *modelsv1.Task) bool { return task.GetState() == modelsv1.TaskState_TASK_STATE_COMPLETED }
	ok := waitTask(t, getTask("task-ok"), "completed", isCompleted)
	require.False(t, ok.GetFailed(), ok.GetFailureReason())
	require.Equal(t, "forty-two", ok.GetResult())
	failed := waitTask(t, getTask("task-fails"), "completed", isCompleted)
	require.True(t, failed.GetFailed())
	require.Contains(t, failed.GetFailureReason(), "Exited with status 5")
	require.Empty(t, failed.GetResult())
	second.signal(syscall.SIGTERM)
	require.Equal(t, 0, second.cmd.ProcessState.ExitCode(), "a signalled rep exits 0")
}

// A config with errors is refused with every field named.
func TestConfigValidation(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.Backend = "garden"
	cfg.SimCells = 3
	err := cfg.Validate()
	require.Error(t, err)
	for _, field := range []string{"cell_id", "etcd.endpoints", "bbs_addresses", "backend", "sim_cells"} {
		require.Contains(t, err.Error(), field)
	}
	cfg = app.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.CellID, cfg.BBSAddresses, cfg.Backend = "c1", []string{"127.0.0.1:1"}, app.BackendProcess
	cfg.Etcd.Endpoints = []string{"127.0.0.1:2"}
	require.ErrorContains(t, cfg.Validate(), "process.root_dir")
	cfg.Process.RootDir = t.TempDir()
	require.NoError(t, cfg.Validate())
	cfg.Process.KeeperPath = "bin/gavel-keeper"
	require.ErrorContains(t, cfg.Validate(), `process.keeper_path: must be an absolute path (got "bin/gavel-keeper")`)
}
