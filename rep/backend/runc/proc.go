package runc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

// proc is a process of a container, started by `runc exec --detach` as
// the launcher of a keeper of the process backend (kp): the keeper, a child
// subreaper, adopts the process once runc has exited, and records its exit
// status (128+n for a death by signal n). Signals go to the process
// itself, whose host pid runc writes to pidFile.
type proc struct {
	c       *container
	id      string
	kp      backend.Process
	pidFile string
	logFile string

	done   chan struct{}
	status int
	err    error
}

var _ backend.Process = (*proc)(nil)

func newProc(c *container, id string, kp backend.Process) *proc {
	p := &proc{
		c:       c,
		id:      id,
		kp:      kp,
		pidFile: filepath.Join(c.procDir(), id+".pid"),
		logFile: filepath.Join(c.procDir(), id+".runc.log"),
		done:    make(chan struct{}),
	}
	go func() {
		p.status, p.err = kp.Wait()
		close(p.done)
	}()
	return p
}

// ID returns the process ID.
func (p *proc) ID() string { return p.id }

// Wait returns the exit status once the process has exited and its output
// has been delivered.
func (p *proc) Wait() (int, error) {
	<-p.done
	return p.status, p.err
}

// Signal sends the signal to the process in the container.
func (p *proc) Signal(sig backend.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	s := syscall.SIGTERM
	if sig == backend.SignalKill {
		s = syscall.SIGKILL
	}
	pid, err := p.pid()
	if err != nil {
		return fmt.Errorf("signal %s to process %s: %w", sig, p.id, err)
	}
	if err := syscall.Kill(pid, s); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to process %s (pid %d): %w", sig, p.id, pid, err)
	}
	return nil
}

// pid reads the process's host pid and checks it is still in the
// container's cgroup (not a reused pid).
func (p *proc) pid() (int, error) {
	data, err := os.ReadFile(p.pidFile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid file %s", p.pidFile)
	}
	cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil || !strings.Contains(string(cg), p.c.b.cgroups.runcPath(p.c.id)) {
		return 0, fmt.Errorf("pid %d: %w", pid, syscall.ESRCH)
	}
	return pid, nil
}

func tarInFlag() string  { return process.TarInFlag }
func tarOutFlag() string { return process.TarOutFlag }

// tarHelper runs the keeper binary's tar mode in the container as user
// (`runc exec`, not kept: it lives as long as the stream).
func (c *container) tarHelper(ctx context.Context, userName string, args []string, stdin io.Reader, stdout io.Writer) error {
	u, err := c.user(userName)
	if err != nil {
		return err
	}
	c.mu.Lock()
	privileged := c.st.Privileged
	c.mu.Unlock()
	// A relative path is relative to the user's home, as in guardian
	// (whose nstar changes to the home directory first).
	args = append(args[:len(args)-1:len(args)-1], inHome(u.home, args[len(args)-1]))
	ps := processSpec(backend.ProcessSpec{Path: initPath, Args: args}, u, []string{"PATH=" + pathFor(u.uid), "HOME=" + u.home}, "/", c.caps(privileged))
	specFile := filepath.Join(c.procDir(), "tar-"+uuid.NewString()+".json")
	if err := writeJSON(specFile, ps); err != nil {
		return err
	}
	defer os.Remove(specFile)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.b.runc.path, append(c.b.runc.globalArgs(""), "exec", "--process", specFile, c.id)...)
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// mkdirInRoot creates dir (a path inside the container) below root, seen
// from the host, resolving every symlink inside root (never out of it),
// and hands the directories it creates to uid:gid.
func mkdirInRoot(root, dir string, uid, gid uint32) error {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(rfd)
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	parts := strings.Split(strings.Trim(filepath.Clean("/"+dir), "/"), "/")
	cur := "/"
	for _, part := range parts {
		if part == "" {
			continue
		}
		parent, err := unix.Openat2(rfd, cur, how)
		if err != nil {
			return fmt.Errorf("open %s: %w", cur, err)
		}
		err = unix.Mkdirat(parent, part, 0o755)
		if err == nil {
			if cerr := unix.Fchownat(parent, part, int(uid), int(gid), unix.AT_SYMLINK_NOFOLLOW); cerr != nil {
				unix.Close(parent)
				return fmt.Errorf("chown %s: %w", filepath.Join(cur, part), cerr)
			}
		}
		unix.Close(parent)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("mkdir %s: %w", filepath.Join(cur, part), err)
		}
		cur = filepath.Join(cur, part)
	}
	fd, err := unix.Openat2(rfd, cur, how)
	if err != nil {
		return fmt.Errorf("open %s: %w", cur, err)
	}
	unix.Close(fd)
	return nil
}
