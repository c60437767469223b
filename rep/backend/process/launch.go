package process

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gavelhq/gavel/rep/backend"
)

// keepLaunched keeps a process started by a launcher (keeperSpec.LaunchPidFile):
// as a child subreaper the keeper inherits the process when the launcher
// (and any intermediate process) exits, so it can wait for it and record its
// status like a direct child's.
func keepLaunched(spec keeperSpec, reportFile *os.File) error {
	fail := func(err error) error {
		if rerr := report(reportFile, keeperReport{Error: err.Error()}); rerr != nil {
			return rerr
		}
		return err
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("become a child subreaper: %w", err))
	}
	cmd, err := startKept(spec)
	if err != nil {
		return fail(err)
	}
	werr := cmd.Wait()
	// The launched process holds its own stdin now.
	os.Stdin.Close()
	if werr != nil {
		return fail(fmt.Errorf("launcher %s: %w", spec.Path, werr))
	}
	data, err := os.ReadFile(spec.LaunchPidFile)
	if err != nil {
		return fail(fmt.Errorf("launcher %s: %w", spec.Path, err))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return fail(fmt.Errorf("launcher %s: bad pid file %s", spec.Path, spec.LaunchPidFile))
	}
	startTime, _ := procStartTime(pid)
	pgid, _ := unix.Getpgid(pid)
	setRlimits(pid, spec.Limits)
	if err := report(reportFile, keeperReport{Pid: pid, Pgid: pgid, StartTime: startTime}); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = reapAdopted(pid)
		return err
	}
	status := reapAdopted(pid)
	rec := exitRecord{Pid: pid, StartTime: startTime, Status: status}
	if err := writeExitFile(spec.ExitFile, rec); err != nil {
		return fmt.Errorf("record exit status %d of pid %d: %w", status, pid, err)
	}
	_ = report(reportFile, rec)
	return nil
}

// reapAdopted waits for an adopted child and returns its status (128+n
// for a death by signal n). Other adopted children are reaped on the way.
func reapAdopted(pid int) int {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			// ECHILD: the process was never reparented to this keeper.
			return backend.ExitStatusUnknown
		}
		if got != pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}
