package process_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

// TestLaunchedProcess runs processes through a launcher that starts the
// real process in the background, writes its pid and exits: the keeper
// adopts the real process and reports its status.
func TestLaunchedProcess(t *testing.T) {
	pidDir := t.TempDir()
	b, err := process.New(process.Options{
		Root: t.TempDir(), PortRangeStart: 43000, PortRangeEnd: 43099, PollInterval: 20 * time.Millisecond,
		LaunchPidFile: func(handle, id string) string { return filepath.Join(pidDir, handle+"-"+id+".pid") },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: "launched"})
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(pidDir, "launched-real.pid")
	var out strings.Builder
	p, err := c.Run(ctx, backend.ProcessSpec{ID: "real", Path: "sh", Args: []string{"-c",
		"sh -c 'sleep 0.3; echo real; exit 3' & echo $! > " + pidFile}}, backend.ProcessIO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	status, err := p.Wait()
	if err != nil || status != 3 || out.String() != "real\n" {
		t.Errorf("launched process: status %d (%v), output %q; want 3, \"real\"", status, err, out.String())
	}
	if _, err := os.Stat(pidFile); err != nil {
		t.Errorf("pid file: %v", err)
	}
	// A launcher that fails fails Run.
	if _, err := c.Run(ctx, backend.ProcessSpec{ID: "bad", Path: "sh", Args: []string{"-c", "exit 4"}}, backend.ProcessIO{}); err == nil ||
		!strings.Contains(err.Error(), "exit status 4") {
		t.Errorf("failing launcher: %v", err)
	}
	// Signals reach the launched process (its group).
	p, err = c.Run(ctx, backend.ProcessSpec{ID: "sleeper", Path: "sh", Args: []string{"-c",
		"sleep 60 & echo $! > " + filepath.Join(pidDir, "launched-sleeper.pid")}}, backend.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(backend.SignalTerminate); err != nil {
		t.Fatal(err)
	}
	if status, _ := p.Wait(); status != 143 {
		t.Errorf("terminated launched process: status %d, want 143", status)
	}
	if err := b.Destroy(ctx, "launched"); err != nil {
		t.Fatal(err)
	}
}
