package runc

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

const stateFile = "state.json"

// persistedState is a container's state.json.
type persistedState struct {
	Handle     string                `json:"handle"`
	ID         string                `json:"id"`
	Image      string                `json:"image,omitempty"`
	Rootfs     string                `json:"rootfs"`
	HostRootfs bool                  `json:"host_rootfs,omitempty"`
	Properties backend.Properties    `json:"properties,omitempty"`
	Env        []string              `json:"env,omitempty"`
	Limits     backend.Limits        `json:"limits"`
	BindMounts []backend.BindMount   `json:"bind_mounts,omitempty"`
	Privileged bool                  `json:"privileged,omitempty"`
	Ports      []backend.PortMapping `json:"ports,omitempty"`
	IP         string                `json:"ip,omitempty"`
	Stopped    bool                  `json:"stopped,omitempty"`
	CreatedAt  time.Time             `json:"created_at"`
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
	if err := process.WriteFileAtomic(filepath.Join(dir, stateFile), data, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// writeJSON writes v to path atomically.
func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	if err := process.WriteFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
