package sim

import (
	"archive/tar"
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"

	"github.com/gavelhq/gavel/rep/backend"
)

// Defaults for Options.
const (
	// DefaultMemoryInBytes is the simulated host memory (16 GiB).
	DefaultMemoryInBytes = 16 << 30
	// DefaultDiskInBytes is the simulated host disk (100 GiB).
	DefaultDiskInBytes = 100 << 30
	// DefaultMaxContainers is the simulated container capacity.
	DefaultMaxContainers = 250
	// DefaultCrashWindow is the time within which a crashing process crashes.
	DefaultCrashWindow = 10 * time.Second
	// DefaultHostIP is the IP reported in ContainerInfo.
	DefaultHostIP = "10.0.0.1"
	// DefaultFirstHostPort is the first simulated host port.
	DefaultFirstHostPort = 60000
)

// Options configure a simulated backend.
type Options struct {
	// Clock drives every timer; default the real clock.
	Clock clock.Clock
	// StartDelay is the time from Run until the container passes health probes.
	StartDelay time.Duration
	// RunDuration is how long a process runs before exiting 0; 0 means forever.
	RunDuration time.Duration
	// CrashRate is the probability (0..1) that a process crashes with status 1.
	CrashRate float64
	// CrashWindow bounds when a crashing process crashes; default 10 s.
	CrashWindow time.Duration
	// Seed seeds the crash draws.
	Seed uint64
	// Capacity is the simulated host capacity; zero fields take the defaults.
	Capacity backend.Capacity
	// HostIP is the simulated host IP; default 10.0.0.1.
	HostIP string
}

var _ backend.Backend = (*Backend)(nil)

// Backend holds simulated containers. It is safe for concurrent use.
type Backend struct {
	opts Options

	mu         sync.Mutex
	rng        *rand.Rand
	containers map[string]*container
	nextPort   uint32
	nextProc   uint64
	timers     timerHeap
	running    bool // the timer goroutine is running
	wake       chan struct{}
}

// New creates a simulated backend.
func New(opts Options) *Backend {
	if opts.Clock == nil {
		opts.Clock = clock.NewClock()
	}
	if opts.CrashWindow <= 0 {
		opts.CrashWindow = DefaultCrashWindow
	}
	if opts.HostIP == "" {
		opts.HostIP = DefaultHostIP
	}
	if opts.Capacity.MemoryInBytes == 0 {
		opts.Capacity.MemoryInBytes = DefaultMemoryInBytes
	}
	if opts.Capacity.DiskInBytes == 0 {
		opts.Capacity.DiskInBytes = DefaultDiskInBytes
	}
	if opts.Capacity.MaxContainers == 0 {
		opts.Capacity.MaxContainers = DefaultMaxContainers
	}
	opts.Capacity.MemoryLimitsEnforced = true
	return &Backend{
		opts:       opts,
		rng:        rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		containers: map[string]*container{},
		nextPort:   DefaultFirstHostPort,
		wake:       make(chan struct{}, 1),
	}
}

// Ping always succeeds.
func (b *Backend) Ping(ctx context.Context) error { return ctx.Err() }

// Capacity returns the configured capacity.
func (b *Backend) Capacity(ctx context.Context) (backend.Capacity, error) {
	return b.opts.Capacity, ctx.Err()
}

// Len returns the number of containers.
func (b *Backend) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.containers)
}

// Create records a container and assigns simulated host ports.
func (b *Backend) Create(ctx context.Context, spec backend.ContainerSpec) (backend.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.Handle == "" {
		return nil, errors.New("create: empty handle")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.containers[spec.Handle]; ok {
		return nil, fmt.Errorf("create %q: %w", spec.Handle, backend.ErrHandleExists)
	}
	if uint64(len(b.containers)) >= b.opts.Capacity.MaxContainers {
		return nil, fmt.Errorf("create %q: container capacity %d reached", spec.Handle, b.opts.Capacity.MaxContainers)
	}
	c := &container{b: b, handle: spec.Handle, properties: spec.Properties} // kept, never changed (see ContainerSpec.Properties)
	for _, n := range spec.NetIn {
		host := n.HostPort
		if host == 0 {
			host = b.nextPort
			b.nextPort++
			if b.nextPort > 65535 {
				b.nextPort = DefaultFirstHostPort
			}
		}
		c.ports = append(c.ports, backend.PortMapping{HostPort: host, ContainerPort: n.ContainerPort})
	}
	b.containers[spec.Handle] = c
	return c, nil
}

// Destroy kills the container's processes and forgets it.
func (b *Backend) Destroy(ctx context.Context, handle string) error {
	b.mu.Lock()
	c, ok := b.containers[handle]
	delete(b.containers, handle)
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("destroy %q: %w", handle, backend.ErrContainerNotFound)
	}
	return c.Stop(ctx, true)
}

// Containers lists containers matching filter, sorted by handle.
func (b *Backend) Containers(ctx context.Context, filter backend.Properties) ([]backend.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	var out []*container
	for _, c := range b.containers {
		if backend.MatchProperties(c.properties, filter) {
			out = append(out, c)
		}
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].handle < out[j].handle })
	list := make([]backend.Container, len(out))
	for i, c := range out {
		list[i] = c
	}
	return list, nil
}

// Lookup returns one container.
func (b *Backend) Lookup(ctx context.Context, handle string) (backend.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.containers[handle]
	if !ok {
		return nil, fmt.Errorf("lookup %q: %w", handle, backend.ErrContainerNotFound)
	}
	return c, nil
}

// schedule arranges for p to exit with status at when; b.mu must be held.
func (b *Backend) scheduleLocked(p *process, when time.Time, status int) {
	heap.Push(&b.timers, &timer{when: when, p: p, status: status})
	if !b.running {
		b.running = true
		go b.runTimers()
		return
	}
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Settled says whether no scheduled exit is pending: every crash and run
// duration already fired (the timer goroutine has finished).
func (b *Backend) Settled() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.running
}

// runTimers fires due timers; it exits when the heap is empty.
func (b *Backend) runTimers() {
	for {
		b.mu.Lock()
		now := b.opts.Clock.Now()
		var due []*timer
		for b.timers.Len() > 0 && !b.timers[0].when.After(now) {
			due = append(due, heap.Pop(&b.timers).(*timer))
		}
		if len(due) == 0 && b.timers.Len() == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		var wait time.Duration
		if b.timers.Len() > 0 {
			wait = b.timers[0].when.Sub(now)
		}
		b.mu.Unlock()
		for _, t := range due {
			t.p.exit(t.status)
		}
		if len(due) > 0 {
			continue
		}
		tm := b.opts.Clock.NewTimer(wait)
		select {
		case <-tm.C():
		case <-b.wake:
			tm.Stop()
		}
	}
}

type timer struct {
	when   time.Time
	p      *process
	status int
}

type timerHeap []*timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when.Before(h[j].when) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(*timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

var (
	_ backend.Container    = (*container)(nil)
	_ backend.Prober       = (*container)(nil)
	_ backend.ExitNotifier = (*process)(nil)
)

// container is a simulated container; b.mu guards its mutable fields.
type container struct {
	b          *Backend
	handle     string
	properties backend.Properties
	ports      []backend.PortMapping
	stopped    bool
	procs      []*process
}

// Handle returns the handle.
func (c *container) Handle() string { return c.handle }

// Properties returns a copy of the properties.
func (c *container) Properties(ctx context.Context) (backend.Properties, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	return maps.Clone(c.properties), ctx.Err()
}

// Info reports the simulated state.
func (c *container) Info(ctx context.Context) (backend.ContainerInfo, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	info := backend.ContainerInfo{
		State:               backend.StateActive,
		HostIP:              c.b.opts.HostIP,
		ContainerIP:         c.b.opts.HostIP,
		MappedPorts:         append([]backend.PortMapping(nil), c.ports...),
		Properties:          c.properties, // shared: no container's properties ever change
		MemoryLimitEnforced: true,
	}
	if c.stopped {
		info.State = backend.StateStopped
	}
	for _, p := range c.procs {
		if !p.exited() {
			info.ProcessIDs = append(info.ProcessIDs, p.id)
		}
	}
	return info, ctx.Err()
}

// Run starts a simulated process.
func (c *container) Run(ctx context.Context, spec backend.ProcessSpec, _ backend.ProcessIO) (backend.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.stopped {
		return nil, fmt.Errorf("run in %q: %w", c.handle, backend.ErrContainerStopped)
	}
	b.nextProc++
	id := spec.ID
	if id == "" {
		id = "sim-" + strconv.FormatUint(b.nextProc, 10)
	}
	now := b.opts.Clock.Now()
	p := &process{c: c, id: id, healthyAt: now.Add(b.opts.StartDelay), done: make(chan struct{})}
	// Drop exited processes so a long-lived container does not grow.
	live := c.procs[:0]
	for _, old := range c.procs {
		if !old.exited() {
			live = append(live, old)
		}
	}
	c.procs = append(live, p)
	switch {
	case b.opts.CrashRate > 0 && b.rng.Float64() < b.opts.CrashRate:
		at := time.Duration(b.rng.Int64N(int64(b.opts.CrashWindow)) + 1)
		b.scheduleLocked(p, now.Add(at), 1)
	case b.opts.RunDuration > 0:
		b.scheduleLocked(p, now.Add(b.opts.RunDuration), 0)
	}
	return p, nil
}

// Attach returns a running process.
func (c *container) Attach(ctx context.Context, id string, _ backend.ProcessIO) (backend.Process, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	for _, p := range c.procs {
		if p.id == id {
			return p, ctx.Err()
		}
	}
	return nil, fmt.Errorf("attach %q: %w", id, backend.ErrProcessNotFound)
}

// Probe passes once a live process has been running for StartDelay.
func (c *container) Probe(ctx context.Context, _ backend.ProbeSpec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	now := c.b.opts.Clock.Now()
	for _, p := range c.procs {
		if !p.exited() && !now.Before(p.healthyAt) {
			return nil
		}
	}
	return errors.New("connection refused")
}

// StreamIn drains the stream; file contents are not simulated.
func (c *container) StreamIn(ctx context.Context, spec backend.StreamInSpec) error {
	if spec.TarStream != nil {
		if _, err := io.Copy(io.Discard, spec.TarStream); err != nil {
			return fmt.Errorf("stream in: %w", err)
		}
	}
	return ctx.Err()
}

// StreamOut returns a tar holding one empty file named after the path.
func (c *container) StreamOut(ctx context.Context, spec backend.StreamOutSpec) (io.ReadCloser, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "file", Typeflag: tar.TypeReg, Mode: 0o644})
	_ = tw.Close()
	return io.NopCloser(&buf), ctx.Err()
}

// Stop ends every process at once (a simulated process honours SIGTERM).
func (c *container) Stop(ctx context.Context, kill bool) error {
	c.b.mu.Lock()
	c.stopped = true
	procs := append([]*process(nil), c.procs...)
	c.b.mu.Unlock()
	status := 143
	if kill {
		status = 137
	}
	for _, p := range procs {
		p.exit(status)
	}
	return ctx.Err()
}

// process is a simulated process. It holds no goroutine: its exit is fired
// by the backend's one timer goroutine (run duration, crash) or by whoever
// stops it, and supervisors learn of it through OnExit.
type process struct {
	c         *container
	id        string
	healthyAt time.Time
	done      chan struct{}

	mu       sync.Mutex // guards the fields below
	exitedAt bool
	status   int
	onExit   []func(status int, err error)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exit ends the process with status (the first call wins) and then calls
// the OnExit callbacks on this goroutine.
func (p *process) exit(status int) {
	p.mu.Lock()
	if p.exitedAt {
		p.mu.Unlock()
		return
	}
	p.exitedAt, p.status = true, status
	fns := p.onExit
	p.onExit = nil
	close(p.done)
	p.mu.Unlock()
	for _, fn := range fns {
		fn(status, nil)
	}
}

// OnExit calls fn once the process has exited; at once if it has.
func (p *process) OnExit(fn func(status int, err error)) {
	p.mu.Lock()
	if !p.exitedAt {
		p.onExit = append(p.onExit, fn)
		p.mu.Unlock()
		return
	}
	status := p.status
	p.mu.Unlock()
	fn(status, nil)
}

// ID returns the process ID.
func (p *process) ID() string { return p.id }

// Wait blocks until the simulated exit.
func (p *process) Wait() (int, error) {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, nil
}

// Signal ends the process: 143 for terminate, 137 for kill.
func (p *process) Signal(sig backend.Signal) error {
	if sig == backend.SignalKill {
		p.exit(137)
	} else {
		p.exit(143)
	}
	return nil
}
