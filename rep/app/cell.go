package app

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/internal/rungroup"
	"github.com/gavelhq/gavel/internal/workers"
	"github.com/gavelhq/gavel/locket"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/backend"
	gardenbackend "github.com/gavelhq/gavel/rep/backend/garden"
	"github.com/gavelhq/gavel/rep/backend/process"
	"github.com/gavelhq/gavel/rep/backend/runc"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
	"github.com/gavelhq/gavel/rep/harmonizer"
	"github.com/gavelhq/gavel/rep/logarchive"
	"github.com/gavelhq/gavel/rep/server"
)

// CellDeps are what a cell shares with the other cells of its process.
type CellDeps struct {
	// Etcd holds the presence.
	Etcd *clientv3.Client
	// Locket, if set, holds the presence instead of Etcd (the Consul backend).
	Locket locket.Backend
	// BBS is the BBS client.
	BBS harmonizer.BBS
	// Metrics are the harmonizer metrics.
	Metrics *harmonizer.Metrics
	// Logger is the process's logger.
	Logger lager.Logger
	// RunInfo caches desired LRPs for every cell of the process; nil: one per cell.
	RunInfo *harmonizer.RunInfoCache
	// Workers run every cell's harmonizer operations and container starts;
	// nil: workers per cell.
	Workers *workers.Pool
	// Batches carry every cell's claims and starts in shared BBS calls
	// (cells sharing BBS only); nil: calls per cell.
	Batches *harmonizer.Batches
	// GRPCMetrics count and time the calls of every cell's RepService; nil:
	// none.
	GRPCMetrics *grpcserver.Metrics
}

// Cell is one cell: a backend and executor, the RepService, the presence and
// the harmonizer.
type Cell struct {
	cfg    Config
	deps   CellDeps
	logger lager.Logger
	evac   rep.Evacuation

	exec       *executor.Executor
	archive    *logarchive.Archive
	grpc       *grpcserver.Server
	harmonizer *harmonizer.Harmonizer
	ready      chan struct{} // closed once the gRPC server listens
	drained    chan struct{} // closed once a drain emptied the cell
	isDrained  atomic.Bool
}

// NewCell returns a cell for a validated config.
func NewCell(cfg Config, deps CellDeps) *Cell {
	return &Cell{
		cfg: cfg, deps: deps, logger: deps.Logger.Session("cell", lager.Data{"cell_id": cfg.CellID}),
		ready: make(chan struct{}), drained: make(chan struct{}),
	}
}

// ID is the cell's id.
func (c *Cell) ID() string { return c.cfg.CellID }

// Addr is the RepService's bound address; it blocks until it listens.
func (c *Cell) Addr() string { <-c.ready; return c.grpc.Addr() }

// Executor is the cell's executor; valid once Addr returns.
func (c *Cell) Executor() *executor.Executor { <-c.ready; return c.exec }

// Evacuation is the cell's evacuation flag.
func (c *Cell) Evacuation() *rep.Evacuation { return &c.evac }

// Drain starts the cell's evacuation (see evacuation.go); false when it was
// already under way. It returns the drain's deadline.
func (c *Cell) Drain() (started bool, deadline time.Time) {
	started = c.evac.Start(time.Now().Add(c.cfg.EvacuationTimeout.D()))
	return started, c.evac.Deadline()
}

// Drained is closed once a drain emptied the cell.
func (c *Cell) Drained() <-chan struct{} { return c.drained }

// Runner returns the cell as an ordered group: executor (its backend, and
// the adoption of the containers a previous run left), gRPC server,
// presence, harmonizer, evacuator. On a signal they stop in reverse order
// and the executor detaches: containers keep running for the next start to
// adopt. The evacuator ends the group with an error when a drain times out.
func (c *Cell) Runner() ifrit.Runner {
	return rungroup.Ordered(
		rungroup.Member{Name: "executor", Runner: ifrit.RunFunc(c.runExecutor)},
		rungroup.Member{Name: "grpc", Runner: ifrit.RunFunc(c.runGRPC)},
		rungroup.Member{Name: "presence", Runner: ifrit.RunFunc(c.runPresence)},
		rungroup.Member{Name: "harmonizer", Runner: ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
			c.harmonizer = harmonizer.New(harmonizer.Options{
				CellID: c.cfg.CellID, Zone: c.cfg.Zone, BBS: c.deps.BBS, Executor: c.exec,
				BulkSyncInterval: c.cfg.BulkSyncInterval.D(), Logger: c.deps.Logger, Metrics: c.deps.Metrics,
				Evacuation: &c.evac, EvacuationPollInterval: c.cfg.EvacuationPollingInterval.D(),
				RunInfo:    c.deps.RunInfo,
				Workers:    c.deps.Workers,
				Batches:    c.deps.Batches,
				ClaimDelay: c.cfg.ClaimDelay.D(),
			})
			return c.harmonizer.Run(signals, ready)
		})},
		rungroup.Member{Name: "evacuator", Runner: ifrit.RunFunc(c.runEvacuator)},
	)
}

func (c *Cell) backend(ctx context.Context) (backend.Backend, error) {
	switch c.cfg.Backend {
	case BackendSim:
		s := c.cfg.Sim
		return sim.New(sim.Options{
			StartDelay: s.StartDelay.D(), RunDuration: s.RunDuration.D(), CrashRate: s.CrashRate,
			CrashWindow: s.CrashWindow.D(), Seed: s.Seed,
		}), nil
	case BackendRunc:
		return runc.New(ctx, c.cfg.Runc.Options(c.cfg.GraceTime.D(), c.logger))
	case BackendGarden:
		g := c.cfg.Garden
		b, err := gardenbackend.New(gardenbackend.Options{Network: g.Network, Address: g.Address, MemoryLimitsEnforced: g.MemoryLimitsEnforced})
		if err != nil {
			return nil, err
		}
		if err := b.Ping(ctx); err != nil {
			return nil, fmt.Errorf("garden server %s %s: %w", g.Network, g.Address, err)
		}
		return b, nil
	default:
		b, err := process.New(c.cfg.Process.Options(c.cfg.GraceTime.D(), c.logger))
		if err == nil {
			if enforced, why := b.CgroupStatus(); !enforced {
				c.logger.Info("memory-limits-not-enforced", lager.Data{"reason": why})
			}
		}
		return b, err
	}
}

func (c *Cell) runExecutor(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := c.backend(ctx)
	if err != nil {
		return fmt.Errorf("cell %s: backend: %w", c.cfg.CellID, err)
	}
	archive, err := logarchive.Open(logarchive.Options{Path: c.cfg.LogArchive.Path, MaxPerApp: c.cfg.LogArchive.MaxPerApp, MaxBytes: c.cfg.LogArchive.MaxBytes})
	if err != nil {
		return fmt.Errorf("cell %s: %w", c.cfg.CellID, err)
	}
	c.archive = archive
	exec, err := executor.New(ctx, executor.Options{
		ArchiveLogs: c.archiveLogs,
		Backend:     b, Logger: c.logger, CellID: c.cfg.CellID, Workers: c.deps.Workers,
		TotalResources:       executor.Resources{MemoryMB: c.cfg.Capacity.MemoryMB, DiskMB: c.cfg.Capacity.DiskMB, Containers: c.cfg.Capacity.Containers},
		ProxyMemoryMB:        int(c.cfg.ProxyMemoryMB),
		ReservedExpiration:   c.cfg.ReservedExpiration.D(),
		GraceTime:            c.cfg.GraceTime.D(),
		StartupCheckInterval: c.cfg.StartupCheckInterval.D(),
	})
	if err != nil {
		return fmt.Errorf("cell %s: %w", c.cfg.CellID, err)
	}
	adopted, err := exec.Recover(ctx)
	if err != nil {
		c.logger.Error("recover-failed", err)
	}
	if len(adopted) > 0 {
		c.logger.Info("adopted-containers", lager.Data{"count": len(adopted)})
	}
	c.exec = exec
	close(ready)
	<-signals
	exec.ArchiveAll()
	if c.cfg.DestroyContainersOnExit {
		c.destroyAll(b)
		return nil
	}
	exec.Detach()
	return nil
}

// archiveLogs keeps an ended container's output in the cell's log archive.
func (c *Cell) archiveLogs(ctr executor.Container, lines []executor.LogLine) {
	e := logarchive.Entry{EndedAt: time.Now().UnixNano(), Reason: endReason(ctr)}
	if rep.IsTask(ctr) {
		e.TaskGUID = ctr.Guid
	} else {
		idx, _ := strconv.Atoi(ctr.Tags[rep.TagProcessIndex])
		e.ProcessGUID, e.InstanceGUID, e.Index = ctr.Tags[rep.TagProcessGuid], ctr.Tags[rep.TagInstanceGuid], int32(idx)
	}
	for _, l := range lines {
		e.Lines = append(e.Lines, logarchive.Line{Time: l.Time.UnixNano(), Source: l.Source, Stream: string(l.Stream), Message: l.Message})
	}
	if err := c.archive.Add(e); err != nil {
		c.logger.Error("log-archive-failed", err, lager.Data{"guid": ctr.Guid})
	}
}

func endReason(ctr executor.Container) string {
	r := ctr.RunResult
	switch {
	case ctr.State != executor.StateCompleted:
		return "cell stopped"
	case r.Failed:
		return "failed: " + r.FailureReason
	case r.Stopped:
		return "stopped"
	default:
		return "exited " + strconv.Itoa(r.ExitStatus)
	}
}

// cellStreamWorkers is the goroutines a cell's gRPC server keeps to serve
// calls. A cell serves about one call at a time (the auctioneer's State, then
// its Perform; now and then a CLI's), so one kept worker spares the stack
// growth of a new goroutine per call. The server's default (64, sized for the
// BBS) cost a simulated cell 64 parked goroutines and doubled its memory.
// With 4, calls spread over 4 workers, and the collector shrinks an idle
// worker's stack at every cycle, so 4 stacks grew again after each: growing
// and shrinking stacks took 6.8 % of the simulated cells' CPU in a 100k
// placement, 3.0 % with one worker. A call that finds the worker busy gets a
// goroutine of its own, so this never limits concurrency.
const cellStreamWorkers = 1

func (c *Cell) runGRPC(signals <-chan os.Signal, ready chan<- struct{}) error {
	srv := server.New(server.Options{
		CellID: c.cfg.CellID, Zone: c.cfg.Zone, Index: c.cfg.Index, Executor: c.exec,
		RootFSProviders: rootFSProviders(c.cfg.AdvertisedRootFSProviders()), PlacementTags: c.cfg.PlacementTags,
		OptionalPlacementTags: c.cfg.OptionalPlacementTags, VolumeDrivers: c.cfg.VolumeDrivers,
		ProxyMemoryMB: c.cfg.ProxyMemoryMB, Evacuation: &c.evac, Logger: c.logger,
		Drain: c.Drain, LogArchive: c.archive,
	})
	opts := grpcserver.Options{
		Addr: c.cfg.ListenAddress, Logger: c.logger, StreamWorkers: cellStreamWorkers, Metrics: c.deps.GRPCMetrics,
		Register: func(s grpc.ServiceRegistrar) { repv1.RegisterRepServiceServer(s, srv) },
	}
	if !c.cfg.InsecurePlaintext {
		tlsCfg, err := c.cfg.TLS.Server()
		if err != nil {
			return fmt.Errorf("cell %s: tls: %w", c.cfg.CellID, err)
		}
		opts.TLS = tlsCfg
	}
	c.grpc = grpcserver.New(opts)
	proc := rungroup.Start("grpc", c.grpc)
	select {
	case <-proc.Ready():
	case <-proc.Exited():
		return fmt.Errorf("cell %s: %w", c.cfg.CellID, proc.Err())
	}
	close(c.ready)
	close(ready)
	select {
	case sig := <-signals:
		return proc.Stop(sig)
	case <-proc.Exited():
		return fmt.Errorf("cell %s: gRPC server stopped: %w", c.cfg.CellID, proc.Err())
	}
}

// advertised is the address put in the presence.
func (c *Cell) advertised() string {
	if c.cfg.AdvertiseAddress != "" {
		return c.cfg.AdvertiseAddress
	}
	addr := c.grpc.Addr()
	host, port, err := net.SplitHostPort(addr)
	if err == nil && (host == "" || net.ParseIP(host).IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// PresenceValue is the CellPresence the cell registers.
func (c *Cell) PresenceValue() *modelsv1.CellPresence {
	total := c.exec.TotalResources()
	return &modelsv1.CellPresence{
		CellId: c.cfg.CellID, RepAddress: c.advertised(), Zone: c.cfg.Zone,
		Capacity:              &modelsv1.CellCapacity{MemoryMb: int32(total.MemoryMB), DiskMb: int32(total.DiskMB), Containers: int32(total.Containers)},
		RootfsProviders:       rootFSProviders(c.cfg.AdvertisedRootFSProviders()),
		PlacementTags:         c.cfg.PlacementTags,
		OptionalPlacementTags: c.cfg.OptionalPlacementTags,
		VolumeDrivers:         c.cfg.VolumeDrivers,
	}
}

func (c *Cell) runPresence(signals <-chan os.Signal, ready chan<- struct{}) error {
	pv := c.PresenceValue()
	owner := presenceOwner(c.cfg)
	if owner != "" {
		pv.Annotations = map[string]string{OwnerAnnotation: owner}
	}
	value, err := proto.Marshal(pv)
	if err != nil {
		return fmt.Errorf("cell %s: encode presence: %w", c.cfg.CellID, err)
	}
	var backend locket.Backend = c.deps.Locket
	if backend == nil {
		backend = locket.NewEtcdBackend(c.deps.Etcd, c.logger)
	}
	p := &presence{
		backend: backend, key: locket.PresenceKey(c.cfg.KeyPrefix, c.cfg.CellID),
		value: value, owner: owner, ttl: c.cfg.PresenceTTL.D(), retry: c.cfg.PresenceRetryInterval.D(),
		// Containers of the process, runc and garden backends outlive the rep: so does its
		// presence, unless a drain emptied the cell.
		keepOnStop: func() bool { return c.cfg.Backend != BackendSim && !c.isDrained.Load() }, logger: c.logger,
	}
	return p.Run(signals, ready)
}

// rootFSProviders turns the config map into the API's list, sorted by scheme.
func rootFSProviders(m map[string][]string) []*modelsv1.RootFSProvider {
	out := make([]*modelsv1.RootFSProvider, 0, len(m))
	for name, stacks := range m {
		out = append(out, &modelsv1.RootFSProvider{Name: name, Properties: stacks})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// destroyAll stops every container within the grace time and destroys it.
func (c *Cell) destroyAll(b backend.Backend) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.GraceTime.D()+10*time.Second)
	defer cancel()
	c.exec.Close()
	containers, err := b.Containers(ctx, nil)
	if err != nil {
		c.logger.Error("list-containers-on-exit", err)
		return
	}
	failed := false
	for _, ctr := range containers {
		if err := b.Destroy(ctx, ctr.Handle()); err != nil {
			failed = true
			c.logger.Error("destroy-container-on-exit", err, lager.Data{"handle": ctr.Handle()})
		}
	}
	// A runc cell also removes its bridge and cgroup parent once empty.
	if t, ok := b.(interface{ Teardown(context.Context) error }); ok && !failed {
		if err := t.Teardown(ctx); err != nil {
			c.logger.Error("teardown-on-exit", err)
		}
	}
}
