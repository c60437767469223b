package process_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

// firstBackendEnv makes the test binary run as a first backend (see
// runFirstBackend), so a test can kill the backend's OS process as a rep
// restart does.
const firstBackendEnv = "GAVEL_PROCESS_TEST_FIRST_BACKEND"

// firstBackend is the JSON of firstBackendEnv.
type firstBackend struct {
	Root    string `json:"root"`
	Handle  string `json:"handle"`
	ID      string `json:"id"`
	Command string `json:"command"` // run with sh -c
	// KeeperPath sets Options.KeeperPath.
	KeeperPath string `json:"keeper_path,omitempty"`
	// KillOnParentExit sets Options.KillOnParentExit.
	KillOnParentExit bool `json:"kill_on_parent_exit,omitempty"`
}

// TestMain lets the test binary act as the keeper of the processes the
// tests start (the backend re-executes its own binary), and as a first
// backend.
func TestMain(m *testing.M) {
	if process.KeeperRequested() {
		os.Exit(process.RunKeeper())
	}
	if spec := os.Getenv(firstBackendEnv); spec != "" {
		if err := runFirstBackend(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if keeperBin != "" && keeperError == nil {
		_ = os.RemoveAll(filepath.Dir(keeperBin))
	}
	os.Exit(code)
}

// runFirstBackend creates a container, runs one process in it, writes
// "started" on stdout and waits to be killed.
func runFirstBackend(spec string) error {
	var fb firstBackend
	if err := json.Unmarshal([]byte(spec), &fb); err != nil {
		return fmt.Errorf("decode %s: %w", firstBackendEnv, err)
	}
	b, err := process.New(process.Options{Root: fb.Root, PortRangeStart: 42000, PortRangeEnd: 42999, PollInterval: 20 * time.Millisecond,
		KillOnParentExit: fb.KillOnParentExit, KeeperPath: fb.KeeperPath})
	if err != nil {
		return err
	}
	ctx := context.Background()
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: fb.Handle, Properties: backend.Properties{"owner": "test"}})
	if err != nil {
		return err
	}
	if _, err := c.Run(ctx, backend.ProcessSpec{ID: fb.ID, Path: "sh", Args: []string{"-c", fb.Command}}, backend.ProcessIO{}); err != nil {
		return err
	}
	fmt.Println("started")
	select {}
}
