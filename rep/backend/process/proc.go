package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gavelhq/gavel/rep/backend"
)

// process is one process of a container, started by this backend under a
// keeper (see keeper.go) or rediscovered after a restart. Either way its
// exit status comes from the exit file its keeper writes.
type process struct {
	c         *container
	id        string
	pid       int // the process, leader of its own process group
	pgid      int
	startTime uint64
	// keeperPid and keeperStartTime name the process's keeper (0 when unknown).
	keeperPid       int
	keeperStartTime uint64
	outPath         string
	errPath         string
	exitPath        string
	// reports is the keeper's report pipe, for a process this backend
	// started (nil for one rediscovered); set before the process is listed.
	reports *keeperReports

	done   chan struct{}
	status int
	err    error

	attachMu    sync.Mutex
	attachments sync.WaitGroup
	attached    bool // an attachment was made: the exit is delivered to it
	kept        bool // exited before any attachment: listed and kept until one attaches
	closed      bool // no new attachments (exit delivered)
}

func newProcess(c *container, id string) *process {
	dir := filepath.Join(c.dir, "processes")
	return &process{
		c: c, id: id,
		outPath:  filepath.Join(dir, id+".stdout"),
		errPath:  filepath.Join(dir, id+".stderr"),
		exitPath: filepath.Join(dir, id+".exit"),
		done:     make(chan struct{}),
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// listed reports whether the process is running or exited with a status
// no attachment has received yet: Info lists it, state.json records it, and
// Attach reaches it.
func (p *process) listed() bool {
	if !p.exited() {
		return true
	}
	p.attachMu.Lock()
	defer p.attachMu.Unlock()
	return p.kept
}

// Signal signals the process's whole group.
func (p *process) Signal(sig backend.Signal) error {
	if p.exited() {
		return nil
	}
	s := syscall.SIGTERM
	if sig == backend.SignalKill {
		s = syscall.SIGKILL
	}
	if err := syscall.Kill(-p.pgid, s); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to process group %d: %w", sig, p.pgid, err)
	}
	return nil
}

// keeperEnv is the environment of a keeper: a Go program that needs one
// thread of work (the kept process gets its own env from the keeperSpec).
var keeperEnv = []string{"GOMAXPROCS=1"}

// keeperStartTimeout bounds the keeper's answer when ctx has no earlier deadline.
const keeperStartTimeout = 30 * time.Second

// spawn starts the process under a keeper with its output going to files,
// tailed to pio. The tails are attached before the keeper is reaped, so the
// output of a process that exits at once is never lost.
func (c *container) spawn(ctx context.Context, id string, spec backend.ProcessSpec, containerEnv []string, pio backend.ProcessIO) (backend.Process, error) {
	stdin := pio.Stdin
	env := mergeEnv([]string{"HOME=" + c.rootfs, "TMPDIR=" + filepath.Join(c.rootfs, "tmp"), "PATH=" + os.Getenv("PATH")}, containerEnv, spec.Env)
	dir := c.rootfs
	if spec.Dir != "" {
		dir = c.path(spec.Dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create working directory: %w", err)
	}
	path, err := c.resolve(spec.Path, lookupEnv(env, "PATH"), dir)
	if err != nil {
		return nil, err
	}
	p := newProcess(c, id)
	launchPidFile := ""
	if c.b.opts.LaunchPidFile != nil {
		launchPidFile = c.b.opts.LaunchPidFile(c.handle, id)
		if err := os.Remove(launchPidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale pid file: %w", err)
		}
	}
	// A status left by an earlier process with this id is not this one's.
	if err := os.Remove(p.exitPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale exit file: %w", err)
	}
	outF, err := os.OpenFile(p.outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open stdout file: %w", err)
	}
	defer outF.Close()
	errF, err := os.OpenFile(p.errPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open stderr file: %w", err)
	}
	defer errF.Close()

	cmd := &exec.Cmd{
		Path:   c.b.keeperPath,
		Args:   []string{keeperName, keeperFlag, c.handle + "/" + id},
		Env:    keeperEnv,
		Dir:    "/",
		Stdout: outF,
		Stderr: errF,
		// The keeper leads its own group: signals to the process's group
		// (or the backend's) do not reach it.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if c.b.opts.KillOnParentExit {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	var stdinW *os.File
	if stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("stdin pipe: %w", err)
		}
		defer r.Close()
		cmd.Stdin, stdinW = r, w
	}
	report, reports, err := c.startKeeper(ctx, cmd, keeperSpec{
		Path: path, Args: append([]string{spec.Path}, spec.Args...), Env: env, Dir: dir,
		Cgroup: c.b.cgroups.path(c.handle), Limits: spec.Limits,
		KillOnParentExit: c.b.opts.KillOnParentExit, ExitFile: p.exitPath,
		LaunchPidFile: launchPidFile,
	})
	if err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return nil, err
	}
	if stdinW != nil {
		go func() {
			_, _ = io.Copy(stdinW, stdin)
			stdinW.Close()
		}()
	}
	p.pid, p.pgid, p.startTime = report.Pid, report.Pid, report.StartTime
	if report.Pgid > 0 {
		p.pgid = report.Pgid
	}
	p.keeperPid = cmd.Process.Pid
	p.keeperStartTime, _ = procStartTime(p.keeperPid)

	c.mu.Lock()
	p.reports = reports
	c.procs[id] = p
	if !c.destroyed {
		if err := c.persistLocked(); err != nil {
			c.b.logger.Error("persist-container", err)
		}
	}
	c.mu.Unlock()
	a, err := p.attach(pio, false)
	go p.reap(cmd, reports)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// startKeeper starts the keeper, hands it spec and returns its report of
// the started process, and the report pipe on which the keeper sends the
// exitRecord later. When the keeper fails to start the process, or gives no
// answer before ctx ends or keeperStartTimeout, it is reaped and an error
// returned.
func (c *container) startKeeper(ctx context.Context, cmd *exec.Cmd, spec keeperSpec) (keeperReport, *keeperReports, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return keeperReport{}, nil, fmt.Errorf("encode keeper spec: %w", err)
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return keeperReport{}, nil, fmt.Errorf("keeper spec pipe: %w", err)
	}
	defer specW.Close()
	reportR, reportW, err := os.Pipe()
	if err != nil {
		specR.Close()
		return keeperReport{}, nil, fmt.Errorf("keeper report pipe: %w", err)
	}
	cmd.ExtraFiles = []*os.File{specR, reportW} // keeperSpecFD, keeperReportFD
	err = cmd.Start()
	specR.Close()
	reportW.Close()
	if err != nil {
		reportR.Close()
		return keeperReport{}, nil, fmt.Errorf("start process keeper %s: %w", cmd.Path, err)
	}

	deadline := time.Now().Add(keeperStartTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = specW.SetDeadline(deadline)
	_ = reportR.SetDeadline(deadline)
	answered := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		select {
		case <-ctx.Done():
			_ = specW.SetDeadline(time.Now())
			_ = reportR.SetDeadline(time.Now())
		case <-answered:
		}
	}()
	_, werr := specW.Write(data)
	specW.Close()
	reports := &keeperReports{f: reportR, dec: json.NewDecoder(reportR)}
	var report keeperReport
	rerr := reports.dec.Decode(&report)
	close(answered)
	watcher.Wait()
	if rerr == nil {
		switch {
		case report.Error != "":
			reportR.Close()
			_ = cmd.Wait()
			return keeperReport{}, nil, errors.New(report.Error)
		case report.Pid > 0:
			_ = reportR.SetDeadline(time.Time{})
			return report, reports, nil
		}
	}
	// No answer. Closing the report pipe makes a keeper that is about to
	// answer kill its process and exit; one that never answers (a binary
	// whose main does not call RunKeeper) is killed after a second.
	reportR.Close()
	kill := time.AfterFunc(time.Second, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	waitErr := cmd.Wait()
	kill.Stop()
	if ctx.Err() != nil {
		return keeperReport{}, nil, fmt.Errorf("start %s: %w", spec.Path, ctx.Err())
	}
	return keeperReport{}, nil, fmt.Errorf("start %s: the process keeper gave no answer (%v; keeper: %v); "+
		"the binary's main must run process.RunKeeper when process.KeeperRequested()", spec.Path, errors.Join(werr, rerr), waitErr)
}

// keeperReports is the backend's end of a keeper's report pipe.
type keeperReports struct {
	f   *os.File
	dec *json.Decoder
}

func setRlimits(pid int, l backend.ProcessLimits) {
	if l.Nofile > 0 {
		_ = unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: l.Nofile, Max: l.Nofile}, nil)
	}
	if l.Nproc > 0 {
		_ = unix.Prlimit(pid, unix.RLIMIT_NPROC, &unix.Rlimit{Cur: l.Nproc, Max: l.Nproc}, nil)
	}
}

// reap waits for the exit record a keeper this backend started sends once
// it has written the exit file, then reaps the keeper. When the keeper dies
// without sending one, the process is watched as an adopted one. After
// Detach it only reaps the keeper.
func (p *process) reap(cmd *exec.Cmd, reports *keeperReports) {
	var rec exitRecord
	err := reports.dec.Decode(&rec)
	reports.f.Close()
	detached := p.c.b.isDetached()
	reported := err == nil && rec.Pid == p.pid && !detached
	if reported {
		p.finish(rec.Status, nil)
	}
	_ = cmd.Wait()
	if !reported && !detached {
		p.watch(p.c.b.opts.PollInterval)
	}
}

// recorded returns the exit status the keeper wrote, if any.
func (p *process) recorded() (int, bool) {
	return readExitFile(p.exitPath, p.pid, p.startTime)
}

// keeperAlive reports whether the process's keeper still runs.
func (p *process) keeperAlive() bool {
	return p.keeperPid > 0 && p.keeperStartTime > 0 && alive(p.keeperPid, p.keeperStartTime)
}

// watch polls until the process has exited and finishes it with the status
// its keeper recorded. When the keeper is gone without recording one (it
// was SIGKILLed) the status is ExitStatusUnknown, reported once the process
// is gone too.
func (p *process) watch(interval time.Duration) {
	var tick *time.Ticker
	for {
		if !alive(p.pid, p.startTime) {
			if status, ok := p.recorded(); ok {
				p.finish(status, nil)
				return
			}
			if !p.keeperAlive() {
				// The keeper writes the file before it exits: look once more.
				if status, ok := p.recorded(); ok {
					p.finish(status, nil)
					return
				}
				_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
				p.finish(backend.ExitStatusUnknown, nil)
				return
			}
		}
		if tick == nil {
			tick = time.NewTicker(interval)
			defer tick.Stop()
		}
		select {
		case <-tick.C:
		case <-p.c.b.detached:
			return
		}
	}
}

// finish records the exit. An attachment made before delivers it; without
// one the process is kept (listed, with its exit file) for the next Attach.
func (p *process) finish(status int, err error) {
	p.attachMu.Lock()
	p.status, p.err = status, err
	close(p.done)
	p.kept = !p.attached
	p.attachMu.Unlock()
	if !p.kept {
		go p.release()
	}
}

// release forgets an exited process once its exit and output are delivered.
func (p *process) release() {
	p.attachMu.Lock()
	p.closed = true
	p.attachMu.Unlock()
	p.attachments.Wait()
	if p.c.b.isDetached() {
		return // the next backend delivers the status again
	}
	// The files go while the id is still taken, so they cannot be a new
	// process's of the same id.
	_ = os.Remove(p.outPath)
	_ = os.Remove(p.errPath)
	_ = os.Remove(p.exitPath)
	p.c.mu.Lock()
	delete(p.c.procs, p.id)
	if !p.c.destroyed {
		if err := p.c.persistLocked(); err != nil {
			p.c.b.logger.Error("persist-container", err)
		}
	}
	p.c.mu.Unlock()
}

// attachment is a Process handle whose Wait also waits for its output tails.
type attachment struct {
	*process
	tails sync.WaitGroup
}

// ID returns the process ID.
func (a *attachment) ID() string { return a.id }

// Wait waits for the exit and for the output to be delivered.
func (a *attachment) Wait() (int, error) {
	<-a.done
	a.tails.Wait()
	return a.status, a.err
}

func (p *process) attach(pio backend.ProcessIO, fromEnd bool) (backend.Process, error) {
	p.attachMu.Lock()
	defer p.attachMu.Unlock()
	a := &attachment{process: p}
	p.attached = true
	if p.kept {
		// Exited before anyone attached: this attachment receives the
		// status (the output since the restart stays in the files).
		p.kept = false
		go p.release()
		return a, nil
	}
	if p.closed {
		return a, nil
	}
	for _, s := range []struct {
		path string
		w    io.Writer
	}{{p.outPath, pio.Stdout}, {p.errPath, pio.Stderr}} {
		if s.w == nil {
			continue
		}
		f, err := os.Open(s.path)
		if err != nil {
			return nil, fmt.Errorf("attach to %s: %w", p.id, err)
		}
		if fromEnd {
			if _, err := f.Seek(0, io.SeekEnd); err != nil {
				f.Close()
				return nil, fmt.Errorf("attach to %s: %w", p.id, err)
			}
		}
		p.attachments.Add(1)
		a.tails.Add(1)
		go func() {
			defer p.attachments.Done()
			defer a.tails.Done()
			defer f.Close()
			tail(f, s.w, p.done, p.c.b.detached, p.c.b.opts.PollInterval)
		}()
	}
	return a, nil
}

// tail copies f to w as it grows, until done is closed and f is drained, or
// until detached is closed.
func tail(f *os.File, w io.Writer, done, detached <-chan struct{}, maxWait time.Duration) {
	buf := make([]byte, 32*1024)
	const minWait = 2 * time.Millisecond
	wait := minWait
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		n, err := f.Read(buf)
		if n > 0 {
			_, _ = w.Write(buf[:n])
			wait = minWait
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return
		}
		timer.Reset(wait)
		select {
		case <-done:
			for {
				n, _ := f.Read(buf)
				if n == 0 {
					return
				}
				_, _ = w.Write(buf[:n])
			}
		case <-detached:
			return
		case <-timer.C:
			wait = min(wait*2, maxWait)
		}
	}
}

// procStat reads a process's start time (clock ticks since boot) and
// whether it is a zombie.
func procStat(pid int) (startTime uint64, zombie bool, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, false, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	st, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return st, fields[0] == "Z", nil
}

func procStartTime(pid int) (uint64, error) {
	st, _, err := procStat(pid)
	return st, err
}

// alive reports whether pid is still the process started at startTime.
func alive(pid int, startTime uint64) bool {
	st, zombie, err := procStat(pid)
	return err == nil && !zombie && (startTime == 0 || st == startTime)
}

// resolve finds the executable: absolute paths under rootfs first, then on
// the host; relative paths against dir; bare names on pathEnv.
func (c *container) resolve(name, pathEnv, dir string) (string, error) {
	if name == "" {
		return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
	}
	if filepath.IsAbs(name) {
		if inRoot := c.path(name); isExecutable(inRoot) {
			return inRoot, nil
		}
		if isExecutable(name) {
			return name, nil
		}
		return "", &exec.Error{Name: name, Err: os.ErrNotExist}
	}
	if strings.Contains(name, "/") {
		p := filepath.Join(dir, name)
		if isExecutable(p) {
			return p, nil
		}
		return "", &exec.Error{Name: name, Err: os.ErrNotExist}
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// mergeEnv concatenates env lists; a later value of a name wins, and the
// position of its first occurrence is kept.
func mergeEnv(lists ...[]string) []string {
	idx := map[string]int{}
	var out []string
	for _, l := range lists {
		for _, kv := range l {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

func lookupEnv(env []string, name string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}
