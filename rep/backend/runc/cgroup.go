package runc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gavelhq/gavel/rep/backend"
)

// cgroupFS knows where runc puts a container's cgroup (the cgroupfs driver,
// cgroupsPath "/<parent>/<id>") and reads its files, for cgroup v1 (one
// hierarchy per controller) or v2 (one unified hierarchy).
type cgroupFS struct {
	root   string // mount point of the hierarchies, /sys/fs/cgroup
	parent string
	v2     bool
}

// userHZ is the unit of cpuacct.stat (USER_HZ is 100 on every Linux ABI).
const userHZ = 100

// v1Controllers are the v1 hierarchies runc creates a container cgroup in
// (those of the controllers the spec sets, plus the ones runc always joins,
// and "unified", the cgroup2 hierarchy of a hybrid host).
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids", "devices", "freezer", "blkio", "cpuset", "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc", "systemd", "unified"}

// detectCgroups reads root: a unified (v2) hierarchy has cgroup.controllers
// at its top, a v1 one has a directory per controller.
func detectCgroups(root, parent string) (*cgroupFS, error) {
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return &cgroupFS{root: root, parent: parent, v2: true}, nil
	}
	if _, err := os.Stat(filepath.Join(root, "memory", "memory.limit_in_bytes")); err == nil {
		return &cgroupFS{root: root, parent: parent}, nil
	}
	return nil, fmt.Errorf("no cgroup v2 hierarchy nor v1 memory controller under %s", root)
}

// runcPath is the linux.cgroupsPath of a container.
func (c *cgroupFS) runcPath(id string) string {
	return "/" + c.parent + "/" + id
}

// dir is the container's directory in the hierarchy that has controller
// (v1), or its only directory (v2).
func (c *cgroupFS) dir(controller, id string) string {
	if c.v2 {
		return filepath.Join(c.root, c.parent, id)
	}
	return filepath.Join(c.root, controller, c.parent, id)
}

// parentDirs lists the parent cgroup in every hierarchy that exists.
func (c *cgroupFS) parentDirs() []string {
	if c.v2 {
		return []string{filepath.Join(c.root, c.parent)}
	}
	var dirs []string
	for _, ctl := range v1Controllers {
		d := filepath.Join(c.root, ctl, c.parent)
		if st, err := os.Lstat(filepath.Join(c.root, ctl)); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// swapLimitSupported reports whether memory+swap can be limited, so that
// the memory limit cannot be escaped into swap.
func (c *cgroupFS) swapLimitSupported() bool {
	if c.v2 {
		_, err := os.Stat(filepath.Join(c.root, "memory.swap.max"))
		if err == nil {
			return true
		}
		// The root cgroup has no memory.swap.max; look at the parent's.
		_, err = os.Stat(filepath.Join(c.root, c.parent, "memory.swap.max"))
		return err == nil
	}
	_, err := os.Stat(filepath.Join(c.root, "memory", "memory.memsw.limit_in_bytes"))
	return err == nil
}

// procsFile lists the pids in the container's cgroup.
func (c *cgroupFS) procsFile(id string) string {
	return filepath.Join(c.dir("memory", id), "cgroup.procs")
}

// pids returns the pids of every process in the container's cgroup.
func (c *cgroupFS) pids(id string) ([]int, error) {
	data, err := os.ReadFile(c.procsFile(id))
	if err != nil {
		return nil, fmt.Errorf("read cgroup procs: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// oomKilled reports whether the kernel OOM-killed a process of the container.
func (c *cgroupFS) oomKilled(id string) bool {
	var file string
	if c.v2 {
		file = filepath.Join(c.dir("memory", id), "memory.events")
	} else {
		file = filepath.Join(c.dir("memory", id), "memory.oom_control")
	}
	kv, err := readKeyValues(file)
	if err != nil {
		return false
	}
	return kv["oom_kill"] > 0
}

// metrics reads the container's usage.
func (c *cgroupFS) metrics(id string) (backend.ContainerMetrics, error) {
	var m backend.ContainerMetrics
	var errs []error
	mem := c.dir("memory", id)
	stat, err := readKeyValues(filepath.Join(mem, "memory.stat"))
	if err != nil {
		errs = append(errs, err)
	}
	m.MemoryStat = stat
	usageFile, inactive := "memory.usage_in_bytes", stat["total_inactive_file"]
	if c.v2 {
		usageFile, inactive = "memory.current", stat["inactive_file"]
	}
	usage, err := readUint(filepath.Join(mem, usageFile))
	if err != nil {
		errs = append(errs, err)
	}
	if usage > inactive {
		m.MemoryUsageInBytes = usage - inactive
	}
	if c.v2 {
		cpu, err := readKeyValues(filepath.Join(c.dir("cpu", id), "cpu.stat"))
		if err != nil {
			errs = append(errs, err)
		}
		m.CPUUsage = time.Duration(cpu["usage_usec"]) * time.Microsecond
		m.CPUUser = time.Duration(cpu["user_usec"]) * time.Microsecond
		m.CPUSystem = time.Duration(cpu["system_usec"]) * time.Microsecond
	} else {
		acct := c.dir("cpuacct", id)
		usage, err := readUint(filepath.Join(acct, "cpuacct.usage"))
		if err != nil {
			errs = append(errs, err)
		}
		m.CPUUsage = time.Duration(usage)
		st, err := readKeyValues(filepath.Join(acct, "cpuacct.stat"))
		if err != nil {
			errs = append(errs, err)
		}
		m.CPUUser = time.Duration(st["user"]) * time.Second / userHZ
		m.CPUSystem = time.Duration(st["system"]) * time.Second / userHZ
	}
	pids := c.dir("pids", id)
	m.PidsCurrent, err = readUint(filepath.Join(pids, "pids.current"))
	if err != nil {
		errs = append(errs, err)
	}
	m.PidsMax, err = readUint(filepath.Join(pids, "pids.max"))
	if err != nil {
		errs = append(errs, err)
	}
	return m, errors.Join(errs...)
}

// readUint reads a file holding one number; "max" reads as 0 (no limit).
func readUint(file string) (uint64, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", file, err)
	}
	return v, nil
}

// readKeyValues reads a flat-keyed file ("key value" lines), such as
// memory.stat, memory.events, memory.oom_control or cpu.stat.
func readKeyValues(file string) (map[string]uint64, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return map[string]uint64{}, err
	}
	return parseKeyValues(data), nil
}

func parseKeyValues(data []byte) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}
