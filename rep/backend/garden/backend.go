package garden

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	gardenapi "github.com/gavelhq/gavel/garden"
	"github.com/gavelhq/gavel/garden/client"
	"github.com/gavelhq/gavel/rep/backend"
)

// Options configure a Backend.
type Options struct {
	// Network is "tcp" or "unix"; default "tcp".
	Network string
	// Address is the server's host:port or socket path; required.
	Address string
	// DialTimeout bounds each connect; default client.DefaultDialTimeout (10 s).
	DialTimeout time.Duration
	// MemoryLimitsEnforced is reported in Capacity and ContainerInfo: whether
	// the server enforces memory limits (garden-runc does). Default false.
	MemoryLimitsEnforced bool
	// ReattachTimeout bounds how long a process whose connection dropped (a
	// restarting Garden server) is re-attached before Wait gives up with
	// an error; default 2 min.
	ReattachTimeout time.Duration
}

// DefaultReattachTimeout is Options.ReattachTimeout's default.
const DefaultReattachTimeout = 2 * time.Minute

// Re-attach back-off bounds.
const (
	reattachFirstDelay = 100 * time.Millisecond
	reattachMaxDelay   = 2 * time.Second
)

// Backend drives a Garden server. It is safe for concurrent use.
type Backend struct {
	opts   Options
	client *client.Client
}

var _ backend.Backend = (*Backend)(nil)

// New returns a backend for the Garden server at opts.Address. It does not
// connect; Ping does.
func New(opts Options) (*Backend, error) {
	c, err := client.New(client.Options{Network: opts.Network, Address: opts.Address, DialTimeout: opts.DialTimeout})
	if err != nil {
		return nil, fmt.Errorf("garden backend: %w", err)
	}
	if opts.ReattachTimeout <= 0 {
		opts.ReattachTimeout = DefaultReattachTimeout
	}
	return &Backend{opts: opts, client: c}, nil
}

// Client returns the underlying Garden client.
func (b *Backend) Client() *client.Client { return b.client }

// Ping checks the server.
func (b *Backend) Ping(ctx context.Context) error {
	return mapError(b.client.Ping(ctx), "ping")
}

// Capacity reads the server's capacity.
func (b *Backend) Capacity(ctx context.Context) (backend.Capacity, error) {
	c, err := b.client.Capacity(ctx)
	if err != nil {
		return backend.Capacity{}, mapError(err, "capacity")
	}
	disk := c.SchedulableDiskInBytes
	if disk == 0 {
		disk = c.DiskInBytes
	}
	return backend.Capacity{
		MemoryInBytes: c.MemoryInBytes, DiskInBytes: disk, MaxContainers: c.MaxContainers,
		MemoryLimitsEnforced: b.opts.MemoryLimitsEnforced,
	}, nil
}

// Create creates a container.
func (b *Backend) Create(ctx context.Context, spec backend.ContainerSpec) (backend.Container, error) {
	h, err := b.client.Create(ctx, toGardenSpec(spec))
	if err != nil {
		return nil, mapError(err, "create "+spec.Handle)
	}
	return b.container(h), nil
}

// Destroy destroys a container.
func (b *Backend) Destroy(ctx context.Context, handle string) error {
	return mapError(b.client.Destroy(ctx, handle), "destroy "+handle)
}

// Containers lists the (created) containers whose properties contain filter.
func (b *Backend) Containers(ctx context.Context, filter backend.Properties) ([]backend.Container, error) {
	handles, err := b.client.Containers(ctx, gardenapi.Properties(filter))
	if err != nil {
		return nil, mapError(err, "list containers")
	}
	out := make([]backend.Container, len(handles))
	for i, h := range handles {
		out[i] = b.container(h)
	}
	return out, nil
}

// Lookup finds one container by listing them.
func (b *Backend) Lookup(ctx context.Context, handle string) (backend.Container, error) {
	if err := b.client.Lookup(ctx, handle); err != nil {
		return nil, mapError(err, "lookup "+handle)
	}
	return b.container(handle), nil
}

// BulkMetrics reads the metrics of many containers in one request; a
// container whose metrics failed is left out.
func (b *Backend) BulkMetrics(ctx context.Context, handles []string) (map[string]backend.ContainerMetrics, error) {
	entries, err := b.client.BulkMetrics(ctx, handles)
	if err != nil {
		return nil, mapError(err, "bulk metrics")
	}
	out := make(map[string]backend.ContainerMetrics, len(entries))
	for h, e := range entries {
		if e.Err == nil {
			out[h] = toBackendMetrics(e.Metrics)
		}
	}
	return out, nil
}

func (b *Backend) container(handle string) *container { return &container{b: b, handle: handle} }

// mapError wraps a Garden error with the backend sentinel it stands for.
func mapError(err error, op string) error {
	if err == nil {
		return nil
	}
	var (
		cnf gardenapi.ContainerNotFoundError
		pnf gardenapi.ProcessNotFoundError
		ge  *gardenapi.Error
	)
	switch {
	case errors.As(err, &cnf):
		return fmt.Errorf("garden %s: %w: %w", op, backend.ErrContainerNotFound, err)
	case errors.As(err, &pnf):
		return fmt.Errorf("garden %s: %w: %w", op, backend.ErrProcessNotFound, err)
	case errors.As(err, &ge) && strings.HasPrefix(op, "create") &&
		(strings.Contains(ge.Message, "already exists") || strings.Contains(ge.Message, "already in use")):
		return fmt.Errorf("garden %s: %w: %w", op, backend.ErrHandleExists, err)
	}
	return fmt.Errorf("garden %s: %w", op, err)
}

// container is one container of the server.
type container struct {
	b      *Backend
	handle string
}

var (
	_ backend.Container       = (*container)(nil)
	_ backend.MetricsReporter = (*container)(nil)
	_ backend.PropertyEditor  = (*container)(nil)
	_ backend.LimitsReporter  = (*container)(nil)
	_ backend.NetInAdder      = (*container)(nil)
)

// Handle is the container's handle.
func (c *container) Handle() string { return c.handle }

func (c *container) op(what string) string { return what + " " + c.handle }

// Run starts a process; ctx bounds the start.
func (c *container) Run(ctx context.Context, spec backend.ProcessSpec, pio backend.ProcessIO) (backend.Process, error) {
	p, err := c.b.client.Run(ctx, c.handle, toGardenProcessSpec(spec), toClientIO(pio))
	if err != nil {
		return nil, mapError(err, c.op("run in"))
	}
	return &process{c: c, pio: pio, p: p}, nil
}

// Attach reconnects to a process.
func (c *container) Attach(ctx context.Context, processID string, pio backend.ProcessIO) (backend.Process, error) {
	p, err := c.b.client.Attach(ctx, c.handle, processID, toClientIO(pio))
	if err != nil {
		return nil, mapError(err, c.op("attach "+processID+" in"))
	}
	return &process{c: c, pio: pio, p: p}, nil
}

// StreamIn extracts a tar under spec.Path.
func (c *container) StreamIn(ctx context.Context, spec backend.StreamInSpec) error {
	return mapError(c.b.client.StreamIn(ctx, c.handle, spec.Path, spec.User, spec.TarStream), c.op("stream in to"))
}

// StreamOut returns a tar of spec.Path.
func (c *container) StreamOut(ctx context.Context, spec backend.StreamOutSpec) (io.ReadCloser, error) {
	rc, err := c.b.client.StreamOut(ctx, c.handle, spec.Path, spec.User)
	return rc, mapError(err, c.op("stream out of"))
}

// Info reads the container's info.
func (c *container) Info(ctx context.Context) (backend.ContainerInfo, error) {
	info, err := c.b.client.Info(ctx, c.handle)
	if err != nil {
		return backend.ContainerInfo{}, mapError(err, c.op("info of"))
	}
	return toBackendInfo(info, c.b.opts.MemoryLimitsEnforced), nil
}

// Stop stops the container's processes.
func (c *container) Stop(ctx context.Context, kill bool) error {
	return mapError(c.b.client.Stop(ctx, c.handle, kill), c.op("stop"))
}

// Properties reads every property.
func (c *container) Properties(ctx context.Context) (backend.Properties, error) {
	props, err := c.b.client.Properties(ctx, c.handle)
	if err != nil {
		return nil, mapError(err, c.op("properties of"))
	}
	return backend.Properties(props), nil
}

// SetProperty sets one property.
func (c *container) SetProperty(ctx context.Context, name, value string) error {
	return mapError(c.b.client.SetProperty(ctx, c.handle, name, value), c.op("set property "+name+" of"))
}

// RemoveProperty removes one property.
func (c *container) RemoveProperty(ctx context.Context, name string) error {
	return mapError(c.b.client.RemoveProperty(ctx, c.handle, name), c.op("remove property "+name+" of"))
}

// Metrics reads the container's usage.
func (c *container) Metrics(ctx context.Context) (backend.ContainerMetrics, error) {
	m, err := c.b.client.Metrics(ctx, c.handle)
	if err != nil {
		return backend.ContainerMetrics{}, mapError(err, c.op("metrics of"))
	}
	return toBackendMetrics(m), nil
}

// Limits reads the CPU, memory and disk limits (Garden does not report the
// pid limit: MaxPids is 0).
func (c *container) Limits(ctx context.Context) (backend.Limits, error) {
	cpu, err := c.b.client.CPULimits(ctx, c.handle)
	if err != nil {
		return backend.Limits{}, mapError(err, c.op("cpu limits of"))
	}
	mem, err := c.b.client.MemoryLimits(ctx, c.handle)
	if err != nil {
		return backend.Limits{}, mapError(err, c.op("memory limits of"))
	}
	disk, err := c.b.client.DiskLimits(ctx, c.handle)
	if err != nil {
		return backend.Limits{}, mapError(err, c.op("disk limits of"))
	}
	weight := cpu.Weight
	if weight == 0 {
		weight = cpu.LimitInShares
	}
	return backend.Limits{MemoryInBytes: mem.LimitInBytes, DiskInBytes: disk.ByteHard, CPUWeight: weight}, nil
}

// NetIn maps a port.
func (c *container) NetIn(ctx context.Context, hostPort, containerPort uint32) (backend.PortMapping, error) {
	h, cp, err := c.b.client.NetIn(ctx, c.handle, hostPort, containerPort)
	if err != nil {
		return backend.PortMapping{}, mapError(err, c.op("net in of"))
	}
	return backend.PortMapping{HostPort: h, ContainerPort: cp}, nil
}

// process is a process of the server. When its connection drops (the
// server restarts), Wait re-attaches to it.
type process struct {
	c   *container
	pio backend.ProcessIO

	mu sync.Mutex
	p  *client.Process
}

var (
	_ backend.Process    = (*process)(nil)
	_ backend.TTYResizer = (*process)(nil)
)

func (p *process) current() *client.Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.p
}

// ID is the process ID.
func (p *process) ID() string { return p.current().ID() }

// Wait returns the exit status once the output has been delivered. A
// dropped connection is re-attached with back-off for up to
// Options.ReattachTimeout (output written meanwhile is lost); a process the
// server no longer knows gives ExitStatusUnknown and an error.
func (p *process) Wait() (int, error) {
	id := p.current().ID()
	var deadline time.Time
	for {
		status, err := p.current().Wait()
		if err == nil {
			return status, nil
		}
		if !connectionLost(err) {
			return backend.ExitStatusUnknown, fmt.Errorf("garden wait for %s: %w", id, err)
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(p.c.b.opts.ReattachTimeout)
		}
		np, aerr := p.reattach(id, deadline)
		if aerr != nil {
			return backend.ExitStatusUnknown, fmt.Errorf("garden wait for %s: connection lost (%v) and not re-attached: %w", id, err, aerr)
		}
		p.mu.Lock()
		p.p = np
		p.mu.Unlock()
	}
}

// reattach attaches to process id again, retrying while the server is
// unreachable, until deadline.
func (p *process) reattach(id string, deadline time.Time) (*client.Process, error) {
	delay := reattachFirstDelay
	for {
		time.Sleep(delay)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		np, err := p.c.b.client.Attach(ctx, p.c.handle, id, toClientIO(p.pio))
		cancel()
		if err == nil {
			return np, nil
		}
		if !connectionLost(err) || time.Now().After(deadline) {
			return nil, mapError(err, p.c.op("re-attach "+id+" in"))
		}
		delay = min(2*delay, reattachMaxDelay)
	}
}

// connectionLost says whether err is a transport failure (a dropped or
// refused connection) rather than an answer from the server.
func connectionLost(err error) bool {
	var gerr *gardenapi.Error
	if errors.As(err, &gerr) {
		return false
	}
	var nerr net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EPIPE) || errors.As(err, &nerr)
}

// Signal sends SIGTERM or SIGKILL.
func (p *process) Signal(sig backend.Signal) error {
	g := gardenapi.SignalTerminate
	if sig == backend.SignalKill {
		g = gardenapi.SignalKill
	}
	return p.current().Signal(g)
}

// SetTTY resizes the process's terminal.
func (p *process) SetTTY(spec backend.TTYSpec) error {
	return p.current().SetTTY(gardenapi.TTYSpec{WindowSize: &gardenapi.WindowSize{Columns: uint16(spec.Columns), Rows: uint16(spec.Rows)}})
}
