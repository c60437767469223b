package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/gavelhq/gavel/rep/backend"
)

var _ backend.Container = (*container)(nil)

// container is one directory with its processes. mu guards every field below it.
type container struct {
	b      *Backend
	handle string
	dir    string // <Root>/<handle>
	rootfs string // <dir>/rootfs

	mu         sync.Mutex
	created    bool // false while Create runs
	destroyed  bool
	stopped    bool
	properties backend.Properties
	env        []string
	limits     backend.Limits
	ports      []backend.PortMapping
	createdAt  time.Time
	procs      map[string]*process
}

func newContainer(b *Backend, handle string) *container {
	dir := filepath.Join(b.opts.Root, handle)
	return &container{
		b:      b,
		handle: handle,
		dir:    dir,
		rootfs: filepath.Join(dir, "rootfs"),
		procs:  map[string]*process{},
	}
}

func (c *container) create(spec backend.ContainerSpec) error {
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	for _, d := range []string{c.rootfs, filepath.Join(c.rootfs, "tmp"), filepath.Join(c.dir, "processes")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
	}
	var ports []backend.PortMapping
	for _, n := range spec.NetIn {
		host := n.HostPort
		if host == 0 {
			p, err := c.b.ports.acquire()
			if err != nil {
				c.releasePorts(ports)
				return err
			}
			host = p
		} else {
			c.b.ports.claim(host)
		}
		cport := n.ContainerPort
		if cport == 0 {
			cport = host
		}
		ports = append(ports, backend.PortMapping{HostPort: host, ContainerPort: cport})
	}
	if err := c.b.cgroups.create(c.handle, spec.Limits.MemoryInBytes); err != nil {
		c.releasePorts(ports)
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.properties = maps.Clone(spec.Properties)
	if c.properties == nil {
		c.properties = backend.Properties{}
	}
	c.env = append([]string(nil), spec.Env...)
	c.limits = spec.Limits
	c.ports = ports
	c.createdAt = time.Now()
	if err := c.persistLocked(); err != nil {
		c.releasePorts(ports)
		c.ports = nil
		return err
	}
	c.created = true
	return nil
}

func (c *container) restore(st persistedState) {
	c.properties = st.Properties
	if c.properties == nil {
		c.properties = backend.Properties{}
	}
	c.env = st.Env
	c.limits = st.Limits
	c.ports = st.Ports
	c.stopped = st.Stopped
	c.createdAt = st.CreatedAt
	c.created = true
	for _, pm := range st.Ports {
		c.b.ports.claim(pm.HostPort)
	}
	for _, pp := range st.Processes {
		p := newProcess(c, pp.ID)
		p.pid, p.pgid, p.startTime = pp.Pid, pp.Pgid, pp.StartTime
		p.keeperPid, p.keeperStartTime = pp.KeeperPid, pp.KeeperStartTime
		status, ok := p.recorded()
		if !ok && !alive(pp.Pid, pp.StartTime) && !p.keeperAlive() {
			// The keeper writes the file before it exits: one that exited
			// since the first look has written it.
			if status, ok = p.recorded(); !ok {
				continue // gone without a recorded status
			}
		}
		if ok {
			// Exited while no backend ran: kept for the next Attach.
			c.procs[pp.ID] = p
			p.finish(status, nil)
			continue
		}
		c.procs[pp.ID] = p
		go p.watch(c.b.opts.PollInterval)
	}
	if err := c.persistLocked(); err != nil {
		c.b.logger.Error("persist-rediscovered-container", err)
	}
}

func (c *container) releasePorts(ports []backend.PortMapping) {
	for _, pm := range ports {
		c.b.ports.release(pm.HostPort)
	}
}

// cleanup releases everything the container holds; its processes must be dead.
func (c *container) cleanup() error {
	c.mu.Lock()
	c.destroyed = true
	ports := c.ports
	c.ports = nil
	c.mu.Unlock()
	c.releasePorts(ports)
	var errs []error
	if err := c.b.cgroups.remove(c.handle); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove directory: %w", err))
	}
	return errors.Join(errs...)
}

func (c *container) ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.created && !c.destroyed
}

func (c *container) props() backend.Properties {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.properties)
}

// persistLocked writes state.json; c.mu must be held.
func (c *container) persistLocked() error {
	st := persistedState{
		Handle:     c.handle,
		Properties: c.properties,
		Env:        c.env,
		Limits:     c.limits,
		Ports:      c.ports,
		Stopped:    c.stopped,
		CreatedAt:  c.createdAt,
	}
	for _, p := range c.procs {
		if p.listed() {
			st.Processes = append(st.Processes, persistedProcess{
				ID: p.id, Pid: p.pid, Pgid: p.pgid, StartTime: p.startTime,
				KeeperPid: p.keeperPid, KeeperStartTime: p.keeperStartTime,
			})
		}
	}
	sort.Slice(st.Processes, func(i, j int) bool { return st.Processes[i].ID < st.Processes[j].ID })
	return saveState(c.dir, st)
}

func (c *container) persist() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return
	}
	if err := c.persistLocked(); err != nil {
		c.b.logger.Error("persist-container", err)
	}
}

// Handle returns the container's handle.
func (c *container) Handle() string { return c.handle }

// Properties returns a copy of the properties.
func (c *container) Properties(ctx context.Context) (backend.Properties, error) {
	return c.props(), ctx.Err()
}

// Info reports the container's state and network.
func (c *container) Info(ctx context.Context) (backend.ContainerInfo, error) {
	if err := ctx.Err(); err != nil {
		return backend.ContainerInfo{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return backend.ContainerInfo{}, fmt.Errorf("info %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	info := backend.ContainerInfo{
		State:               backend.StateActive,
		HostIP:              c.b.opts.HostIP,
		ContainerIP:         c.b.opts.HostIP,
		SharedHostNetwork:   true,
		MappedPorts:         append([]backend.PortMapping(nil), c.ports...),
		Properties:          maps.Clone(c.properties),
		MemoryLimitEnforced: c.b.cgroups.enabled,
		Path:                c.dir,
	}
	if c.stopped {
		info.State = backend.StateStopped
	}
	for id, p := range c.procs {
		if p.listed() {
			info.ProcessIDs = append(info.ProcessIDs, id)
		}
	}
	sort.Strings(info.ProcessIDs)
	if c.b.cgroups.oomKilled(c.handle) {
		info.Events = append(info.Events, "Out of memory")
	}
	return info, nil
}

// Stop signals every process group, escalating to SIGKILL after the grace
// time, and waits for them to exit.
func (c *container) Stop(ctx context.Context, kill bool) error {
	if c.b.isDetached() {
		return fmt.Errorf("stop %q: %w", c.handle, errDetached)
	}
	c.mu.Lock()
	c.stopped = true
	var live []*process
	for _, p := range c.procs {
		if !p.exited() {
			live = append(live, p)
		}
	}
	if !c.destroyed {
		if err := c.persistLocked(); err != nil {
			c.b.logger.Error("persist-container", err)
		}
	}
	c.mu.Unlock()

	sig := backend.SignalTerminate
	if kill {
		sig = backend.SignalKill
	}
	for _, p := range live {
		_ = p.Signal(sig)
	}
	if !kill {
		grace := time.NewTimer(c.b.opts.GraceTime)
		defer grace.Stop()
		if !waitAll(ctx, live, grace.C) {
			if ctx.Err() != nil {
				return fmt.Errorf("stop %q: %w", c.handle, ctx.Err())
			}
			for _, p := range live {
				_ = p.Signal(backend.SignalKill)
			}
		}
	}
	if !waitAll(ctx, live, nil) {
		return fmt.Errorf("stop %q: %w", c.handle, ctx.Err())
	}
	return nil
}

// waitAll waits for every process to exit; false when ctx or timeout fired first.
func waitAll(ctx context.Context, procs []*process, timeout <-chan time.Time) bool {
	for _, p := range procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			return false
		case <-timeout:
			return false
		}
	}
	return true
}

// Run starts a process in its own process group.
func (c *container) Run(ctx context.Context, spec backend.ProcessSpec, pio backend.ProcessIO) (backend.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.TTY != nil {
		// Refused rather than run without a terminal (as the runc backend
		// does): a client asking for one expects a pty and SetTTY.
		return nil, fmt.Errorf("run in %q: TTY processes are not supported by the process backend", c.handle)
	}
	id := spec.ID
	if id == "" {
		id = uuid.NewString()
	}
	if err := validHandle(id); err != nil {
		return nil, fmt.Errorf("run: invalid process id: %w", err)
	}
	if c.b.isDetached() {
		return nil, fmt.Errorf("run in %q: %w", c.handle, errDetached)
	}
	c.mu.Lock()
	switch {
	case c.destroyed:
		c.mu.Unlock()
		return nil, fmt.Errorf("run in %q: %w", c.handle, backend.ErrContainerNotFound)
	case c.stopped:
		c.mu.Unlock()
		return nil, fmt.Errorf("run in %q: %w", c.handle, backend.ErrContainerStopped)
	}
	if _, dup := c.procs[id]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("run in %q: process %q already exists", c.handle, id)
	}
	env := append([]string(nil), c.env...)
	c.mu.Unlock()

	return c.spawn(ctx, id, spec, env, pio)
}

// Attach tails the output of a process from now on and reports its exit.
func (c *container) Attach(ctx context.Context, processID string, pio backend.ProcessIO) (backend.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.b.isDetached() {
		return nil, fmt.Errorf("attach %q in %q: %w", processID, c.handle, errDetached)
	}
	c.mu.Lock()
	p, ok := c.procs[processID]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("attach %q in %q: %w", processID, c.handle, backend.ErrProcessNotFound)
	}
	return p.attach(pio, true)
}

// path maps a container path into the container's rootfs directory.
func (c *container) path(p string) string {
	return filepath.Join(c.rootfs, filepath.Clean("/"+p))
}

// StreamIn extracts a tar stream at a container path.
func (c *container) StreamIn(ctx context.Context, spec backend.StreamInSpec) error {
	if !c.ready() {
		return fmt.Errorf("stream in to %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	if err := extractTar(ctx, spec.TarStream, c.path(spec.Path)); err != nil {
		return fmt.Errorf("stream in to %s: %w", spec.Path, err)
	}
	return nil
}

// StreamOut returns a tar stream of a container path.
func (c *container) StreamOut(ctx context.Context, spec backend.StreamOutSpec) (io.ReadCloser, error) {
	if !c.ready() {
		return nil, fmt.Errorf("stream out of %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	src := c.path(spec.Path)
	if strings.HasSuffix(spec.Path, "/") {
		// A source ending in "/" streams the directory's contents as
		// "./...", as guardian (and the runc backend) do; without it the
		// entries are named after the source's base name.
		src += "/"
	}
	if _, err := os.Lstat(src); err != nil {
		return nil, fmt.Errorf("stream out %s: %w", spec.Path, err)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeTar(ctx, pw, src))
	}()
	return pr, nil
}
