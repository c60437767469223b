// Package logarchive keeps the recent output of a cell's instances and
// tasks after their containers are gone: each ended container's retained
// lines, bounded per app (process or task guid) and in total, persisted to
// one JSON file (rewritten atomically) so they survive a rep restart.
package logarchive

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Defaults of the bounds.
const (
	// DefaultMaxPerApp is how many ended containers are kept per process or task guid.
	DefaultMaxPerApp = 5
	// DefaultMaxBytes bounds the message bytes kept over all entries.
	DefaultMaxBytes = 4 << 20
)

// Line is one archived output line.
type Line struct {
	// Time is Unix nanoseconds.
	Time    int64  `json:"t"`
	Source  string `json:"source"`
	Stream  string `json:"stream"`
	Message string `json:"msg"`
}

// Entry is the archived output of one ended container.
type Entry struct {
	ProcessGUID  string `json:"process_guid,omitempty"`
	TaskGUID     string `json:"task_guid,omitempty"`
	InstanceGUID string `json:"instance_guid,omitempty"`
	Index        int32  `json:"index"`
	// EndedAt is Unix nanoseconds.
	EndedAt int64 `json:"ended_at"`
	// Reason says how it ended ("crashed: exit status 1", "stopped", "cell stopped").
	Reason string `json:"reason,omitempty"`
	Lines  []Line `json:"lines"`
}

func (e *Entry) app() string {
	if e.TaskGUID != "" {
		return "task:" + e.TaskGUID
	}
	return "lrp:" + e.ProcessGUID
}

func (e *Entry) size() int64 {
	var n int64
	for _, l := range e.Lines {
		n += int64(len(l.Message)) + 32
	}
	return n
}

// Options bound an Archive.
type Options struct {
	// Path is the file the archive persists to; empty keeps it in memory only.
	Path string
	// MaxPerApp is how many ended containers are kept per app (default 5).
	MaxPerApp int
	// MaxBytes bounds the archive's size (default 4 MiB); the oldest entries go first.
	MaxBytes int64
}

// Archive is a cell's archive of ended containers' output. Safe for concurrent use.
type Archive struct {
	opts Options

	mu      sync.Mutex
	entries []*Entry // oldest first
	bytes   int64
}

// Open loads the archive at opts.Path (a missing file is an empty archive).
func Open(opts Options) (*Archive, error) {
	if opts.MaxPerApp <= 0 {
		opts.MaxPerApp = DefaultMaxPerApp
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	a := &Archive{opts: opts}
	if opts.Path == "" {
		return a, nil
	}
	data, err := os.ReadFile(opts.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return a, nil
	case err != nil:
		return nil, fmt.Errorf("log archive: %w", err)
	}
	var entries []*Entry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("log archive %s: %w", opts.Path, err)
	}
	for _, e := range entries {
		a.entries = append(a.entries, e)
		a.bytes += e.size()
	}
	a.evictLocked()
	return a, nil
}

// Add archives one ended container's output and persists the archive.
func (a *Archive) Add(e Entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, &e)
	a.bytes += e.size()
	for e.size() > a.opts.MaxBytes && len(e.Lines) > 0 { // one entry alone never exceeds the total
		a.bytes -= int64(len(e.Lines[0].Message)) + 32
		e.Lines = e.Lines[1:]
	}
	a.evictLocked()
	return a.saveLocked()
}

// evictLocked drops the oldest entries beyond the per-app and total bounds.
func (a *Archive) evictLocked() {
	perApp := map[string]int{}
	for _, e := range a.entries {
		perApp[e.app()]++
	}
	kept := a.entries[:0]
	for _, e := range a.entries {
		if perApp[e.app()] > a.opts.MaxPerApp {
			perApp[e.app()]--
			a.bytes -= e.size()
			continue
		}
		kept = append(kept, e)
	}
	a.entries = kept
	for a.bytes > a.opts.MaxBytes && len(a.entries) > 0 {
		a.bytes -= a.entries[0].size()
		a.entries = a.entries[1:]
	}
}

func (a *Archive) saveLocked() error {
	if a.opts.Path == "" {
		return nil
	}
	data, err := json.Marshal(a.entries)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(a.opts.Path), 0o755); err != nil {
		return fmt.Errorf("log archive: %w", err)
	}
	tmp := a.opts.Path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("log archive: %w", err)
	}
	if err := os.Rename(tmp, a.opts.Path); err != nil {
		return fmt.Errorf("log archive: %w", err)
	}
	return nil
}

// Select returns the entries of a process (optionally one index) or of a
// task, oldest first.
func (a *Archive) Select(processGUID string, index *int32, taskGUID string) []Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Entry
	for _, e := range a.entries {
		switch {
		case taskGUID != "":
			if e.TaskGUID != taskGUID {
				continue
			}
		case e.ProcessGUID != processGUID || e.TaskGUID != "" || (index != nil && e.Index != *index):
			continue
		}
		c := *e
		c.Lines = append([]Line(nil), e.Lines...)
		out = append(out, c)
	}
	return out
}

// Size is the archive's accounted size in bytes.
func (a *Archive) Size() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bytes
}
