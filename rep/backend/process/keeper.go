package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gavelhq/gavel/rep/backend"
)

// The keeper is the parent of every process the backend starts: the
// backend's own binary re-executed (/proc/self/exe, so a binary replaced on
// disk by an upgrade still runs the code that started it) with keeperFlag as
// its first argument. It starts the process, reports its pid, waits for it
// and writes its exit status to the process's exit file, so the status
// survives a restart of the backend's OS process (as Garden's dadoo does).
//
// Its file descriptors:
//
//	0, 1, 2  the process's stdin, stdout and stderr (the keeper's own
//	         diagnostics go to the process's stderr file)
//	3        keeperSpecFD: the keeperSpec as JSON, read to EOF
//	4        keeperReportFD: a keeperReport as JSON, then, once the status is
//	         written, the exitRecord as JSON (a backend that is still
//	         there learns of the exit without polling or waiting for the
//	         keeper to exit)
const (
	// keeperFlag selects keeper mode. It looks like a flag so that a binary
	// that does not handle it (its main does not call RunKeeper) exits at
	// once with a usage error instead of running as itself.
	keeperFlag = "-gavel-process-keeper"
	// keeperProtocolFlag asks a keeper binary for keeperProtocol, which the
	// backend checks before it uses a dedicated keeper (Options.KeeperPath),
	// so that a keeper left from another release is refused at start.
	keeperProtocolFlag = "-gavel-process-keeper-protocol"
	// keeperProtocol names the spec, report and exit-file formats below
	// and the in-container modes (inside.go; /2 added them); change it
	// with any of them.
	keeperProtocol = "gavel-process-keeper/2"
	// keeperName is the keeper's argv[0], as ps shows it.
	keeperName     = "gavel-process-keeper"
	keeperSelf     = "/proc/self/exe"
	keeperSpecFD   = 3
	keeperReportFD = 4
)

// keeperSpec is what the backend tells the keeper to run.
type keeperSpec struct {
	// Path is the resolved executable; Args includes argv[0].
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
	// Cgroup is the container's cgroup directory, "" for none.
	Cgroup string                `json:"cgroup,omitempty"`
	Limits backend.ProcessLimits `json:"limits"`
	// KillOnParentExit sets PR_SET_PDEATHSIG=SIGKILL on the process, so it
	// dies with the keeper.
	KillOnParentExit bool `json:"kill_on_parent_exit,omitempty"`
	// ExitFile is where the exit status is written.
	ExitFile string `json:"exit_file"`
	// LaunchPidFile, when set, makes Path a launcher (see
	// Options.LaunchPidFile): the keeper becomes a child subreaper, runs
	// the launcher to its exit, then keeps the process whose pid the
	// launcher wrote to this file.
	LaunchPidFile string `json:"launch_pid_file,omitempty"`
}

// keeperReport is the keeper's answer: the started process, or why it did
// not start.
type keeperReport struct {
	Pid int `json:"pid,omitempty"`
	// Pgid is the process group of a launched process (0: Pid's own).
	Pgid      int    `json:"pgid,omitempty"`
	StartTime uint64 `json:"start_time,omitempty"`
	Error     string `json:"error,omitempty"`
}

// exitRecord is the content of an exit file. Pid and StartTime name the
// process it belongs to, so a file left by an earlier process with the same
// id is never taken for this one's.
type exitRecord struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	Status    int    `json:"status"`
}

// KeeperRequested reports whether this OS process was started by the process
// backend as a keeper. The main function of every binary that runs a process
// backend (and TestMain of every test package whose tests start processes
// with it) must begin with
//
//	if process.KeeperRequested() {
//		os.Exit(process.RunKeeper())
//	}
//
// A binary that does not, and parses its flags, exits at once with a usage
// error when started as a keeper (keeperFlag looks like a flag), and the
// backend's Run fails saying what is missing.
func KeeperRequested() bool {
	if len(os.Args) < 2 {
		return false
	}
	switch os.Args[1] {
	case keeperFlag, keeperProtocolFlag, InitFlag, TarInFlag, TarOutFlag:
		return true
	}
	return false
}

// RunKeeper runs this OS process as a keeper (see KeeperRequested), or in
// one of the in-container modes (InitFlag, TarInFlag, TarOutFlag), and
// returns its exit code: 0 once the kept process's exit status is written, 1
// when the process could not be started or its status not written. It
// blocks until the kept process exits; it takes no context because nothing
// may cut that wait short. SIGTERM, SIGINT and SIGHUP are caught and
// ignored, so only SIGKILL ends a keeper early (the status is then unknown).
func RunKeeper() int {
	switch os.Args[1] {
	case keeperProtocolFlag:
		fmt.Println(keeperProtocol)
		return 0
	case InitFlag, TarInFlag, TarOutFlag:
		return runInside(os.Args[1:])
	}
	// PR_SET_PDEATHSIG of the kept process fires when the thread that
	// started it exits: keep this goroutine, which starts it, on one thread.
	runtime.LockOSThread()
	signals := make(chan os.Signal, 1)
	// Caught, not ignored: an ignored signal would stay ignored in the child.
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for range signals {
		}
	}()
	if err := keep(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", keeperName, err)
		return 1
	}
	return 0
}

func keep() error {
	specFile := os.NewFile(keeperSpecFD, "keeper-spec")
	reportFile := os.NewFile(keeperReportFD, "keeper-report")
	if specFile == nil || reportFile == nil {
		return errors.New("not started by the process backend (no spec or report descriptor)")
	}
	defer reportFile.Close()
	// Neither descriptor may leak into the kept process.
	syscall.CloseOnExec(keeperReportFD)
	var spec keeperSpec
	data, err := io.ReadAll(specFile)
	specFile.Close()
	if err == nil {
		err = json.Unmarshal(data, &spec)
	}
	if err != nil {
		return report(reportFile, keeperReport{Error: fmt.Sprintf("read keeper spec: %v", err)})
	}
	if spec.LaunchPidFile != "" {
		return keepLaunched(spec, reportFile)
	}
	// The process inherits the keeper's limits, so it starts with them
	// (setting them on its pid once it runs would race its first steps).
	// syscall.Setrlimit, not unix's: it also stops os/exec from restoring
	// the nofile limit Go had at start in the child.
	if n := spec.Limits.Nofile; n > 0 {
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n})
	}
	cmd, err := startKept(spec)
	if err != nil {
		if rerr := report(reportFile, keeperReport{Error: err.Error()}); rerr != nil {
			return rerr
		}
		return err
	}
	setRlimits(cmd.Process.Pid, spec.Limits)
	startTime, _ := procStartTime(cmd.Process.Pid)
	// The process holds its own stdin now; the keeper's copy would keep the
	// pipe open after the process exits.
	os.Stdin.Close()
	if err := report(reportFile, keeperReport{Pid: cmd.Process.Pid, StartTime: startTime}); err != nil {
		// The backend gave up on this start: do not leave the process behind.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return err
	}
	status := reapGroup(cmd)
	rec := exitRecord{Pid: cmd.Process.Pid, StartTime: startTime, Status: status}
	if err := writeExitFile(spec.ExitFile, rec); err != nil {
		return fmt.Errorf("record exit status %d of pid %d: %w", status, rec.Pid, err)
	}
	// Fails harmlessly when the backend that started the keeper is gone.
	_ = report(reportFile, rec)
	return nil
}

// report writes one JSON value to the report pipe.
func report(f *os.File, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode keeper report: %w", err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("write keeper report: %w", err)
	}
	return nil
}

// startKept starts the process in its own process group, in the container's
// cgroup when there is one, with the keeper's stdio.
func startKept(spec keeperSpec) (*exec.Cmd, error) {
	cmd := &exec.Cmd{
		Path:        spec.Path,
		Args:        spec.Args,
		Env:         spec.Env,
		Dir:         spec.Dir,
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if spec.KillOnParentExit {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if spec.Cgroup == "" {
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", spec.Path, err)
		}
		return cmd, nil
	}
	fd, err := syscall.Open(spec.Cgroup, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err == nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
		err = cmd.Start()
		syscall.Close(fd)
		if err == nil {
			return cmd, nil
		}
		cmd.SysProcAttr.UseCgroupFD = false
		cmd.SysProcAttr.CgroupFD = 0
		cmd.Process = nil
	}
	// Fallback: start, then move the process (a child forked in between escapes).
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	procs := filepath.Join(spec.Cgroup, "cgroup.procs")
	if err := os.WriteFile(procs, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "%s: add pid %d to %s: %v\n", keeperName, cmd.Process.Pid, procs, err)
	}
	return cmd, nil
}

// reapGroup waits for the process: once it has exited (not yet reaped, so
// its pid and pgid cannot be reused) the rest of its group is killed, then
// it is reaped. It returns the exit code, or 128+n for a death by signal n.
func reapGroup(cmd *exec.Cmd) int {
	pid := cmd.Process.Pid
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = cmd.Wait()
	return exitStatus(cmd.ProcessState)
}

// exitStatus is the status Wait reports for a finished process.
func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return backend.ExitStatusUnknown
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return backend.ExitStatusUnknown
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// writeExitFile writes rec atomically: a reader sees the whole record or
// no file.
func writeExitFile(path string, rec exitRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode exit record: %w", err)
	}
	if err := WriteFileAtomic(path, data, 0o644); err != nil {
		return fmt.Errorf("write exit file: %w", err)
	}
	return nil
}

// readExitFile returns the status recorded for the process pid started at
// startTime; false when there is none (or only one for another process).
func readExitFile(path string, pid int, startTime uint64) (int, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	var rec exitRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return 0, false
	}
	if rec.Pid != pid || (startTime != 0 && rec.StartTime != 0 && rec.StartTime != startTime) {
		return 0, false
	}
	return rec.Status, true
}

// checkKeeper asks a dedicated keeper binary for its protocol and refuses
// one that is not absolute, cannot run, or speaks another protocol.
func checkKeeper(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("process backend: keeper path %q: must be absolute", path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, keeperProtocolFlag).Output()
	if err != nil {
		return fmt.Errorf("process backend: keeper %s: asking its protocol: %w", path, err)
	}
	if got := strings.TrimSpace(string(out)); got != keeperProtocol {
		return fmt.Errorf("process backend: keeper %s speaks %q, this backend %q (install the gavel-keeper of this release)", path, firstLine(got), keeperProtocol)
	}
	return nil
}

// firstLine is s up to its first newline, at most 80 bytes.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
