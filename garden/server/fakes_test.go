package server_test

import (
	"context"
	"maps"
	"sync"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/sim"
)

// richBackend is a sim backend whose containers also implement every
// optional interface, with properties kept here.
type richBackend struct {
	*sim.Backend

	runTTYs chan backend.TTYSpec
	resizes chan backend.TTYSpec

	mu     sync.Mutex
	props  map[string]backend.Properties
	limits map[string]backend.Limits
}

func newRichBackend() *richBackend {
	return &richBackend{
		Backend: sim.New(sim.Options{}), props: map[string]backend.Properties{}, limits: map[string]backend.Limits{},
		runTTYs: make(chan backend.TTYSpec, 10), resizes: make(chan backend.TTYSpec, 10),
	}
}

func (b *richBackend) Create(ctx context.Context, spec backend.ContainerSpec) (backend.Container, error) {
	c, err := b.Backend.Create(ctx, spec)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.props[spec.Handle] = maps.Clone(spec.Properties)
	b.limits[spec.Handle] = spec.Limits
	b.mu.Unlock()
	return &richContainer{Container: c, b: b}, nil
}

func (b *richBackend) Lookup(ctx context.Context, handle string) (backend.Container, error) {
	c, err := b.Backend.Lookup(ctx, handle)
	if err != nil {
		return nil, err
	}
	return &richContainer{Container: c, b: b}, nil
}

func (b *richBackend) Containers(ctx context.Context, filter backend.Properties) ([]backend.Container, error) {
	all, err := b.Backend.Containers(ctx, nil)
	if err != nil {
		return nil, err
	}
	var out []backend.Container
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range all {
		if backend.MatchProperties(b.props[c.Handle()], filter) {
			out = append(out, &richContainer{Container: c, b: b})
		}
	}
	return out, nil
}

// richContainer adds the optional interfaces to a sim container.
type richContainer struct {
	backend.Container
	b *richBackend
}

var (
	_ backend.MetricsReporter = (*richContainer)(nil)
	_ backend.PropertyEditor  = (*richContainer)(nil)
	_ backend.LimitsReporter  = (*richContainer)(nil)
	_ backend.NetInAdder      = (*richContainer)(nil)
)

func (c *richContainer) Properties(ctx context.Context) (backend.Properties, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	return maps.Clone(c.b.props[c.Handle()]), nil
}

func (c *richContainer) Info(ctx context.Context) (backend.ContainerInfo, error) {
	info, err := c.Container.Info(ctx)
	if err != nil {
		return info, err
	}
	info.Properties, _ = c.Properties(ctx)
	return info, nil
}

func (c *richContainer) SetProperty(ctx context.Context, name, value string) error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	c.b.props[c.Handle()][name] = value
	return nil
}

func (c *richContainer) RemoveProperty(ctx context.Context, name string) error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	delete(c.b.props[c.Handle()], name)
	return nil
}

func (c *richContainer) Limits(ctx context.Context) (backend.Limits, error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	return c.b.limits[c.Handle()], nil
}

func (c *richContainer) Metrics(ctx context.Context) (backend.ContainerMetrics, error) {
	return backend.ContainerMetrics{
		MemoryUsageInBytes: 1000, MemoryStat: map[string]uint64{"rss": 900, "cache": 100, "total_rss": 900},
		CPUUsage: 5, CPUUser: 3, CPUSystem: 2, DiskBytesUsed: 4096, DiskInodesUsed: 3,
		PidsCurrent: 2, PidsMax: 1024, Age: 7, RxBytes: 11, TxBytes: 12, HasNetworkStats: true,
	}, nil
}

func (c *richContainer) NetIn(ctx context.Context, hostPort, containerPort uint32) (backend.PortMapping, error) {
	if hostPort == 0 {
		hostPort = 50000
	}
	if containerPort == 0 {
		containerPort = hostPort
	}
	return backend.PortMapping{HostPort: hostPort, ContainerPort: containerPort}, nil
}

// blockingBackend is a sim backend whose Destroy waits for release.
type blockingBackend struct {
	*sim.Backend
	entered chan struct{}
	release chan struct{}
}

func (b *blockingBackend) Destroy(ctx context.Context, handle string) error {
	b.entered <- struct{}{}
	<-b.release
	return b.Backend.Destroy(ctx, handle)
}

// Run starts a sim process that also takes terminal resizes (sent on
// b.resizes) and records the spec's TTY on b.runTTYs.
func (c *richContainer) Run(ctx context.Context, spec backend.ProcessSpec, pio backend.ProcessIO) (backend.Process, error) {
	p, err := c.Container.Run(ctx, spec, pio)
	if err != nil {
		return nil, err
	}
	if spec.TTY != nil {
		c.b.runTTYs <- *spec.TTY
	}
	return &ttyProcess{Process: p, resizes: c.b.resizes}, nil
}

// ttyProcess is a process that implements backend.TTYResizer.
type ttyProcess struct {
	backend.Process
	resizes chan backend.TTYSpec
}

func (p *ttyProcess) SetTTY(spec backend.TTYSpec) error {
	p.resizes <- spec
	return nil
}
