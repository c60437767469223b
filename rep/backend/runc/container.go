package runc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

var (
	_ backend.Container       = (*container)(nil)
	_ backend.MetricsReporter = (*container)(nil)
	_ backend.PropertyEditor  = (*container)(nil)
	_ backend.LimitsReporter  = (*container)(nil)
)

// container is one runc container. mu guards the fields below it.
type container struct {
	b      *Backend
	handle string
	id     string
	dir    string // <Root>/containers/<id>: the bundle

	mu         sync.Mutex
	created    bool
	destroying bool // Destroy started: the container is no longer listed
	// tearingDown is true while a Destroy runs.
	tearingDown bool
	st          persistedState
}

func newContainer(b *Backend, handle, id string) *container {
	return &container{b: b, handle: handle, id: id, dir: filepath.Join(b.opts.Root, containersDir, id)}
}

// Paths in the bundle directory.
func (c *container) rootfsDir() string  { return filepath.Join(c.dir, "rootfs") }
func (c *container) upperDir() string   { return filepath.Join(c.dir, "upper") }
func (c *container) workDir() string    { return filepath.Join(c.dir, "work") }
func (c *container) procDir() string    { return filepath.Join(c.dir, "processes") }
func (c *container) runcLog() string    { return filepath.Join(c.dir, "runc.log") }
func (c *container) hostsFile() string  { return filepath.Join(c.dir, "hosts") }
func (c *container) resolvFile() string { return filepath.Join(c.dir, "resolv.conf") }

func (c *container) create(ctx context.Context, spec backend.ContainerSpec, rootfs resolvedRootfs) error {
	for _, bm := range spec.BindMounts {
		if !filepath.IsAbs(bm.SrcPath) || !filepath.IsAbs(bm.DstPath) {
			return fmt.Errorf("bind mount %s→%s: paths must be absolute", bm.SrcPath, bm.DstPath)
		}
	}
	if err := os.MkdirAll(c.procDir(), 0o700); err != nil {
		return fmt.Errorf("create bundle directory: %w", err)
	}
	if err := mountOverlay(rootfs.lower, c.upperDir(), c.workDir(), c.rootfsDir()); err != nil {
		return err
	}
	kc, err := c.b.keepers.Create(ctx, backend.ContainerSpec{Handle: c.id, NetIn: spec.NetIn})
	if err != nil {
		return fmt.Errorf("allocate ports: %w", err)
	}
	kinfo, err := kc.Info(ctx)
	if err != nil {
		return fmt.Errorf("allocate ports: %w", err)
	}
	ip, err := c.b.net.up(ctx, c.id, kinfo.MappedPorts)
	if err != nil {
		return err
	}
	st := persistedState{
		Handle:     c.handle,
		ID:         c.id,
		Image:      spec.Image,
		Rootfs:     rootfs.name,
		HostRootfs: rootfs.host,
		Properties: maps.Clone(spec.Properties),
		Env:        mergeEnv(rootfs.env, spec.Env),
		Limits:     spec.Limits,
		BindMounts: spec.BindMounts,
		Privileged: spec.Privileged,
		Ports:      kinfo.MappedPorts,
		IP:         ip,
		CreatedAt:  time.Now(),
	}
	if st.Properties == nil {
		st.Properties = backend.Properties{}
	}
	hosts := fmt.Sprintf("127.0.0.1 localhost\n%s %s\n", ip, c.handle)
	if err := os.WriteFile(c.hostsFile(), []byte(hosts), 0o644); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	if err := os.WriteFile(c.resolvFile(), []byte(resolvConf(c.b.opts.DNSServers)), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	bs := bundleSpec{
		handle:     c.handle,
		rootfs:     c.rootfsDir(),
		hostsFile:  c.hostsFile(),
		resolvFile: c.resolvFile(),
		netnsPath:  c.b.net.nsPath(c.id),
		cgroupPath: c.b.cgroups.runcPath(c.id),
		keeperPath: c.b.opts.KeeperPath,
		binds:      spec.BindMounts,
		limits:     spec.Limits,
		privileged: spec.Privileged,
		swapLimit:  c.b.cgroups.swapLimitSupported(),
		caps:       c.caps(spec.Privileged),
	}
	if rootfs.host {
		bs.hostBinds = hostUserlandMounts()
	}
	if err := writeJSON(filepath.Join(c.dir, "config.json"), ociSpec(bs)); err != nil {
		return err
	}
	if err := c.b.runc.run(ctx, c.id, c.dir, c.runcLog()); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st = st
	if err := saveState(c.dir, st); err != nil {
		return err
	}
	c.created = true
	return nil
}

func (c *container) caps(privileged bool) []string {
	if privileged {
		return c.b.caps.privileged
	}
	return c.b.caps.unprivileged
}

// resolvConf is a container's /etc/resolv.conf: the given servers, or the
// host's non-loopback ones (a loopback resolver is not reachable from the
// container's network namespace).
func resolvConf(servers []string) string {
	if len(servers) == 0 {
		data, _ := os.ReadFile("/etc/resolv.conf")
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "nameserver" && !strings.HasPrefix(f[1], "127.") && f[1] != "::1" {
				servers = append(servers, f[1])
			}
		}
	}
	var sb strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&sb, "nameserver %s\n", s)
	}
	return sb.String()
}

func (c *container) restore(st persistedState) {
	c.st = st
	if c.st.Properties == nil {
		c.st.Properties = backend.Properties{}
	}
	c.created = true
}

// teardown undoes everything a (possibly partial) create did. It is
// idempotent: every step tolerates what is already gone.
func (c *container) teardown(ctx context.Context) error {
	c.mu.Lock()
	ports := c.st.Ports
	c.mu.Unlock()
	var errs []error
	if err := c.b.runc.delete(ctx, c.id); err != nil {
		errs = append(errs, err)
	}
	if err := c.b.keepers.Destroy(ctx, c.id); err != nil && !errors.Is(err, backend.ErrContainerNotFound) {
		errs = append(errs, fmt.Errorf("destroy keepers: %w", err))
	}
	if err := c.b.net.down(ctx, c.id, ports); err != nil {
		errs = append(errs, err)
	}
	if err := unmount(c.rootfsDir()); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("remove bundle: %w", err)
	}
	return nil
}

func (c *container) ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.created && !c.destroying
}

func (c *container) props() backend.Properties {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.st.Properties)
}

// Handle returns the container's handle.
func (c *container) Handle() string { return c.handle }

// Properties returns a copy of the properties.
func (c *container) Properties(ctx context.Context) (backend.Properties, error) {
	return c.props(), ctx.Err()
}

// SetProperty adds or replaces a property and persists it.
func (c *container) SetProperty(ctx context.Context, name, value string) error {
	return c.editProperties(ctx, func(p backend.Properties) { p[name] = value })
}

// RemoveProperty deletes a property and persists the change.
func (c *container) RemoveProperty(ctx context.Context, name string) error {
	return c.editProperties(ctx, func(p backend.Properties) { delete(p, name) })
}

func (c *container) editProperties(ctx context.Context, edit func(backend.Properties)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.created || c.destroying {
		return fmt.Errorf("properties of %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	edit(c.st.Properties)
	if err := saveState(c.dir, c.st); err != nil {
		return fmt.Errorf("properties of %q: %w", c.handle, err)
	}
	return nil
}

// Limits returns the limits the container was created with.
func (c *container) Limits(ctx context.Context) (backend.Limits, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Limits, ctx.Err()
}

// Info reports the container's state, network and events.
func (c *container) Info(ctx context.Context) (backend.ContainerInfo, error) {
	if err := ctx.Err(); err != nil {
		return backend.ContainerInfo{}, err
	}
	if !c.ready() {
		return backend.ContainerInfo{}, fmt.Errorf("info %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	kc, err := c.b.keepers.Lookup(ctx, c.id)
	if err != nil {
		return backend.ContainerInfo{}, fmt.Errorf("info %q: %w", c.handle, err)
	}
	kinfo, err := kc.Info(ctx)
	if err != nil {
		return backend.ContainerInfo{}, fmt.Errorf("info %q: %w", c.handle, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	info := backend.ContainerInfo{
		State:               backend.StateActive,
		HostIP:              c.b.opts.HostIP,
		ContainerIP:         c.st.IP,
		MappedPorts:         append([]backend.PortMapping(nil), c.st.Ports...),
		Properties:          maps.Clone(c.st.Properties),
		ProcessIDs:          kinfo.ProcessIDs,
		MemoryLimitEnforced: true,
		Path:                c.rootfsDir(),
	}
	if c.st.Stopped {
		info.State = backend.StateStopped
	}
	if c.b.cgroups.oomKilled(c.id) {
		info.Events = append(info.Events, "Out of memory")
	}
	return info, nil
}

// Metrics reads the container's cgroup counters and disk usage.
func (c *container) Metrics(ctx context.Context) (backend.ContainerMetrics, error) {
	if err := ctx.Err(); err != nil {
		return backend.ContainerMetrics{}, err
	}
	if !c.ready() {
		return backend.ContainerMetrics{}, fmt.Errorf("metrics of %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	m, err := c.b.cgroups.metrics(c.id)
	if err != nil {
		return backend.ContainerMetrics{}, fmt.Errorf("metrics of %q: %w", c.handle, err)
	}
	m.DiskBytesUsed, m.DiskInodesUsed = process.DiskUsage(c.upperDir())
	c.mu.Lock()
	m.Age = time.Since(c.st.CreatedAt)
	c.mu.Unlock()
	return m, nil
}

// Stop signals every process of the container but its init: SIGTERM, then
// SIGKILL after the grace time (kill: SIGKILL at once), and waits until
// they are gone and their keepers have recorded their statuses.
func (c *container) Stop(ctx context.Context, kill bool) error {
	if c.b.isDetached() {
		return fmt.Errorf("stop %q: %w", c.handle, errDetached)
	}
	c.mu.Lock()
	if !c.created || c.destroying {
		c.mu.Unlock()
		return fmt.Errorf("stop %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	c.st.Stopped = true
	if err := saveState(c.dir, c.st); err != nil {
		c.b.logger.Error("persist-container", err)
	}
	c.mu.Unlock()
	if !kill {
		c.signalAll(syscall.SIGTERM)
		if !c.waitEmpty(ctx, c.b.opts.GraceTime) && ctx.Err() != nil {
			return fmt.Errorf("stop %q: %w", c.handle, ctx.Err())
		}
	}
	c.signalAll(syscall.SIGKILL)
	if !c.waitEmpty(ctx, time.Minute) {
		return fmt.Errorf("stop %q: processes still running (%v)", c.handle, ctx.Err())
	}
	kc, err := c.b.keepers.Lookup(ctx, c.id)
	if err != nil {
		return fmt.Errorf("stop %q: %w", c.handle, err)
	}
	// The processes are gone, so every runc exec is exiting on its own:
	// the keepers record the processes' statuses (not a SIGTERM of runc).
	if err := kc.Stop(ctx, false); err != nil {
		return fmt.Errorf("stop %q: %w", c.handle, err)
	}
	return nil
}

// initPid is the host pid of the container's init.
func (c *container) initPid(ctx context.Context) int {
	st, err := c.b.runc.state(ctx, c.id)
	if err != nil {
		return 0
	}
	return st.Pid
}

// signalAll signals every process in the container's cgroup except init.
func (c *container) signalAll(sig syscall.Signal) {
	initPid := c.initPid(context.Background())
	pids, _ := c.b.cgroups.pids(c.id)
	for _, pid := range pids {
		if pid != initPid && initPid != 0 {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// waitEmpty waits until only init is left in the cgroup; false on timeout
// or ctx's end.
func (c *container) waitEmpty(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	initPid := c.initPid(ctx)
	for {
		pids, err := c.b.cgroups.pids(c.id)
		if err != nil || len(pids) == 0 || (len(pids) == 1 && pids[0] == initPid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Run starts a process with `runc exec` under a keeper.
func (c *container) Run(ctx context.Context, spec backend.ProcessSpec, pio backend.ProcessIO) (backend.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.TTY != nil {
		return nil, fmt.Errorf("run in %q: TTY processes are not supported by the runc backend", c.handle)
	}
	id := spec.ID
	if id == "" {
		id = uuid.NewString()
	}
	if id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return nil, fmt.Errorf("run in %q: invalid process id %q", c.handle, id)
	}
	if c.b.isDetached() {
		return nil, fmt.Errorf("run in %q: %w", c.handle, errDetached)
	}
	c.mu.Lock()
	switch {
	case !c.created || c.destroying:
		c.mu.Unlock()
		return nil, fmt.Errorf("run in %q: %w", c.handle, backend.ErrContainerNotFound)
	case c.st.Stopped:
		c.mu.Unlock()
		return nil, fmt.Errorf("run in %q: %w", c.handle, backend.ErrContainerStopped)
	}
	containerEnv := append([]string(nil), c.st.Env...)
	privileged := c.st.Privileged
	c.mu.Unlock()

	u, err := c.user(spec.User)
	if err != nil {
		return nil, fmt.Errorf("run in %q: %w", c.handle, err)
	}
	dir := spec.Dir
	if dir == "" {
		dir = u.home
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(u.home, dir)
	}
	if err := mkdirInRoot(c.rootfsDir(), dir, u.uid, u.gid); err != nil {
		return nil, fmt.Errorf("run in %q: working directory: %w", c.handle, err)
	}
	env := mergeEnv([]string{"PATH=" + pathFor(u.uid), "HOME=" + u.home, "USER=" + u.name}, containerEnv, spec.Env)
	ps := processSpec(spec, u, env, dir, c.caps(privileged))
	specFile := filepath.Join(c.procDir(), id+".json")
	pidFile := filepath.Join(c.procDir(), id+".pid")
	logFile := filepath.Join(c.procDir(), id+".runc.log")
	for _, f := range []string{pidFile, logFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("run in %q: %w", c.handle, err)
		}
	}
	if err := writeJSON(specFile, ps); err != nil {
		return nil, fmt.Errorf("run in %q: %w", c.handle, err)
	}
	kc, err := c.b.keepers.Lookup(ctx, c.id)
	if err != nil {
		return nil, fmt.Errorf("run in %q: %w", c.handle, err)
	}
	args := append(c.b.runc.globalArgs(logFile), "exec", "--detach", "--process", specFile, "--pid-file", pidFile, c.id)
	kp, err := kc.Run(ctx, backend.ProcessSpec{ID: id, Path: c.b.opts.RuncPath, Args: args}, pio)
	if err != nil {
		if msg := lastRuncError(logFile); msg != "" {
			if cause, ok := execNotFound(msg); ok {
				// An *exec.Error is what the Garden server reports as
				// ExecutableNotFoundError, as it does for the process backend.
				return nil, fmt.Errorf("run %s in %q: %w", spec.Path, c.handle, &exec.Error{Name: spec.Path, Err: errors.New(cause)})
			}
			return nil, fmt.Errorf("run %s in %q: %s", spec.Path, c.handle, msg)
		}
		return nil, fmt.Errorf("run %s in %q: %w", spec.Path, c.handle, err)
	}
	p := newProc(c, id, kp)
	return p, nil
}

// Attach reconnects to a process (see backend.Container).
func (c *container) Attach(ctx context.Context, processID string, pio backend.ProcessIO) (backend.Process, error) {
	if !c.ready() {
		return nil, fmt.Errorf("attach %q in %q: %w", processID, c.handle, backend.ErrContainerNotFound)
	}
	kc, err := c.b.keepers.Lookup(ctx, c.id)
	if err != nil {
		return nil, fmt.Errorf("attach %q in %q: %w", processID, c.handle, err)
	}
	kp, err := kc.Attach(ctx, processID, pio)
	if err != nil {
		return nil, fmt.Errorf("attach %q in %q: %w", processID, c.handle, err)
	}
	return newProc(c, processID, kp), nil
}

// user resolves a process's user in the container's passwd and group files.
func (c *container) user(name string) (user, error) {
	root := c.rootfsDir()
	c.mu.Lock()
	if c.st.HostRootfs {
		root = "/" // /etc is the host's
	}
	c.mu.Unlock()
	var passwd, group io.Reader
	pf, err := openInRoot(root, "etc/passwd")
	if err != nil {
		return user{}, fmt.Errorf("read /etc/passwd: %w", err)
	}
	if pf != nil {
		defer pf.Close()
		passwd = pf
	}
	gf, err := openInRoot(root, "etc/group")
	if err != nil {
		return user{}, fmt.Errorf("read /etc/group: %w", err)
	}
	if gf != nil {
		defer gf.Close()
		group = gf
	}
	return resolveUser(name, passwd, group)
}

// mergeEnv concatenates env lists; a later value of a name wins, at the
// position of its first occurrence.
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

// StreamIn extracts a tar stream at a container path, with the keeper's
// tar helper run in the container as spec.User (default root).
func (c *container) StreamIn(ctx context.Context, spec backend.StreamInSpec) error {
	if !c.ready() {
		return fmt.Errorf("stream in to %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	if spec.TarStream == nil {
		return fmt.Errorf("stream in to %q: no tar stream", c.handle)
	}
	if err := c.tarHelper(ctx, spec.User, []string{tarInFlag(), spec.Path}, spec.TarStream, nil); err != nil {
		return fmt.Errorf("stream in to %s in %q: %w", spec.Path, c.handle, err)
	}
	return nil
}

// StreamOut returns a tar stream of a container path, made by the keeper's
// tar helper in the container as spec.User. An error of the helper (such as
// a missing path) is the stream's read error.
func (c *container) StreamOut(ctx context.Context, spec backend.StreamOutSpec) (io.ReadCloser, error) {
	if !c.ready() {
		return nil, fmt.Errorf("stream out of %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	pr, pw := io.Pipe()
	go func() {
		err := c.tarHelper(ctx, spec.User, []string{tarOutFlag(), spec.Path}, nil, pw)
		if err != nil {
			err = fmt.Errorf("stream out %s of %q: %w", spec.Path, c.handle, err)
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}
