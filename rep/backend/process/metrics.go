package process

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gavelhq/gavel/rep/backend"
)

var _ backend.MetricsReporter = (*container)(nil)

// clockTicksPerSecond is the unit of utime and stime in /proc/<pid>/stat
// (USER_HZ, 100 on every Linux architecture Go supports).
const clockTicksPerSecond = 100

// Metrics reports the container's usage from /proc and its directory:
// memory is the resident set, and CPU the user and system time, of every
// process in its processes' groups (this backend has no cgroup to read on
// a cgroup v1 host); disk is what its directory holds.
func (c *container) Metrics(ctx context.Context) (backend.ContainerMetrics, error) {
	if err := ctx.Err(); err != nil {
		return backend.ContainerMetrics{}, err
	}
	c.mu.Lock()
	groups := map[int]bool{}
	for _, p := range c.procs {
		if p.pgid > 0 && alive(p.pid, p.startTime) {
			groups[p.pgid] = true
		}
	}
	created := c.createdAt
	c.mu.Unlock()
	var m backend.ContainerMetrics
	if len(groups) > 0 {
		entries, _ := os.ReadDir("/proc")
		page := uint64(os.Getpagesize())
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			st, ok := readProcStat(pid)
			if !ok || !groups[st.pgrp] {
				continue
			}
			m.PidsCurrent++
			m.MemoryUsageInBytes += st.rssPages * page
			m.CPUUser += ticks(st.utime)
			m.CPUSystem += ticks(st.stime)
		}
	}
	m.CPUUsage = m.CPUUser + m.CPUSystem
	m.MemoryStat = map[string]uint64{"rss": m.MemoryUsageInBytes}
	m.DiskBytesUsed, m.DiskInodesUsed = DiskUsage(c.dir)
	m.Age = time.Since(created)
	return m, nil
}

func ticks(n uint64) time.Duration {
	return time.Duration(n) * time.Second / clockTicksPerSecond
}

// procStatFields are the fields of /proc/<pid>/stat that Metrics reads.
type procStatFields struct {
	pgrp         int
	utime, stime uint64
	rssPages     uint64
}

// readProcStat reads a live (not zombie) process's group, CPU times and
// resident pages.
func readProcStat(pid int) (procStatFields, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStatFields{}, false
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields that follow start after its last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return procStatFields{}, false
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 22 || f[0] == "Z" {
		return procStatFields{}, false
	}
	pgrp, _ := strconv.Atoi(f[2])
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	rss, _ := strconv.ParseUint(f[21], 10, 64)
	return procStatFields{pgrp: pgrp, utime: utime, stime: stime, rssPages: rss}, true
}

// DiskUsage walks dir and returns the bytes its files occupy on disk and
// how many files and directories it holds; unreadable entries are skipped.
func DiskUsage(dir string) (bytes, inodes uint64) {
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		inodes++
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				bytes += uint64(st.Blocks) * 512
			}
		}
		return nil
	})
	return bytes, inodes
}
