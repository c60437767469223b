package devcluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// LockFile is the file in a data dir that a running dev cluster holds an
// exclusive flock on; it says which process holds it and where it listens.
const LockFile = "gavel.lock"

// Holder is what the lock file says about the cluster holding a data dir.
type Holder struct {
	// PID is the gavel dev process.
	PID int `json:"pid"`
	// Name is the cluster's --name ("" for the unnamed one).
	Name string `json:"name,omitempty"`
	// Addresses are the cluster's listeners by role (bbs, nats, router, ...),
	// known once it has started.
	Addresses map[string]string `json:"addresses,omitempty"`
}

// String names the holder's pid and addresses in one line.
func (h Holder) String() string {
	s := fmt.Sprintf("pid %d", h.PID)
	if h.Name != "" {
		s += fmt.Sprintf(", cluster %q", h.Name)
	}
	if len(h.Addresses) > 0 {
		var parts []string
		for _, role := range []string{"bbs", "nats", "router", "debug"} {
			if a := h.Addresses[role]; a != "" {
				parts = append(parts, role+" "+a)
			}
		}
		s += ", " + strings.Join(parts, ", ")
	} else {
		s += ", still starting"
	}
	return s
}

// InUseError is LockDataDir's error when another process holds the data dir.
type InUseError struct {
	DataDir string
	Holder  Holder
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("data dir %s is in use by a running gavel dev (%s): stop it, or start another cluster beside it with --name NAME (or --data-dir)", e.DataDir, e.Holder)
}

// DataDirLock is an exclusive hold on a data dir, released when the process
// ends whatever the way (the kernel drops a flock with its last descriptor).
type DataDirLock struct {
	f *os.File
}

// LockDataDir takes dir's lock without waiting, creating dir if need be, and
// records the calling process as its holder. It fails with an *InUseError
// naming the holder when another process has it.
func LockDataDir(dir, name string) (*DataDirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir lock %s: %w", path, err)
		}
		var h Holder
		if data, err := os.ReadFile(path); err == nil {
			_ = json.Unmarshal(data, &h)
		}
		return nil, &InUseError{DataDir: dir, Holder: h}
	}
	l := &DataDirLock{f: f}
	if err := l.Record(Holder{PID: os.Getpid(), Name: name}); err != nil {
		l.Release()
		return nil, err
	}
	return l, nil
}

// Record rewrites the lock file's description of its holder (in place: the
// flock belongs to this file).
func (l *DataDirLock) Record(h Holder) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("data dir lock: %w", err)
	}
	if _, err := l.f.WriteAt(append(data, '\n'), 0); err != nil {
		return fmt.Errorf("data dir lock: %w", err)
	}
	return nil
}

// Release gives the data dir up.
func (l *DataDirLock) Release() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
}

// ClearDataDir removes everything in dir but the lock file (what --fresh
// does once the lock is held).
func ClearDataDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == LockFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
