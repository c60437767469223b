package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gavelhq/gavel/garden/server"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
	"github.com/gavelhq/gavel/rep/backend/runc"
)

// backendStartTimeout bounds the backend's start (rediscovery included).
const backendStartTimeout = 2 * time.Minute

// Garden is one gavel-garden daemon.
type Garden struct {
	cfg      Config
	logger   lager.Logger
	registry *prometheus.Registry

	pings   *prometheus.CounterVec
	debug   *debugserver.Server
	health  *grpcserver.Server
	mu      sync.Mutex
	server  *server.Server
	backend backend.Backend
}

// New builds the daemon from a validated config.
func New(cfg Config, logger lager.Logger) *Garden {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g := &Garden{cfg: cfg, logger: logger, registry: reg}
	g.pings = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gavel_garden_backend_pings_total", Help: "Backend health pings by result (ok, failed).",
	}, []string{"result"})
	reg.MustRegister(g.pings)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gavel_garden_containers", Help: "Containers the backend holds (-1 when it cannot list them).",
	}, g.countContainers))
	return g
}

// Registry is the daemon's Prometheus registry.
func (g *Garden) Registry() *prometheus.Registry { return g.registry }

// Addr is the Garden API's bound address once it serves.
func (g *Garden) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.server == nil {
		return ""
	}
	return g.server.Addr()
}

// DebugAddr is the debug server's bound address ("" when disabled or not yet bound).
func (g *Garden) DebugAddr() string {
	if g.debug == nil {
		return ""
	}
	return g.debug.Addr()
}

// HealthAddr is the gRPC health service's bound address ("" when disabled).
func (g *Garden) HealthAddr() string {
	if g.health == nil {
		return ""
	}
	return g.health.Addr()
}

func (g *Garden) countContainers() float64 {
	g.mu.Lock()
	b := g.backend
	g.mu.Unlock()
	if b == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, err := b.Containers(ctx, nil)
	if err != nil {
		return -1
	}
	return float64(len(cs))
}

// HealthService is the gRPC health service name whose status follows the
// backend's Ping (the overall status "" does too, once the API serves).
const HealthService = "gavel.garden"

// Runner returns the daemon as one ordered group: debug server, the backend
// and the Garden server over it, then the gRPC health service. A signal
// stops them in reverse order.
func (g *Garden) Runner() ifrit.Runner {
	var members grouper.Members
	if g.cfg.DebugAddress != "" {
		g.debug = debugserver.NewFromConfig(g.cfg.DebugAddress, g.cfg.DebugTLS, g.registry, g.logger)
		members = append(members, grouper.Member{Name: "debug", Runner: g.debug})
	}
	if g.cfg.HealthAddress != "" {
		g.health = grpcserver.New(grpcserver.Options{Addr: g.cfg.HealthAddress, Logger: g.logger})
		g.health.Health().SetServingStatus(HealthService, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	members = append(members, grouper.Member{Name: "garden", Runner: ifrit.RunFunc(g.runGarden)})
	if g.health != nil {
		members = append(members, grouper.Member{Name: "health", Runner: g.health})
	}
	return grouper.NewOrdered(os.Interrupt, members)
}

// newBackend starts the configured backend.
func (g *Garden) newBackend(ctx context.Context) (backend.Backend, error) {
	grace := g.cfg.GraceTime.D()
	if g.cfg.Backend == BackendProcess {
		return process.New(g.cfg.Process.Options(grace, g.logger))
	}
	return runc.New(ctx, g.cfg.Runc.Options(grace, g.logger))
}

func (g *Garden) runGarden(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), backendStartTimeout)
	b, err := g.newBackend(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("%s backend: %w", g.cfg.Backend, err)
	}
	if g.cfg.ListenNetwork == "unix" {
		if err := os.MkdirAll(filepath.Dir(g.cfg.ListenAddress), 0o755); err != nil {
			return fmt.Errorf("listen_address: %w", err)
		}
	}
	srv, err := server.New(b, server.Options{
		ListenNetwork: g.cfg.ListenNetwork, ListenAddr: g.cfg.ListenAddress,
		DefaultGraceTime: g.cfg.DefaultGraceTime.D(), Logger: g.logger,
	})
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.server, g.backend = srv, b
	g.mu.Unlock()

	proc := ifrit.Background(srv)
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		if g.cfg.ListenNetwork == "tcp" {
			return fmt.Errorf("%w (is the port taken? change listen_address)", err)
		}
		return err
	}
	pingCtx, stopPings := context.WithCancel(context.Background())
	pingsDone := make(chan struct{})
	go func() { defer close(pingsDone); g.pingLoop(pingCtx, b) }()
	close(ready)

	var runErr error
	select {
	case sig := <-signals:
		proc.Signal(sig)
		runErr = <-proc.Wait()
	case runErr = <-proc.Wait():
	}
	stopPings()
	<-pingsDone
	if g.cfg.DestroyContainersOnExit {
		g.destroyAll(b)
	}
	return runErr
}

// pingLoop sets the health service's status from the backend's Ping.
func (g *Garden) pingLoop(ctx context.Context, b backend.Backend) {
	logger := g.logger.Session("health")
	ping := func() {
		pctx, cancel := context.WithTimeout(ctx, g.cfg.HealthCheckInterval.D())
		err := b.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		status := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			status = healthpb.HealthCheckResponse_NOT_SERVING
			g.pings.WithLabelValues("failed").Inc()
			logger.Error("backend-ping-failed", err)
		} else {
			g.pings.WithLabelValues("ok").Inc()
		}
		if g.health != nil {
			g.health.Health().SetServingStatus(HealthService, status)
			g.health.Health().SetServingStatus("", status)
		}
	}
	ping()
	t := time.NewTicker(g.cfg.HealthCheckInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ping()
		}
	}
}

// destroyAll destroys every container (destroy_containers_on_exit).
func (g *Garden) destroyAll(b backend.Backend) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.GraceTime.D()+time.Minute)
	defer cancel()
	cs, err := b.Containers(ctx, nil)
	if err != nil {
		g.logger.Error("list-containers-on-exit", err)
		return
	}
	var errs []error
	for _, c := range cs {
		if err := b.Destroy(ctx, c.Handle()); err != nil && !errors.Is(err, backend.ErrContainerNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		g.logger.Error("destroy-containers-on-exit", err)
		return
	}
	// The runc backend also removes its bridge and cgroup parent once empty.
	if t, ok := b.(interface{ Teardown(context.Context) error }); ok {
		if err := t.Teardown(ctx); err != nil {
			g.logger.Error("teardown-on-exit", err)
		}
	}
}
