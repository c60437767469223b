package process

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroups manages one cgroup v2 sub-cgroup per container, when the machine allows it.
type cgroups struct {
	parent  string // <root>/<parent>; empty when disabled
	reason  string // why limits are not enforced
	enabled bool
}

// probeCgroups checks for a writable cgroup v2 hierarchy with the memory
// controller and prepares the parent cgroup. It never fails: a failed probe
// disables enforcement and records the reason.
func probeCgroups(root, parent string, disabled bool) *cgroups {
	if disabled {
		return &cgroups{reason: "cgroups disabled by configuration"}
	}
	controllers, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return &cgroups{reason: fmt.Sprintf("no cgroup v2 hierarchy at %s: %v", root, err)}
	}
	if !hasWord(string(controllers), "memory") {
		return &cgroups{reason: fmt.Sprintf("cgroup v2 at %s has no memory controller", root)}
	}
	dir := filepath.Join(root, parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &cgroups{reason: fmt.Sprintf("cannot create cgroup %s: %v", dir, err)}
	}
	if err := enableMemory(root); err != nil {
		return &cgroups{reason: err.Error()}
	}
	if err := enableMemory(dir); err != nil {
		return &cgroups{reason: err.Error()}
	}
	return &cgroups{parent: dir, enabled: true}
}

func enableMemory(dir string) error {
	ctl, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err == nil && hasWord(string(ctl), "memory") {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory"), 0o644); err != nil {
		return fmt.Errorf("cannot enable the memory controller in %s: %w", dir, err)
	}
	return nil
}

func hasWord(s, word string) bool {
	for _, f := range strings.Fields(s) {
		if f == word {
			return true
		}
	}
	return false
}

// path is the container's cgroup directory, or "" when disabled.
func (c *cgroups) path(handle string) string {
	if !c.enabled {
		return ""
	}
	return filepath.Join(c.parent, handle)
}

// create makes the container's cgroup with memory.max; limit 0 means "max".
func (c *cgroups) create(handle string, limit uint64) error {
	if !c.enabled {
		return nil
	}
	dir := c.path(handle)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	value := "max"
	if limit > 0 {
		value = strconv.FormatUint(limit, 10)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(value), 0o644); err != nil {
		return fmt.Errorf("set memory.max of %s: %w", dir, err)
	}
	return nil
}

// addProcess moves a pid into the container's cgroup (fallback when
// CLONE_INTO_CGROUP is not available).
func (c *cgroups) addProcess(handle string, pid int) error {
	if !c.enabled {
		return nil
	}
	file := filepath.Join(c.path(handle), "cgroup.procs")
	if err := os.WriteFile(file, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("add pid %d to %s: %w", pid, file, err)
	}
	return nil
}

// oomKilled reports whether the kernel OOM-killed a process of the container.
func (c *cgroups) oomKilled(handle string) bool {
	if !c.enabled {
		return false
	}
	data, err := os.ReadFile(filepath.Join(c.path(handle), "memory.events"))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
			return true
		}
	}
	return false
}

// remove deletes the container's cgroup; its processes must be gone.
func (c *cgroups) remove(handle string) error {
	if !c.enabled {
		return nil
	}
	if err := os.Remove(c.path(handle)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup: %w", err)
	}
	return nil
}
