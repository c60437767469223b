package process_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/rep/backend"
)

// runUnderKilledBackend runs command (sh -c) as process id of a new
// container handle under a backend in its own OS process, then SIGKILLs that
// OS process, as when a rep dies: the process and its keeper are left running.
func runUnderKilledBackend(t *testing.T, root, handle, id, command string) {
	t.Helper()
	runUnderKilled(t, firstBackend{Root: root, Handle: handle, ID: id, Command: command})
}

func runUnderKilled(t *testing.T, fb firstBackend) {
	t.Helper()
	spec, err := json.Marshal(fb)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), firstBackendEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err, "the first backend did not start the process")
	require.Equal(t, "started\n", line)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
}

// waitExit waits for p's exit status, failing after 10 s.
func waitExit(t *testing.T, p backend.Process) int {
	t.Helper()
	type exit struct {
		status int
		err    error
	}
	ch := make(chan exit, 1)
	go func() {
		s, err := p.Wait()
		ch <- exit{s, err}
	}()
	select {
	case x := <-ch:
		require.NoError(t, x.err)
		return x.status
	case <-time.After(10 * time.Second):
		t.Fatal("the process never exited")
		return 0
	}
}

// persistedKeeper reads the pid of a process's keeper from state.json.
func persistedKeeper(t *testing.T, containerDir, id string) int {
	t.Helper()
	_, keeper := persistedPids(t, containerDir, id)
	return keeper
}

// persistedPids reads the pids of a process and of its keeper from state.json.
func persistedPids(t *testing.T, containerDir, id string) (pid, keeper int) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(containerDir, "state.json"))
	require.NoError(t, err)
	var st struct {
		Processes []struct {
			ID        string `json:"id"`
			Pid       int    `json:"pid"`
			KeeperPid int    `json:"keeper_pid"`
		} `json:"processes"`
	}
	require.NoError(t, json.Unmarshal(data, &st))
	for _, p := range st.Processes {
		if p.ID == id {
			return p.Pid, p.KeeperPid
		}
	}
	t.Fatalf("process %s not in state.json", id)
	return 0, 0
}

// pgrp reads the process group of pid from /proc.
func pgrp(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	require.NoError(t, err)
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	g, err := strconv.Atoi(fields[2]) // field 5
	require.NoError(t, err)
	return g
}

// The exit status of a process whose backend's OS process died is reported
// by a new backend over the same root, whether the process exits after the
// new backend started or while no backend ran, including a death by signal.
func TestExitStatusSurvivesBackendRestart(t *testing.T) {
	const waitForRelease = `echo $$ > app.pid; while [ ! -e release ]; do sleep 0.02; done; `
	tests := []struct {
		name    string
		command string
		// exitFirst releases the process before the new backend starts.
		exitFirst bool
		// kill SIGKILLs the process instead of releasing it.
		kill bool
		want int
	}{
		{name: "exits after the new backend started", command: waitForRelease + "exit 3", want: 3},
		{name: "exits while no backend runs", command: waitForRelease + "exit 3", exitFirst: true, want: 3},
		{name: "exits 0", command: waitForRelease + "exit 0", want: 0},
		{name: "killed by SIGKILL", command: "echo $$ > app.pid; exec sleep 1000", kill: true, want: 137},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			runUnderKilledBackend(t, root, "c1", "app-1", tt.command)
			rootfs := filepath.Join(root, "c1", "rootfs")
			pid, err := strconv.Atoi(waitForFile(t, filepath.Join(rootfs, "app.pid")))
			require.NoError(t, err)
			require.False(t, pidGone(pid), "the process survives its backend")
			if tt.exitFirst {
				require.NoError(t, os.WriteFile(filepath.Join(rootfs, "release"), nil, 0o644))
				require.Eventually(t, func() bool { return pidGone(pid) }, 10*time.Second, 10*time.Millisecond)
				// The keeper records the status once the process is reaped.
				require.Eventually(t, func() bool {
					_, err := os.Stat(filepath.Join(root, "c1", "processes", "app-1.exit"))
					return err == nil
				}, 10*time.Second, 10*time.Millisecond, "the keeper never recorded the status")
			}

			b := newBackend(t, root)
			t.Cleanup(func() { _ = b.Destroy(context.Background(), "c1") })
			c, err := b.Lookup(context.Background(), "c1")
			require.NoError(t, err)
			info, err := c.Info(context.Background())
			require.NoError(t, err)
			require.Equal(t, []string{"app-1"}, info.ProcessIDs, "a process with an undelivered status is listed")
			p, err := c.Attach(context.Background(), "app-1", backend.ProcessIO{})
			require.NoError(t, err)
			switch {
			case tt.kill:
				require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
			case !tt.exitFirst:
				require.False(t, pidGone(pid))
				require.NoError(t, os.WriteFile(filepath.Join(rootfs, "release"), nil, 0o644))
			}
			require.Equal(t, tt.want, waitExit(t, p))
			info, err = c.Info(context.Background())
			require.NoError(t, err)
			require.Empty(t, info.ProcessIDs, "a delivered status is no longer listed")
			require.Eventually(t, func() bool {
				_, err := c.Attach(context.Background(), "app-1", backend.ProcessIO{})
				return errors.Is(err, backend.ErrProcessNotFound)
			}, 5*time.Second, 10*time.Millisecond, "a delivered status is forgotten")
		})
	}
}

// Signal and Stop through a new backend reach the whole group of an adopted
// process (a shell ignoring SIGTERM and its child, which does not) and the
// SIGKILL is reported.
func TestStopAdoptedProcessGroup(t *testing.T) {
	root := t.TempDir()
	runUnderKilledBackend(t, root, "c1", "app-1",
		`sleep 1000 & echo $! > child.pid; trap "" TERM; echo $$ > sh.pid; while true; do sleep 0.05; done`)
	rootfs := filepath.Join(root, "c1", "rootfs")
	childPid, err := strconv.Atoi(waitForFile(t, filepath.Join(rootfs, "child.pid")))
	require.NoError(t, err)
	shPid, err := strconv.Atoi(waitForFile(t, filepath.Join(rootfs, "sh.pid")))
	require.NoError(t, err)
	keeperPid := persistedKeeper(t, filepath.Join(root, "c1"), "app-1")
	require.NotEqual(t, pgrp(t, shPid), pgrp(t, keeperPid), "the keeper is outside the process's group")
	require.Equal(t, shPid, pgrp(t, childPid), "the child is in the process's group")

	b := newBackend(t, root)
	c, err := b.Lookup(context.Background(), "c1")
	require.NoError(t, err)
	p, err := c.Attach(context.Background(), "app-1", backend.ProcessIO{})
	require.NoError(t, err)
	require.NoError(t, p.Signal(backend.SignalTerminate))
	require.Eventually(t, func() bool { return pidGone(childPid) }, 5*time.Second, 10*time.Millisecond,
		"SIGTERM reached the child through the group")
	require.False(t, pidGone(shPid), "the shell ignores SIGTERM")

	require.NoError(t, c.Stop(context.Background(), false))
	require.Equal(t, 137, waitExit(t, p), "the SIGKILL after the grace time")
	require.True(t, pidGone(shPid))
	require.NoError(t, b.Destroy(context.Background(), "c1"))
	require.Eventually(t, func() bool { return pidGone(keeperPid) }, 5*time.Second, 10*time.Millisecond, "the keeper exits")
}

// A keeper that is SIGKILLed cannot record the status: once the process is
// gone too, Wait reports ExitStatusUnknown.
func TestKilledKeeperGivesUnknownStatus(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	p, err := c.Run(context.Background(), backend.ProcessSpec{ID: "app-1", Path: "sh", Args: []string{"-c", "echo $$ > app.pid; exec sleep 1000"}}, backend.ProcessIO{})
	require.NoError(t, err)
	pid, err := strconv.Atoi(waitForFile(t, filepath.Join(info.Path, "rootfs", "app.pid")))
	require.NoError(t, err)
	keeperPid := persistedKeeper(t, info.Path, "app-1")
	require.NoError(t, syscall.Kill(keeperPid, syscall.SIGKILL))
	time.Sleep(100 * time.Millisecond)
	require.False(t, pidGone(pid), "the process outlives its keeper")
	require.NoError(t, p.Signal(backend.SignalKill))
	require.Equal(t, backend.ExitStatusUnknown, waitExit(t, p))
}

// SIGTERM, SIGINT and SIGHUP sent to a keeper do not end it: it still
// records the status.
func TestKeeperIgnoresTerminationSignals(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	p, err := c.Run(context.Background(), backend.ProcessSpec{ID: "app-1", Path: "sh", Args: []string{"-c", "echo $$ > app.pid; exec sleep 1000"}}, backend.ProcessIO{})
	require.NoError(t, err)
	waitForFile(t, filepath.Join(info.Path, "rootfs", "app.pid"))
	keeperPid := persistedKeeper(t, info.Path, "app-1")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		require.NoError(t, syscall.Kill(keeperPid, sig))
	}
	time.Sleep(100 * time.Millisecond)
	require.False(t, pidGone(keeperPid))
	require.NoError(t, p.Signal(backend.SignalTerminate))
	require.Equal(t, 143, waitExit(t, p), "the process, not the keeper, got the default SIGTERM action")
}

// An exit file left by an earlier process with the same id is not taken for
// the status of a new one.
func TestStaleExitFileIsIgnored(t *testing.T) {
	b := newBackend(t, t.TempDir())
	c := create(t, b, "c1")
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	for _, want := range []int{4, 5} {
		p, err := c.Run(context.Background(), backend.ProcessSpec{ID: "app-1", Path: "sh", Args: []string{"-c", "sleep 0.1; exit " + strconv.Itoa(want)}}, backend.ProcessIO{})
		require.NoError(t, err)
		require.Equal(t, want, waitExit(t, p))
		require.Eventually(t, func() bool {
			_, err := c.Attach(context.Background(), "app-1", backend.ProcessIO{})
			return errors.Is(err, backend.ErrProcessNotFound)
		}, 5*time.Second, 10*time.Millisecond, "a delivered status is forgotten")
		exitFile := filepath.Join(info.Path, "processes", "app-1.exit")
		_, err = os.Stat(exitFile)
		require.ErrorIs(t, err, os.ErrNotExist, "with its exit file")
		// A stale record of another pid, as a crash between the keeper's write
		// and the backend's cleanup would leave.
		stale, err := json.Marshal(map[string]int{"pid": 1, "start_time": 1, "status": 9})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(exitFile, stale, 0o644))
	}
}

// With KillOnParentExit, the death of the backend's OS process kills the
// keepers, and each keeper's death its process.
func TestKillOnParentExit(t *testing.T) {
	root := t.TempDir()
	runUnderKilled(t, firstBackend{Root: root, Handle: "c1", ID: "app-1", Command: "exec sleep 1000", KillOnParentExit: true})
	pid, keeperPid := persistedPids(t, filepath.Join(root, "c1"), "app-1")
	require.NotZero(t, pid)
	require.Eventually(t, func() bool { return pidGone(keeperPid) && pidGone(pid) }, 5*time.Second, 10*time.Millisecond)
}
