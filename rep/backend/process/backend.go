package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"code.cloudfoundry.org/lager/v3"

	"github.com/gavelhq/gavel/rep/backend"
)

var _ backend.Backend = (*Backend)(nil)

// errDetached is returned by the methods that start or stop processes
// after Detach.
var errDetached = errors.New("process backend detached")

// Backend runs containers as plain processes under Options.Root. It is safe
// for concurrent use.
type Backend struct {
	opts   Options
	logger lager.Logger
	// keeperPath is the keeper binary: keeperSelf, or another binary that
	// runs RunKeeper (benchmarks measure the rep's).
	keeperPath string
	ports      *portPool
	cgroups    *cgroups

	// detached is closed by Detach.
	detached   chan struct{}
	detachOnce sync.Once

	mu         sync.Mutex
	containers map[string]*container
}

// New creates a backend over opts.Root, creating the directory if needed, and
// rediscovers the containers a previous backend left there.
func New(opts Options) (*Backend, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Root, 0o755); err != nil {
		return nil, fmt.Errorf("process backend: create root: %w", err)
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("process backend: root: %w", err)
	}
	opts.Root = root
	b := &Backend{
		opts:       opts,
		logger:     opts.Logger.Session("process-backend"),
		keeperPath: keeperSelf,
		ports:      newPortPool(opts.PortRangeStart, opts.PortRangeEnd),
		cgroups:    probeCgroups(opts.CgroupRoot, opts.CgroupParent, opts.DisableCgroups),
		detached:   make(chan struct{}),
		containers: map[string]*container{},
	}
	if opts.KeeperPath != "" {
		if err := checkKeeper(opts.KeeperPath); err != nil {
			return nil, err
		}
		b.keeperPath = opts.KeeperPath
	}
	if !b.cgroups.enabled {
		b.logger.Info("memory-limits-not-enforced", lager.Data{"reason": b.cgroups.reason})
	}
	if err := b.rediscover(); err != nil {
		return nil, err
	}
	return b, nil
}

// Detach lets go of every process as if the backend's OS process had
// exited, stopping none: the backend stops watching them, reading their
// keepers' reports and tailing their output, and writes nothing more under
// Root, so that a new Backend over the same Root adopts the processes and
// reports their exit statuses. Wait on a process of a detached backend never
// returns; Create, Destroy and a container's Run, Attach and Stop fail
// afterwards. Detach is for running successive backends over one Root in
// one OS process (tests); a backend whose OS process exits needs none. It
// is idempotent.
func (b *Backend) Detach() {
	b.detachOnce.Do(func() {
		close(b.detached)
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.containers {
			c.mu.Lock()
			for _, p := range c.procs {
				if p.reports != nil {
					// Unblocks the reaper's read of the keeper's next report.
					_ = p.reports.f.Close()
				}
			}
			c.mu.Unlock()
		}
	})
}

// CgroupStatus reports whether memory limits are enforced and, if not, why.
func (b *Backend) CgroupStatus() (enforced bool, reason string) {
	return b.cgroups.enabled, b.cgroups.reason
}

// Ping checks that the root directory is still usable.
func (b *Backend) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st, err := os.Stat(b.opts.Root)
	if err != nil {
		return fmt.Errorf("process backend: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("process backend: %s is not a directory", b.opts.Root)
	}
	return nil
}

// Capacity reports the configured or detected capacity of the host.
func (b *Backend) Capacity(ctx context.Context) (backend.Capacity, error) {
	c := backend.Capacity{
		MemoryInBytes:        b.opts.MemoryInBytes,
		DiskInBytes:          b.opts.DiskInBytes,
		MaxContainers:        b.opts.MaxContainers,
		MemoryLimitsEnforced: b.cgroups.enabled,
	}
	if c.MemoryInBytes == 0 {
		m, err := hostMemory()
		if err != nil {
			return backend.Capacity{}, fmt.Errorf("process backend: capacity: %w", err)
		}
		c.MemoryInBytes = m
	}
	if c.DiskInBytes == 0 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(b.opts.Root, &st); err != nil {
			return backend.Capacity{}, fmt.Errorf("process backend: capacity: statfs %s: %w", b.opts.Root, err)
		}
		c.DiskInBytes = st.Blocks * uint64(st.Bsize)
	}
	return c, nil
}

func hostMemory() (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse MemTotal: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("MemTotal not found in /proc/meminfo")
}

// Create makes the container directory, allocates host ports and the cgroup,
// and persists the container's state.
func (b *Backend) Create(ctx context.Context, spec backend.ContainerSpec) (backend.Container, error) {
	if err := validHandle(spec.Handle); err != nil {
		return nil, err
	}
	if b.isDetached() {
		return nil, fmt.Errorf("create %q: %w", spec.Handle, errDetached)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if _, ok := b.containers[spec.Handle]; ok {
		b.mu.Unlock()
		return nil, fmt.Errorf("create %q: %w", spec.Handle, backend.ErrHandleExists)
	}
	if uint64(len(b.containers)) >= b.opts.MaxContainers {
		b.mu.Unlock()
		return nil, fmt.Errorf("create %q: container capacity %d reached", spec.Handle, b.opts.MaxContainers)
	}
	c := newContainer(b, spec.Handle)
	b.containers[spec.Handle] = c // reserve the handle while creating
	b.mu.Unlock()

	if err := c.create(spec); err != nil {
		c.cleanup()
		b.mu.Lock()
		delete(b.containers, spec.Handle)
		b.mu.Unlock()
		return nil, fmt.Errorf("create %q: %w", spec.Handle, err)
	}
	return c, nil
}

func validHandle(h string) error {
	if h == "" || h == "." || h == ".." || strings.ContainsAny(h, "/\x00") {
		return fmt.Errorf("invalid container handle %q", h)
	}
	return nil
}

// Destroy kills every process of the container, then removes its cgroup,
// ports and directory.
func (b *Backend) Destroy(ctx context.Context, handle string) error {
	if b.isDetached() {
		return fmt.Errorf("destroy %q: %w", handle, errDetached)
	}
	b.mu.Lock()
	c, ok := b.containers[handle]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("destroy %q: %w", handle, backend.ErrContainerNotFound)
	}
	if err := c.Stop(ctx, true); err != nil {
		return fmt.Errorf("destroy %q: %w", handle, err)
	}
	b.mu.Lock()
	if b.containers[handle] != c {
		b.mu.Unlock()
		return fmt.Errorf("destroy %q: %w", handle, backend.ErrContainerNotFound)
	}
	delete(b.containers, handle)
	b.mu.Unlock()
	if err := c.cleanup(); err != nil {
		return fmt.Errorf("destroy %q: %w", handle, err)
	}
	return nil
}

// Containers lists containers whose properties match filter, sorted by handle.
func (b *Backend) Containers(ctx context.Context, filter backend.Properties) ([]backend.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	all := make([]*container, 0, len(b.containers))
	for _, c := range b.containers {
		all = append(all, c)
	}
	b.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].handle < all[j].handle })
	var out []backend.Container
	for _, c := range all {
		if c.ready() && backend.MatchProperties(c.props(), filter) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Lookup returns one container.
func (b *Backend) Lookup(ctx context.Context, handle string) (backend.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	c, ok := b.containers[handle]
	b.mu.Unlock()
	if !ok || !c.ready() {
		return nil, fmt.Errorf("lookup %q: %w", handle, backend.ErrContainerNotFound)
	}
	return c, nil
}

// rediscover loads every container directory left under Root.
func (b *Backend) rediscover() error {
	entries, err := os.ReadDir(b.opts.Root)
	if err != nil {
		return fmt.Errorf("process backend: read root: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		st, err := loadState(filepath.Join(b.opts.Root, e.Name()))
		if err != nil {
			b.logger.Error("skip-unreadable-container", err, lager.Data{"dir": e.Name()})
			continue
		}
		if st.Handle != e.Name() {
			b.logger.Info("skip-mismatched-container", lager.Data{"dir": e.Name(), "handle": st.Handle})
			continue
		}
		c := newContainer(b, st.Handle)
		c.restore(st)
		b.containers[st.Handle] = c
		b.logger.Info("rediscovered-container", lager.Data{"handle": st.Handle, "live-processes": len(c.procs)})
	}
	return nil
}

func (b *Backend) isDetached() bool {
	select {
	case <-b.detached:
		return true
	default:
		return false
	}
}
