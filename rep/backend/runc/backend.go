package runc

import (
	"bufio"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
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
	"github.com/gavelhq/gavel/rep/backend/process"
)

var _ backend.Backend = (*Backend)(nil)

// ErrBeingDestroyed is returned by Destroy while another Destroy of the
// same container runs (Garden's exact text); a failed Destroy can be
// retried once it has returned.
var ErrBeingDestroyed = errors.New("container already being destroyed")

// errDetached is returned by the methods that start or stop processes
// after Detach.
var errDetached = errors.New("runc backend detached")

// Backend runs containers with runc. It is safe for concurrent use.
type Backend struct {
	opts    Options
	logger  lager.Logger
	runc    runtime
	net     *network
	cgroups *cgroupFS
	caps    capabilitySets
	// keepers runs each `runc exec` under a keeper and allocates host
	// ports: one process-backend container per runc container, same id.
	keepers *process.Backend
	// hostLower is the lower layer of host-userland containers.
	hostLower string

	detached   chan struct{}
	detachOnce sync.Once

	mu         sync.Mutex
	containers map[string]*container // by handle
}

// Directories below Options.Root.
const (
	containersDir = "containers" // one bundle directory per container
	keepersDir    = "keepers"    // the process backend's root
	runcDir       = "runc"       // runc --root
	hostLowerDir  = "host-userland"
)

// New checks the host (runc, CNI plugins, cgroups, keeper), creates the
// depot under opts.Root and rediscovers the containers a previous backend
// left there.
func New(ctx context.Context, opts Options) (*Backend, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("runc backend: must run as root")
	}
	if err := checkStatic(opts.KeeperPath); err != nil {
		return nil, err
	}
	for _, d := range []string{containersDir, keepersDir, runcDir, "cni"} {
		if err := os.MkdirAll(filepath.Join(opts.Root, d), 0o700); err != nil {
			return nil, fmt.Errorf("runc backend: create depot: %w", err)
		}
	}
	cg, err := detectCgroups(opts.CgroupRoot, opts.CgroupParent)
	if err != nil {
		return nil, fmt.Errorf("runc backend: %w", err)
	}
	caps, err := readCapabilities()
	if err != nil {
		return nil, fmt.Errorf("runc backend: %w", err)
	}
	nw, err := newNetwork(opts)
	if err != nil {
		return nil, fmt.Errorf("runc backend: %w", err)
	}
	keeperPath := opts.KeeperPath
	if exe, err := os.Executable(); err == nil && exe == keeperPath {
		keeperPath = "" // this binary: re-executed through /proc/self/exe
	}
	keepers, err := process.New(process.Options{
		Root:           filepath.Join(opts.Root, keepersDir),
		PortRangeStart: opts.PortRangeStart,
		PortRangeEnd:   opts.PortRangeEnd,
		HostIP:         opts.HostIP,
		GraceTime:      opts.GraceTime,
		MaxContainers:  opts.MaxContainers,
		DisableCgroups: true, // runc exec puts each process in the container's cgroup
		KeeperPath:     keeperPath,
		PollInterval:   opts.PollInterval,
		Logger:         opts.Logger,
		LaunchPidFile: func(id, processID string) string {
			return filepath.Join(opts.Root, containersDir, id, "processes", processID+".pid")
		},
	})
	if err != nil {
		return nil, fmt.Errorf("runc backend: %w", err)
	}
	b := &Backend{
		opts:       opts,
		logger:     opts.Logger.Session("runc-backend"),
		runc:       runtime{path: opts.RuncPath, root: filepath.Join(opts.Root, runcDir)},
		net:        nw,
		cgroups:    cg,
		caps:       caps,
		keepers:    keepers,
		detached:   make(chan struct{}),
		containers: map[string]*container{},
	}
	if opts.HostUserlandRootfs != "" {
		b.hostLower = filepath.Join(opts.Root, hostLowerDir)
		if err := buildHostUserlandSkeleton(b.hostLower); err != nil {
			return nil, fmt.Errorf("runc backend: %w", err)
		}
	}
	if err := b.rediscover(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// checkStatic refuses a keeper that is dynamically linked: it runs as the
// init of containers whose rootfs may have no C library.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("runc backend: keeper %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("runc backend: keeper %s is dynamically linked; it also runs inside containers as their init, "+
				"so build it statically: CGO_ENABLED=0 go build ./cmd/gavel-keeper", path)
		}
	}
	return nil
}

// Detach lets go of every process as if the backend's OS process had
// exited (see process.Backend.Detach): a new Backend over the same Root
// adopts the containers and processes. For tests; idempotent.
func (b *Backend) Detach() {
	b.detachOnce.Do(func() {
		close(b.detached)
		b.keepers.Detach()
	})
}

func (b *Backend) isDetached() bool {
	select {
	case <-b.detached:
		return true
	default:
		return false
	}
}

// RemoveNetwork deletes the backend's bridge. Containers must be destroyed
// first; for tearing a whole cell (or a test) down.
func (b *Backend) RemoveNetwork(ctx context.Context) error {
	return b.net.removeBridge(ctx)
}

// Ping checks that runc answers and the depot is usable.
func (b *Backend) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(b.opts.Root, containersDir)); err != nil {
		return fmt.Errorf("runc backend: %w", err)
	}
	if err := b.runc.command(ctx, "list", "--quiet"); err != nil {
		return fmt.Errorf("runc backend: %w", err)
	}
	return nil
}

// Capacity reports the configured or detected capacity of the host.
func (b *Backend) Capacity(ctx context.Context) (backend.Capacity, error) {
	c := backend.Capacity{
		MemoryInBytes:        b.opts.MemoryInBytes,
		DiskInBytes:          b.opts.DiskInBytes,
		MaxContainers:        b.opts.MaxContainers,
		MemoryLimitsEnforced: true,
	}
	if c.MemoryInBytes == 0 {
		m, err := hostMemory()
		if err != nil {
			return backend.Capacity{}, fmt.Errorf("runc backend: capacity: %w", err)
		}
		c.MemoryInBytes = m
	}
	if c.DiskInBytes == 0 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(b.opts.Root, &st); err != nil {
			return backend.Capacity{}, fmt.Errorf("runc backend: capacity: statfs %s: %w", b.opts.Root, err)
		}
		c.DiskInBytes = st.Blocks * uint64(st.Bsize)
	}
	return c, ctx.Err()
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

// containerID is the runc id (and directory name) of a handle: the handle
// itself when runc accepts it and it is short, otherwise a hash.
func containerID(handle string) string {
	if len(handle) <= 64 && runcIDPattern.MatchString(handle) && handle != "." && handle != ".." {
		return handle
	}
	sum := sha256.Sum256([]byte(handle))
	return "h-" + hex.EncodeToString(sum[:16])
}

// Create builds the container: overlay rootfs, network namespace on the
// bridge with its port mappings, OCI bundle, then `runc run -d` of the
// init. Anything done is undone when a step fails.
func (b *Backend) Create(ctx context.Context, spec backend.ContainerSpec) (backend.Container, error) {
	if spec.Handle == "" || strings.ContainsRune(spec.Handle, 0) {
		return nil, fmt.Errorf("create: invalid container handle %q", spec.Handle)
	}
	if b.isDetached() {
		return nil, fmt.Errorf("create %q: %w", spec.Handle, errDetached)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rootfs, err := b.resolveImage(ctx, spec.Image)
	if err != nil {
		return nil, fmt.Errorf("create %q: %w", spec.Handle, err)
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
	id := containerID(spec.Handle)
	for _, other := range b.containers {
		if other.id == id {
			b.mu.Unlock()
			return nil, fmt.Errorf("create %q: container id %s: %w", spec.Handle, id, backend.ErrHandleExists)
		}
	}
	c := newContainer(b, spec.Handle, id)
	b.containers[spec.Handle] = c // reserve the handle while creating
	b.mu.Unlock()

	if err := c.create(ctx, spec, rootfs); err != nil {
		if cerr := c.teardown(context.WithoutCancel(ctx)); cerr != nil {
			b.logger.Error("undo-failed-create", cerr, lager.Data{"handle": spec.Handle})
		}
		b.mu.Lock()
		delete(b.containers, spec.Handle)
		b.mu.Unlock()
		return nil, fmt.Errorf("create %q: %w", spec.Handle, err)
	}
	return c, nil
}

// resolvedRootfs is a preloaded rootfs: the lower layer of the overlay.
type resolvedRootfs struct {
	name  string
	lower string
	host  bool     // host userland: bind-mount the host's directories
	env   []string // an image's env, before the container's
}

// resolveImage maps an image URI to a provided rootfs, or to a local
// image unpacked into the image cache (Root/images; never evicted).
func (b *Backend) resolveImage(ctx context.Context, uri string) (resolvedRootfs, error) {
	name := b.opts.DefaultRootfs
	switch {
	case uri == "":
		if name == "" {
			return resolvedRootfs{}, fmt.Errorf("no image given and no default rootfs; this cell provides: %s", b.providedList())
		}
	case strings.HasPrefix(uri, PreloadedScheme):
		name = strings.TrimPrefix(uri, PreloadedScheme)
	case strings.HasPrefix(uri, DockerScheme), strings.HasPrefix(uri, OCIScheme):
		dir, env, err := b.unpackImage(ctx, uri)
		if err != nil {
			return resolvedRootfs{}, err
		}
		return resolvedRootfs{name: uri, lower: dir, env: env}, nil
	default:
		return resolvedRootfs{}, fmt.Errorf("image %s: unknown scheme; this cell provides: %s", uri, b.providedList())
	}
	if name == b.opts.HostUserlandRootfs && name != "" {
		return resolvedRootfs{name: name, lower: b.hostLower, host: true}, nil
	}
	dir, ok := b.opts.Rootfses[name]
	if !ok {
		return resolvedRootfs{}, fmt.Errorf("rootfs %s%s: not provided by this cell; it provides: %s", PreloadedScheme, name, b.providedList())
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return resolvedRootfs{}, fmt.Errorf("rootfs %s: %w", name, err)
	}
	return resolvedRootfs{name: name, lower: abs}, nil
}

// providedList lists the rootfs URIs this backend runs.
func (b *Backend) providedList() string {
	names := b.opts.rootfsNames()
	if len(names) == 0 {
		return "(none)"
	}
	for i, n := range names {
		names[i] = PreloadedScheme + n
	}
	return strings.Join(names, ", ") + " (and local images: " + OCIScheme + "/PATH, " + DockerScheme + "/PATH.tar)"
}

// RootfsProviders lists the rootfs URIs this backend runs, for the cell's
// presence.
func (b *Backend) RootfsProviders() []string {
	names := b.opts.rootfsNames()
	for i, n := range names {
		names[i] = PreloadedScheme + n
	}
	return names
}

// Destroy kills every process of the container and releases everything it
// holds: runc container and cgroups, keepers, network (CNI DEL: veth,
// iptables rules, IP lease; network namespace), overlay mount and depot
// directory. A failed Destroy can be retried.
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
	c.mu.Lock()
	switch {
	case !c.created:
		c.mu.Unlock()
		return fmt.Errorf("destroy %q: %w", handle, backend.ErrContainerNotFound)
	case c.tearingDown:
		c.mu.Unlock()
		return fmt.Errorf("destroy %q: %w", handle, ErrBeingDestroyed)
	}
	c.destroying = true
	c.tearingDown = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.tearingDown = false
		c.mu.Unlock()
	}()
	if err := c.teardown(ctx); err != nil {
		return fmt.Errorf("destroy %q: %w", handle, err)
	}
	b.mu.Lock()
	if b.containers[handle] == c {
		delete(b.containers, handle)
	}
	b.mu.Unlock()
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

// rediscover loads every container left in the depot. One whose runc
// container is gone (the host rebooted) is torn down.
func (b *Backend) rediscover(ctx context.Context) error {
	dir := filepath.Join(b.opts.Root, containersDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("runc backend: read depot: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		st, err := loadState(filepath.Join(dir, e.Name()))
		if err != nil || st.ID != e.Name() {
			// A create that did not finish: undo what it did.
			c := newContainer(b, e.Name(), e.Name())
			b.logger.Info("remove-incomplete-container", lager.Data{"dir": e.Name(), "error": fmt.Sprint(err)})
			if err := c.teardown(ctx); err != nil {
				b.logger.Error("remove-incomplete-container-failed", err, lager.Data{"dir": e.Name()})
			}
			continue
		}
		c := newContainer(b, st.Handle, st.ID)
		c.restore(st)
		if _, err := b.runc.state(ctx, st.ID); errors.Is(err, errNoContainer) {
			b.logger.Info("remove-vanished-container", lager.Data{"handle": st.Handle})
			if err := c.teardown(ctx); err != nil {
				b.logger.Error("remove-vanished-container-failed", err, lager.Data{"handle": st.Handle})
			}
			continue
		}
		b.containers[st.Handle] = c
		b.logger.Info("rediscovered-container", lager.Data{"handle": st.Handle})
	}
	return nil
}
