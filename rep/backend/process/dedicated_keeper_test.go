package process_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

var (
	keeperOnce  sync.Once
	keeperBin   string
	keeperError error
)

// gavelKeeper builds cmd/gavel-keeper once per test binary.
func gavelKeeper(t *testing.T) string {
	t.Helper()
	keeperOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gavel-keeper-test")
		if err != nil {
			keeperError = err
			return
		}
		keeperBin = filepath.Join(dir, "gavel-keeper")
		out, err := exec.Command("go", "build", "-o", keeperBin, "github.com/gavelhq/gavel/cmd/gavel-keeper").CombinedOutput()
		if err != nil {
			keeperError = err
			keeperBin = string(out)
		}
	})
	require.NoError(t, keeperError, keeperBin)
	return keeperBin
}

// Under the dedicated gavel-keeper a process's exit status outlives its
// backend exactly as under the re-executed backend binary, and the keeper
// of the process is that binary.
func TestDedicatedKeeperKeepsExitStatus(t *testing.T) {
	keeper := gavelKeeper(t)
	root := t.TempDir()
	runUnderKilled(t, firstBackend{Root: root, Handle: "c1", ID: "app-1", KeeperPath: keeper,
		Command: `echo $$ > app.pid; while [ ! -e release ]; do sleep 0.02; done; exit 5`})
	rootfs := filepath.Join(root, "c1", "rootfs")
	pid, err := strconv.Atoi(waitForFile(t, filepath.Join(rootfs, "app.pid")))
	require.NoError(t, err)
	exe, err := os.Readlink("/proc/" + strconv.Itoa(persistedKeeper(t, filepath.Join(root, "c1"), "app-1")) + "/exe")
	require.NoError(t, err)
	require.Equal(t, keeper, exe, "the process runs under gavel-keeper")

	b, err := process.New(process.Options{Root: root, KeeperPath: keeper, PortRangeStart: 42000, PortRangeEnd: 42999, PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Destroy(context.Background(), "c1") })
	c, err := b.Lookup(context.Background(), "c1")
	require.NoError(t, err)
	p, err := c.Attach(context.Background(), "app-1", backend.ProcessIO{})
	require.NoError(t, err)
	require.False(t, pidGone(pid))
	require.NoError(t, os.WriteFile(filepath.Join(rootfs, "release"), nil, 0o644))
	require.Equal(t, 5, waitExit(t, p))

	// A new process started by this backend runs under gavel-keeper too.
	q, err := c.Run(context.Background(), backend.ProcessSpec{ID: "app-2", Path: "sh", Args: []string{"-c", "exit 7"}}, backend.ProcessIO{})
	require.NoError(t, err)
	require.Equal(t, 7, waitExit(t, q))
}

// A keeper path that is relative, missing, or a binary that does not speak
// the keeper protocol is refused when the backend is made.
func TestKeeperPathIsChecked(t *testing.T) {
	stale := filepath.Join(t.TempDir(), "stale-keeper")
	require.NoError(t, os.WriteFile(stale, []byte("#!/bin/sh\necho gavel-process-keeper/0\n"), 0o755))
	cases := []struct {
		name, path, want string
	}{
		{"relative", "bin/gavel-keeper", "must be absolute"},
		{"missing", "/no/such/gavel-keeper", "asking its protocol"},
		{"not a keeper", "/bin/true", `speaks "", this backend "gavel-process-keeper/2"`},
		{"another release", stale, `speaks "gavel-process-keeper/0"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := process.New(process.Options{Root: t.TempDir(), KeeperPath: tc.path})
			require.ErrorContains(t, err, tc.want)
		})
	}
}
