package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// fixed at 100 by the Linux ABI on every architecture Go supports.
const clockTicks = 100

// stopTimeout is how long a daemon may take to stop on SIGTERM before it is
// killed.
const stopTimeout = 15 * time.Second

// process is one daemon started by the benchmark.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // the wait error, valid once done is closed
}

// startProcess runs bin with args, its output going to a log file in dir.
// The child is killed by the kernel if the benchmark itself dies.
func startProcess(dir, name, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// pid is the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes an exit, with the end of the log.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited (%v); end of %s:\n%s", p.name, p.err, p.logPath, p.logTail(20))
}

// logTail returns the last n lines of the log.
func (p *process) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kill sends SIGKILL and waits for the exit.
func (p *process) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits, killing the process after stopTimeout.
func (p *process) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.kill()
	}
}

// ProcStats are a process's resource use read from /proc.
type ProcStats struct {
	// CPUSeconds is user + system CPU time since the process started.
	CPUSeconds float64 `json:"cpu_seconds"`
	// SystemCPUSeconds is the system (kernel) part of CPUSeconds.
	SystemCPUSeconds float64 `json:"system_cpu_seconds"`
	// MinorFaults is the page faults served without I/O since the process
	// started: mostly memory the process touches for the first time.
	MinorFaults int64 `json:"minor_faults"`
	// PeakRSSBytes is the peak resident set size (VmHWM).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// RSSBytes is the current resident set size (VmRSS).
	RSSBytes int64 `json:"rss_bytes"`
}

// readProcStats reads /proc/<pid>/stat and /proc/<pid>/status.
func readProcStats(pid int) (ProcStats, error) {
	var st ProcStats
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return st, fmt.Errorf("read stats of pid %d: %w", pid, err)
	}
	// The command name may hold spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return st, fmt.Errorf("read stats of pid %d: malformed stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is the state (field 3); minflt is field 10, utime and
	// stime are fields 14 and 15.
	if len(fields) < 13 {
		return st, fmt.Errorf("read stats of pid %d: short stat", pid)
	}
	minflt, err0 := strconv.ParseInt(fields[7], 10, 64)
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err0, err1, err2); err != nil {
		return st, fmt.Errorf("read stats of pid %d: %w", pid, err)
	}
	st.CPUSeconds = float64(utime+stime) / clockTicks
	st.SystemCPUSeconds = float64(stime) / clockTicks
	st.MinorFaults = minflt
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return st, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmHWM" && name != "VmRSS") {
			continue
		}
		f := strings.Fields(rest) // "123456 kB"
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return st, fmt.Errorf("read status of pid %d: %s: %w", pid, name, err)
		}
		if name == "VmHWM" {
			st.PeakRSSBytes = kb << 10
		} else {
			st.RSSBytes = kb << 10
		}
	}
	return st, nil
}

// transparentHugePages is the host's transparent huge page mode ("always",
// "madvise" or "never"), or "" when it cannot be read. Go's heaps get huge
// pages only under "always"; with 4 KiB pages a daemon's fresh memory costs
// a page fault per page, which moves its CPU per instance between hosts.
func transparentHugePages() string {
	data, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return ""
	}
	return selectedMode(string(data))
}

// selectedMode is the bracketed word of a sysfs choice list such as
// "always [madvise] never", or "" when there is none.
func selectedMode(list string) string {
	for _, w := range strings.Fields(list) {
		if len(w) > 2 && w[0] == '[' && w[len(w)-1] == ']' {
			return w[1 : len(w)-1]
		}
	}
	return ""
}
