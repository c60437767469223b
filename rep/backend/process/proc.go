package process

import (
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

// process is one process of a container: a child of this backend, or a
// process rediscovered after a restart (cmd == nil), tracked by polling.
type process struct {
	c         *container
	id        string
	pid       int
	pgid      int
	startTime uint64
	outPath   string
	errPath   string

	done   chan struct{}
	status int
	err    error

	attachMu    sync.Mutex
	attachments sync.WaitGroup
	closed      bool // no new attachments (exit delivered)
}

func newProcess(c *container, id string, pid, pgid int, startTime uint64) *process {
	dir := filepath.Join(c.dir, "processes")
	return &process{
		c: c, id: id, pid: pid, pgid: pgid, startTime: startTime,
		outPath: filepath.Join(dir, id+".stdout"),
		errPath: filepath.Join(dir, id+".stderr"),
		done:    make(chan struct{}),
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

// spawn starts the process with its output going to files, tailed to pio.
// The tails are attached before the process is reaped, so the output of a
// process that exits at once is never lost.
func (c *container) spawn(id string, spec backend.ProcessSpec, containerEnv []string, pio backend.ProcessIO) (backend.Process, error) {
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
	p := newProcess(c, id, 0, 0, 0)
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
		Path:   path,
		Args:   append([]string{spec.Path}, spec.Args...),
		Env:    env,
		Dir:    dir,
		Stdout: outF,
		Stderr: errF,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true,
		},
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
	if err := c.start(cmd); err != nil {
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
	p.pid = cmd.Process.Pid
	p.pgid = p.pid
	p.startTime, _ = procStartTime(p.pid)
	setRlimits(p.pid, spec.Limits)

	c.mu.Lock()
	c.procs[id] = p
	if !c.destroyed {
		if err := c.persistLocked(); err != nil {
			c.b.logger.Error("persist-container", err)
		}
	}
	c.mu.Unlock()
	a, err := p.attach(pio, false)
	go p.reap(cmd)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// start starts cmd in the container's cgroup when there is one.
func (c *container) start(cmd *exec.Cmd) error {
	cg := c.b.cgroups.path(c.handle)
	if cg == "" {
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", cmd.Path, err)
		}
		return nil
	}
	fd, err := syscall.Open(cg, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err == nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
		err = cmd.Start()
		syscall.Close(fd)
		if err == nil {
			return nil
		}
		cmd.SysProcAttr.UseCgroupFD = false
		cmd.SysProcAttr.CgroupFD = 0
		cmd.Process = nil
	}
	// Fallback: start, then move the process (a child forked in between escapes).
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	if err := c.b.cgroups.addProcess(c.handle, cmd.Process.Pid); err != nil {
		c.b.logger.Error("add-to-cgroup", err)
	}
	return nil
}

func setRlimits(pid int, l backend.ProcessLimits) {
	if l.Nofile > 0 {
		_ = unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: l.Nofile, Max: l.Nofile}, nil)
	}
	if l.Nproc > 0 {
		_ = unix.Prlimit(pid, unix.RLIMIT_NPROC, &unix.Rlimit{Cur: l.Nproc, Max: l.Nproc}, nil)
	}
}

// reap waits for a child: once it has exited (not yet reaped, so its pid and
// pgid cannot be reused) the rest of its group is killed, then it is reaped.
func (p *process) reap(cmd *exec.Cmd) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
	err := cmd.Wait()
	status := backend.ExitStatusUnknown
	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				status = 128 + int(ws.Signal())
			} else {
				status = ws.ExitStatus()
			}
		}
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		err = nil
	}
	p.finish(status, err)
}

// poll tracks a rediscovered process that is not our child.
func (p *process) poll(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for range t.C {
		if !alive(p.pid, p.startTime) {
			_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
			p.finish(backend.ExitStatusUnknown, nil)
			return
		}
	}
}

func (p *process) finish(status int, err error) {
	p.status, p.err = status, err
	close(p.done)
	p.c.persist()
	go func() {
		p.attachMu.Lock()
		p.closed = true
		p.attachMu.Unlock()
		p.attachments.Wait()
		p.c.mu.Lock()
		delete(p.c.procs, p.id)
		p.c.mu.Unlock()
		_ = os.Remove(p.outPath)
		_ = os.Remove(p.errPath)
	}()
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
			tail(f, s.w, p.done, p.c.b.opts.PollInterval)
		}()
	}
	return a, nil
}

// tail copies f to w as it grows, until done is closed and f is drained.
func tail(f *os.File, w io.Writer, done <-chan struct{}, maxWait time.Duration) {
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
