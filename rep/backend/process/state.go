package process

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gavelhq/gavel/rep/backend"
)

const stateFile = "state.json"

// persistedState is the content of a container's state.json.
type persistedState struct {
	Handle     string                `json:"handle"`
	Properties backend.Properties    `json:"properties,omitempty"`
	Env        []string              `json:"env,omitempty"`
	Limits     backend.Limits        `json:"limits"`
	Ports      []backend.PortMapping `json:"ports,omitempty"`
	Stopped    bool                  `json:"stopped,omitempty"`
	CreatedAt  time.Time             `json:"created_at"`
	Processes  []persistedProcess    `json:"processes,omitempty"`
}

// persistedProcess names a process (the leader of its process group) and
// its keeper, each by pid and start time so a reused pid is not mistaken for
// it. Its exit status, once known, is in processes/<ID>.exit.
type persistedProcess struct {
	ID              string `json:"id"`
	Pid             int    `json:"pid"`
	Pgid            int    `json:"pgid"`
	StartTime       uint64 `json:"start_time"`
	KeeperPid       int    `json:"keeper_pid,omitempty"`
	KeeperStartTime uint64 `json:"keeper_start_time,omitempty"`
}

func loadState(dir string) (persistedState, error) {
	var st persistedState
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("decode state %s: %w", dir, err)
	}
	return st, nil
}

// saveState writes state.json atomically.
func saveState(dir string, st persistedState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, stateFile), data, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// WriteFileAtomic writes data to path through a temporary file beside it
// and a rename, so a reader (or a process started after a crash) finds the
// old content or the new one, never a part.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
