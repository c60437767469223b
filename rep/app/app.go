package app

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/internal/rungroup"
	"github.com/gavelhq/gavel/internal/workers"
	"github.com/gavelhq/gavel/locket"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/executor"
	"github.com/gavelhq/gavel/rep/harmonizer"
)

// Rep is the rep daemon: one cell, or cfg.SimCells simulated cells sharing
// one etcd client and one BBS client.
type Rep struct {
	cfg         Config
	logger      lager.Logger
	registry    *prometheus.Registry
	metrics     *harmonizer.Metrics
	grpcMetrics *grpcserver.Metrics      // count and time the RepService calls of every cell
	runInfo     *harmonizer.RunInfoCache // shared by the cells
	workers     *workers.Pool            // shared by the cells' harmonizers

	mu       sync.Mutex
	cells    []*Cell
	drainAll bool          // Drain was called: cells created later drain too
	ready    chan struct{} // closed once every cell runs
	debug    *debugserver.Server
}

// New builds a rep from a validated config.
func New(cfg Config, logger lager.Logger) *Rep {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r := &Rep{cfg: cfg, logger: logger, registry: reg, metrics: harmonizer.NewMetrics(reg), grpcMetrics: grpcserver.NewMetrics(reg), runInfo: harmonizer.NewRunInfoCache(0), workers: workers.New(0), ready: make(chan struct{})}
	reg.MustRegister(&cellCollector{rep: r}, r.runInfo.Collector())
	return r
}

// Registry is the rep's metrics registry.
func (r *Rep) Registry() *prometheus.Registry { return r.registry }

// Ready is closed once every cell serves and is registered.
func (r *Rep) Ready() <-chan struct{} { return r.ready }

// Cells returns the cells; complete once Ready is closed.
func (r *Rep) Cells() []*Cell {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Cell(nil), r.cells...)
}

// Drain starts the evacuation of every cell of the rep (SIGUSR1 does this);
// the rep stops once all its cells are empty, with an error if a cell
// reaches its evacuation timeout first.
func (r *Rep) Drain() {
	r.mu.Lock()
	r.drainAll = true
	r.mu.Unlock()
	for _, cell := range r.Cells() {
		if started, deadline := cell.Drain(); started {
			r.logger.Info("drain-requested", lager.Data{"cell_id": cell.ID(), "deadline": deadline.Format(time.RFC3339)})
		}
	}
}

// DrainOnSignal drains the cells whenever sig arrives (cmd/rep uses
// SIGUSR1), as the Drain RPC does. The returned function stops listening.
func (r *Rep) DrainOnSignal(sig os.Signal) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				r.Drain()
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// DebugAddr is the debug server's bound address, once Ready is closed.
func (r *Rep) DebugAddr() string { return r.debug.Addr() }

// Runner returns the daemon as an ordered group: the debug server, then the
// cells (dialing etcd and building the BBS client first). Each cell is itself
// ordered: executor, gRPC server, presence, harmonizer.
func (r *Rep) Runner() ifrit.Runner {
	r.debug = debugserver.NewFromConfig(r.cfg.DebugAddress, r.cfg.DebugTLS, r.registry, r.logger)
	return grouper.NewOrdered(os.Interrupt, grouper.Members{
		{Name: "debug", Runner: r.debug},
		{Name: "cells", Runner: ifrit.RunFunc(r.runCells)},
	})
}

// cellConfigs derives the config of each cell.
func (r *Rep) cellConfigs() []Config {
	if r.cfg.SimCells == 0 {
		return []Config{r.cfg}
	}
	host, _, err := net.SplitHostPort(r.cfg.ListenAddress)
	if err != nil {
		host = "127.0.0.1"
	}
	out := make([]Config, r.cfg.SimCells)
	for i := range out {
		c := r.cfg
		c.CellID = r.cfg.CellID + "-" + strconv.Itoa(i)
		c.ListenAddress = net.JoinHostPort(host, "0")
		c.AdvertiseAddress = ""
		c.Index = r.cfg.Index + int32(i)
		c.Sim.Seed = r.cfg.Sim.Seed + uint64(i)
		out[i] = c
	}
	return out
}

// checkIdentity refuses certificates that are not this rep's: with TLS, the
// certificates of tls and bbs_tls must carry the identity of the rep of
// cell_id (gavel certs --cell-ids writes them), since the BBS lets a rep act
// only for the cell its certificate names. Simulated cells share one
// certificate, which can name only one cell, so they run without TLS.
func (r *Rep) checkIdentity() error {
	if r.cfg.InsecurePlaintext {
		return nil
	}
	if r.cfg.SimCells > 0 {
		return fmt.Errorf("sim_cells: %d simulated cells would share one certificate, which names one cell; run them with insecure_plaintext", r.cfg.SimCells)
	}
	want := authz.RepFor(r.cfg.CellID)
	for _, hop := range []struct{ field, path string }{{"tls.cert_file", r.cfg.TLS.CertFile}, {"bbs_tls.cert_file", r.cfg.BBSTLS.CertFile}} {
		got, err := authz.FromCertFile(hop.path)
		if err != nil {
			return fmt.Errorf("%s: %w", hop.field, err)
		}
		if got != want {
			return fmt.Errorf("%s %s: the certificate is for %s, not for this rep (cell_id %q): issue one with gavel certs --components rep --cell-ids %s", hop.field, hop.path, got, r.cfg.CellID, r.cfg.CellID)
		}
	}
	return nil
}

func (r *Rep) runCells(signals <-chan os.Signal, ready chan<- struct{}) error {
	if r.cfg.InsecurePlaintext {
		r.logger.Info("api-without-tls", lager.Data{"warning": "insecure_plaintext: the RepService and the calls to the BBS are plaintext; only for development"})
	}
	if err := r.checkIdentity(); err != nil {
		return err
	}
	// With the Consul backend the rep needs no etcd at all.
	var etcd *clientv3.Client
	if r.cfg.Locket.NeedsEtcd() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := etcdclient.Dial(ctx, r.cfg.Etcd)
		cancel()
		if err != nil {
			return fmt.Errorf("connect to etcd: %w", err)
		}
		defer c.Close()
		etcd = c
	}
	var err error
	bbsCfg := client.Config{Addresses: r.cfg.BBSAddresses}
	if !r.cfg.InsecurePlaintext {
		if bbsCfg.TLS, err = r.cfg.BBSTLS.Client(""); err != nil {
			return fmt.Errorf("bbs_tls: %w", err)
		}
	}
	bbs, err := client.New(bbsCfg)
	if err != nil {
		return err
	}
	defer bbs.Close()
	store, err := locket.Open(r.cfg.Locket, etcd, r.logger)
	if err != nil {
		return err
	}
	deps := CellDeps{Etcd: etcd, Locket: store, BBS: bbs, Metrics: r.metrics, Logger: r.logger, RunInfo: r.runInfo, Workers: r.workers, GRPCMetrics: r.grpcMetrics}
	if r.cfg.SimCells > 0 {
		// The simulated cells share one BBS client: their claims and starts
		// go in shared calls (see harmonizer.Batches).
		deps.Batches = harmonizer.NewBatches(harmonizer.BatchesOptions{BBS: bbs, Metrics: r.metrics, Workers: r.workers})
	}
	var members []rungroup.Member
	for _, cfg := range r.cellConfigs() {
		cell := NewCell(cfg, deps)
		r.mu.Lock()
		r.cells = append(r.cells, cell)
		r.mu.Unlock()
		members = append(members, rungroup.Member{Name: cfg.CellID, Runner: cell.Runner()})
	}
	r.mu.Lock()
	drainAll := r.drainAll
	r.mu.Unlock()
	if drainAll {
		r.Drain()
	}
	var group ifrit.Runner
	if len(members) == 1 {
		group = members[0].Runner
	} else {
		group = rungroup.Parallel(members...)
	}
	proc := rungroup.Start("cells", group)
	select {
	case <-proc.Ready():
	case <-proc.Exited():
		return proc.Err()
	}
	r.logger.Info("cells-ready", lager.Data{"cells": len(members)})
	close(r.ready)
	close(ready)
	drained := make(chan struct{})
	go func() {
		for _, cell := range r.Cells() {
			select {
			case <-cell.Drained():
			case <-proc.Exited():
				return
			}
		}
		close(drained)
	}()
	select {
	case sig := <-signals:
		return proc.Stop(sig)
	case <-drained:
		r.logger.Info("all-cells-drained")
		return proc.Stop(os.Interrupt)
	case <-proc.Exited():
		return proc.Err()
	}
}

// cellCollector reports every cell's containers and resources at scrape time.
type cellCollector struct{ rep *Rep }

var (
	evacuatingDesc = prometheus.NewDesc("gavel_rep_evacuating", "1 while the cell drains, else 0.", []string{"cell_id"}, nil)
	remainingDesc  = prometheus.NewDesc("gavel_rep_evacuation_remaining", "Containers a draining cell still holds, by kind (lrps, tasks); reported only while it drains.", []string{"cell_id", "kind"}, nil)
	containersDesc = prometheus.NewDesc("gavel_rep_containers", "Containers of the cell by state.", []string{"cell_id", "state"}, nil)
	availableDesc  = prometheus.NewDesc("gavel_rep_resources_available", "Resources of the cell not reserved (memory_mb, disk_mb, containers).", []string{"cell_id", "resource"}, nil)
	totalDesc      = prometheus.NewDesc("gavel_rep_resources_total", "Resources the cell offers (memory_mb, disk_mb, containers).", []string{"cell_id", "resource"}, nil)
)

// Describe sends the descriptors.
func (cc *cellCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- evacuatingDesc
	ch <- remainingDesc
	ch <- containersDesc
	ch <- availableDesc
	ch <- totalDesc
}

// Collect reports each running cell.
func (cc *cellCollector) Collect(ch chan<- prometheus.Metric) {
	states := []executor.State{executor.StateReserved, executor.StateInitializing, executor.StateCreated, executor.StateRunning, executor.StateCompleted}
	for _, cell := range cc.rep.Cells() {
		select {
		case <-cell.ready:
		default:
			continue
		}
		counts := map[executor.State]int{}
		lrps, tasks := 0, 0
		for _, c := range cell.exec.List() {
			counts[c.State]++
			switch {
			case rep.IsLRP(c):
				lrps++
			case rep.IsTask(c):
				tasks++
			}
		}
		evacuating := 0.0
		if cell.evac.Evacuating() {
			evacuating = 1
			ch <- prometheus.MustNewConstMetric(remainingDesc, prometheus.GaugeValue, float64(lrps), cell.ID(), "lrps")
			ch <- prometheus.MustNewConstMetric(remainingDesc, prometheus.GaugeValue, float64(tasks), cell.ID(), "tasks")
		}
		ch <- prometheus.MustNewConstMetric(evacuatingDesc, prometheus.GaugeValue, evacuating, cell.ID())
		for _, s := range states {
			ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, float64(counts[s]), cell.ID(), string(s))
		}
		emit := func(desc *prometheus.Desc, r executor.Resources) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(r.MemoryMB), cell.ID(), "memory_mb")
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(r.DiskMB), cell.ID(), "disk_mb")
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(r.Containers), cell.ID(), "containers")
		}
		emit(availableDesc, cell.exec.RemainingResources())
		emit(totalDesc, cell.exec.TotalResources())
	}
}
