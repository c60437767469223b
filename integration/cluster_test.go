package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	auctioneerapp "github.com/gavelhq/gavel/auctioneer/app"
	bbsapp "github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/bbs/encryption"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/freeport"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
	"github.com/gavelhq/gavel/locket"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repapp "github.com/gavelhq/gavel/rep/app"
	emitterapp "github.com/gavelhq/gavel/route-emitter/app"
)

// The accelerated timings every cluster runs with.
const (
	lockTTL             = 2 * time.Second
	lockRetry           = 200 * time.Millisecond
	presenceTTL         = 3 * time.Second
	presenceRetry       = 500 * time.Millisecond
	convergenceInterval = time.Second
	staleUnclaimed      = 2 * time.Second
	bulkSyncInterval    = time.Second
	graceTime           = 3 * time.Second
	startupCheck        = 200 * time.Millisecond

	// startTimeout bounds starting one daemon.
	startTimeout = 30 * time.Second
	// placeTimeout bounds a desire (or a repair) until every instance runs.
	placeTimeout = 30 * time.Second
)

// cellSpec describes one cell of a cluster.
type cellSpec struct {
	zone     string
	tags     []string
	memoryMB int // default 1024
}

// options shape a cluster; the zero value is one BBS and three 1 GB cells in
// zones z1, z2 and z3, and no route emitter.
type options struct {
	cells       []cellSpec
	bbsReplicas int
	// routeEmitter adds a NATS server (in the test process) and the route
	// emitter (global mode, holding its lock).
	routeEmitter bool
	// backend is the cells' container backend: "process" (default), "runc"
	// (real containers) or "garden" (each cell drives its own gavel-garden
	// over runc); see containers_test.go.
	backend string
	// convergenceInterval and staleUnclaimed override the accelerated
	// timings (a test that must not be rescued by convergence sets them long).
	convergenceInterval, staleUnclaimed time.Duration
	// encryptionKey, when set, is the 32-byte key the BBS seals records with (label "it").
	encryptionKey []byte
	// etcdMembers above 1 runs a multi-member etcd cluster, each member its
	// own process (see ha_test.go); etcdQuota is their --quota-backend-bytes
	// (default 256 MiB).
	etcdMembers int
	etcdQuota   int64
	// consulAddr, if set, makes every daemon keep its locks and presences
	// in Consul at this address (the locket/consultest double).
	consulAddr string
}

func (o options) withDefaults() options {
	if len(o.cells) == 0 {
		o.cells = []cellSpec{{zone: "z1"}, {zone: "z2"}, {zone: "z3"}}
	}
	for i := range o.cells {
		if o.cells[i].memoryMB == 0 {
			o.cells[i].memoryMB = 1024
		}
	}
	if o.bbsReplicas == 0 {
		o.bbsReplicas = 1
	}
	if o.backend == "" {
		o.backend = repapp.BackendProcess
	}
	if o.convergenceInterval == 0 {
		o.convergenceInterval = convergenceInterval
	}
	if o.staleUnclaimed == 0 {
		o.staleUnclaimed = staleUnclaimed
	}
	return o
}

// components are the names the cluster issues mTLS certificates for, and
// their identities; "client" (the test's and the CLI's) is the operator's.
// Each rep gets its own certificate for its cell id (writeRepConfig).
var components = map[string]authz.Identity{
	"bbs": {Role: authz.BBS}, "auctioneer": {Role: authz.Auctioneer},
	"route-emitter": {Role: authz.RouteEmitter}, "client": {Role: authz.Operator},
	"controller": {Role: authz.Controller}, "bulker": {Role: authz.Bulker},
}

// cluster is one scenario's Gavel: every component a separate OS process,
// every gRPC hop mutual TLS with certificates from one test CA (the default
// configs, no insecure_plaintext).
type cluster struct {
	t     *testing.T
	dir   string
	opts  options
	ports *freeport.Picker // addresses for daemons configured before they bind

	// certs are each component's TLS files (see components); clientTLS is
	// the test's own and the CLI's ("client"). ca issued them.
	certs     map[string]tlsconfig.Files
	ca        *tlstest.CA
	clientTLS *tls.Config

	etcdEndpoints []string
	etcd          *clientv3.Client
	// members are the etcd member processes when opts.etcdMembers > 1.
	members []*etcdMember

	bbs      []*daemon
	bbsAddrs []string
	bbsc     *client.Client

	auctioneer *daemon
	reps       []*rep
	nats       *natsserver.Server
	emitter    *daemon

	// gardens are the cells' gavel-garden daemons (backend garden), by cell.
	gardens []*daemon

	mu      sync.Mutex
	daemons []*daemon
	// containerCells are the runc depots, bridges and cgroups to remove.
	containerCells []containerCell
}

// rep is one cell's daemon.
type rep struct {
	*daemon
	id, zone, rootDir string
}

// start brings up etcd, the BBS replicas, the auctioneer and the cells, in
// that order, each ready before the next starts. Everything is killed when
// the test ends; if it failed, the daemons' logs are dumped first.
func start(t *testing.T, opts options) *cluster {
	t.Helper()
	skipIfShort(t)
	began := time.Now()
	c := &cluster{t: t, dir: t.TempDir(), opts: opts.withDefaults(), ports: freeport.New(), certs: map[string]tlsconfig.Files{}}
	t.Cleanup(c.cleanup)
	c.ca = tlstest.NewCA(t, "gavel")
	for name, id := range components {
		c.certs[name] = c.ca.IssueFor(t, id)
	}
	var err error
	if c.clientTLS, err = c.certs["client"].Client(""); err != nil {
		t.Fatalf("client TLS: %v", err)
	}

	if c.opts.etcdMembers > 1 {
		c.startEtcdMembers()
	} else {
		c.startEtcd()
	}
	c.etcd, err = clientv3.New(clientv3.Config{Endpoints: c.etcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}

	for i := 0; i < c.opts.bbsReplicas; i++ {
		c.bbsAddrs = append(c.bbsAddrs, c.freeAddr())
	}
	for i := range c.bbsAddrs {
		c.bbs = append(c.bbs, c.spawn(fmt.Sprintf("bbs-%d", i), bin("bbs"), "-config", c.writeBBSConfig(i)))
	}
	c.bbsc, err = client.New(client.Config{Addresses: c.bbsAddrs, TLS: c.clientTLS})
	if err != nil {
		t.Fatalf("bbs client: %v", err)
	}
	c.waitActiveBBS(startTimeout)

	c.auctioneer = c.spawn("auctioneer", bin("auctioneer"), "-config", c.writeAuctioneerConfig())
	waitFor(t, startTimeout, "the auctioneer holds its lock", func() error {
		if err := c.auctioneer.exitedErr(); err != nil {
			return err
		}
		_, err := locket.FetchLock(ctx(t), c.etcd, "", "auctioneer")
		return err
	})

	for i, spec := range c.opts.cells {
		id := fmt.Sprintf("cell-%d", i+1)
		r := &rep{id: id, zone: spec.zone, rootDir: filepath.Join(c.dir, id)}
		r.daemon = c.spawn(id, bin("rep"), "-config", c.writeRepConfig(i, r))
		c.reps = append(c.reps, r)
	}
	c.waitCells(c.cellIDs()...)
	if c.opts.routeEmitter {
		c.startRouteEmitter()
	}
	t.Logf("cluster up in %s: %d BBS, auctioneer, %d cells, route emitter %v, mTLS on every hop (%s)",
		time.Since(began).Round(time.Millisecond), len(c.bbs), len(c.reps), c.opts.routeEmitter, c.dir)
	return c
}

// startEtcd starts the single etcd process (testdata/etcd) and records its
// endpoints.
func (c *cluster) startEtcd() {
	c.t.Helper()
	etcd := c.spawn("etcd", bin("etcd"), "-data-dir", filepath.Join(c.dir, "etcd"))
	waitFor(c.t, startTimeout, "etcd prints its endpoints", func() error {
		line := etcd.logLine("endpoints ")
		if line == "" {
			if err := etcd.exitedErr(); err != nil {
				return err
			}
			return errors.New("no endpoints line yet")
		}
		c.etcdEndpoints = strings.Split(strings.TrimPrefix(line, "endpoints "), ",")
		return nil
	})
}

// locketConfig is every daemon's locket section: etcd, or Consul when the
// options name a Consul address.
func (c *cluster) locketConfig() locket.Config {
	if c.opts.consulAddr == "" {
		return locket.Config{}
	}
	return locket.Config{Backend: locket.BackendConsul, Consul: locket.ConsulConfig{Address: c.opts.consulAddr}}
}

// skipIfShort skips end-to-end tests under go test -short.
func skipIfShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
}

// client is a BBS client over every replica.
func (c *cluster) client() *client.Client { return c.bbsc }

func (c *cluster) cellIDs() []string {
	var ids []string
	for _, r := range c.reps {
		ids = append(ids, r.id)
	}
	return ids
}

// waitCells waits until exactly these cells are registered.
func (c *cluster) waitCells(ids ...string) {
	c.t.Helper()
	want := slices.Clone(ids)
	slices.Sort(want)
	waitFor(c.t, startTimeout, "cells "+strings.Join(want, ",")+" registered", func() error {
		for _, r := range c.reps {
			if slices.Contains(want, r.id) {
				if err := r.exitedErr(); err != nil {
					return err
				}
			}
		}
		resp, err := c.bbsc.ListCells(ctx(c.t), &bbsv1.ListCellsRequest{})
		if err != nil {
			return err
		}
		var got []string
		for _, cell := range resp.GetCells() {
			got = append(got, cell.GetCellId())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("cells %v", got)
		}
		return nil
	})
}

// killRep SIGKILLs cell i's rep (only the rep: its app processes live on, as
// after a rep crash).
func (c *cluster) killRep(i int) { c.reps[i].kill() }

// stopBBS SIGKILLs BBS replica i.
func (c *cluster) stopBBS(i int) { c.bbs[i].kill() }

// startBBS starts BBS replica i again with its config and address.
func (c *cluster) startBBS(i int) {
	c.t.Helper()
	if err := c.bbs[i].start(); err != nil {
		c.t.Fatalf("restart bbs-%d: %v", i, err)
	}
}

// pingBBS asks replica i alone whether it is the active one.
func (c *cluster) pingBBS(i int) (bool, error) {
	bc, err := client.New(client.Config{Addresses: []string{c.bbsAddrs[i]}, Retries: 1, TLS: c.clientTLS})
	if err != nil {
		return false, err
	}
	defer bc.Close()
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := bc.Ping(cctx, &bbsv1.PingRequest{})
	if err != nil {
		return false, err
	}
	return resp.GetAvailable(), nil
}

// waitActiveBBS waits until one replica holds the lock and returns its index.
func (c *cluster) waitActiveBBS(timeout time.Duration) int {
	c.t.Helper()
	active := -1
	waitFor(c.t, timeout, "a BBS replica is active", func() error {
		var errs []error
		for i, d := range c.bbs {
			if !d.running() {
				continue
			}
			ok, err := c.pingBBS(i)
			if ok {
				active = i
				return nil
			}
			errs = append(errs, fmt.Errorf("bbs-%d: available=%v err=%v", i, ok, err))
		}
		return errors.Join(errs...)
	})
	return active
}

func (c *cluster) writeBBSConfig(i int) string {
	cfg := bbsapp.DefaultConfig()
	cfg.ListenAddress = c.bbsAddrs[i]
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.InstanceID = fmt.Sprintf("bbs-%d", i)
	cfg.Etcd = etcdclient.Config{Endpoints: c.etcdEndpoints}
	cfg.Locket = c.locketConfig()
	cfg.LockTTL, cfg.LockRetryInterval = config.Duration(lockTTL), config.Duration(lockRetry)
	cfg.Convergence.Interval = config.Duration(c.opts.convergenceInterval)
	cfg.Convergence.StaleUnclaimed = config.Duration(c.opts.staleUnclaimed)
	cfg.Convergence.KickTask = config.Duration(c.opts.convergenceInterval)
	cfg.Convergence.ExpireCompletedTask = config.Duration(max(time.Minute, c.opts.convergenceInterval))
	cfg.TLS, cfg.ClientTLS = c.certs["bbs"], c.certs["bbs"]
	if c.opts.encryptionKey != nil {
		keyFile := filepath.Join(c.dir, "bbs-encryption.key")
		if err := os.WriteFile(keyFile, c.opts.encryptionKey, 0o600); err != nil {
			c.t.Fatal(err)
		}
		cfg.Encryption = encryption.Config{Keys: map[string]encryption.Key{"it": {KeyFile: keyFile}}, ActiveKeyLabel: "it"}
	}
	if err := cfg.Validate(); err != nil {
		c.t.Fatalf("bbs config: %v", err)
	}
	return c.writeJSON(fmt.Sprintf("bbs-%d.json", i), cfg)
}

func (c *cluster) writeAuctioneerConfig() string {
	cfg := auctioneerapp.DefaultConfig()
	cfg.ListenAddress, cfg.DebugAddress = "127.0.0.1:0", "127.0.0.1:0"
	cfg.InstanceID = "auctioneer"
	if c.opts.consulAddr == "" { // with Consul only the BBS needs etcd
		cfg.Etcd = etcdclient.Config{Endpoints: c.etcdEndpoints}
	}
	cfg.Locket = c.locketConfig()
	cfg.BBSAddresses = c.bbsAddrs
	cfg.LockTTL, cfg.LockRetryInterval = config.Duration(lockTTL), config.Duration(lockRetry)
	cfg.CellStateTimeout = config.Duration(2 * time.Second)
	cfg.TLS, cfg.BBSTLS, cfg.RepClientTLS = c.certs["auctioneer"], c.certs["auctioneer"], c.certs["auctioneer"]
	if err := cfg.Validate(); err != nil {
		c.t.Fatalf("auctioneer config: %v", err)
	}
	return c.writeJSON("auctioneer.json", cfg)
}

// portBlocks hands each cell its own host port range within [20000, 30000),
// below the ports internal/freeport gives daemons; ranges may still meet
// another test binary's, which the process backend survives (it checks a port
// is free before using it).
var portBlocks atomic.Uint32

func (c *cluster) writeRepConfig(i int, r *rep) string {
	spec := c.opts.cells[i]
	cfg := repapp.DefaultConfig()
	cfg.CellID, cfg.Zone, cfg.Index = r.id, spec.zone, int32(i)
	cfg.ListenAddress, cfg.DebugAddress = "127.0.0.1:0", "127.0.0.1:0"
	if c.opts.consulAddr == "" { // with Consul only the BBS needs etcd
		cfg.Etcd = etcdclient.Config{Endpoints: c.etcdEndpoints}
	}
	cfg.Locket = c.locketConfig()
	cfg.BBSAddresses = c.bbsAddrs
	block := (portBlocks.Add(1) + uint32(os.Getpid())) % 200
	ports := [2]uint32{20000 + block*50, 20000 + block*50 + 49}
	switch c.opts.backend {
	case repapp.BackendRunc, repapp.BackendGarden:
		c.configureContainerCell(&cfg, i, r, ports)
	case repapp.BackendSim:
		cfg.Backend = repapp.BackendSim
	default:
		cfg.Backend = repapp.BackendProcess
		cfg.Process = repapp.ProcessConfig{RootDir: r.rootDir, PortRangeStart: ports[0], PortRangeEnd: ports[1], HostIP: "127.0.0.1",
			KeeperPath: bin("gavel-keeper")}
	}
	cfg.Capacity = repapp.CapacityConfig{MemoryMB: spec.memoryMB, DiskMB: 8192, Containers: 50}
	cfg.PlacementTags = spec.tags
	cfg.PresenceTTL, cfg.PresenceRetryInterval = config.Duration(presenceTTL), config.Duration(presenceRetry)
	cfg.BulkSyncInterval = config.Duration(bulkSyncInterval)
	cfg.GraceTime = config.Duration(graceTime)
	cfg.StartupCheckInterval = config.Duration(startupCheck)
	cfg.DestroyContainersOnExit = true
	repCert := c.ca.IssueFor(c.t, authz.RepFor(r.id))
	cfg.TLS, cfg.BBSTLS = repCert, repCert
	if err := cfg.Validate(); err != nil {
		c.t.Fatalf("rep config: %v", err)
	}
	return c.writeJSON(r.id+".json", cfg)
}

// startRouteEmitter starts a NATS server in the test process and the route
// emitter as its own process, dialling the BBS with its certificate, and
// waits until it holds its lock.
func (c *cluster) startRouteEmitter() {
	c.t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		c.t.Fatalf("nats: %v", err)
	}
	go ns.Start()
	c.t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		c.t.Fatal("nats: not ready")
	}
	c.nats = ns

	cfg := emitterapp.DefaultConfig()
	cfg.NATSURLs = []string{ns.ClientURL()}
	cfg.BBSAddresses = c.bbsAddrs
	cfg.BBSTLS = c.certs["route-emitter"]
	if c.opts.consulAddr == "" { // with Consul only the BBS needs etcd
		cfg.Etcd = etcdclient.Config{Endpoints: c.etcdEndpoints}
	}
	cfg.Locket = c.locketConfig()
	cfg.InstanceID = "route-emitter"
	cfg.LockTTL, cfg.LockRetryInterval = config.Duration(lockTTL), config.Duration(lockRetry)
	cfg.DebugAddress = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		c.t.Fatalf("route emitter config: %v", err)
	}
	c.emitter = c.spawn("route-emitter", bin("route-emitter"), "-config", c.writeJSON("route-emitter.json", cfg))
	waitFor(c.t, startTimeout, "the route emitter holds its lock", func() error {
		if err := c.emitter.exitedErr(); err != nil {
			return err
		}
		_, err := locket.FetchLock(ctx(c.t), c.etcd, "", emitterapp.LockName)
		return err
	})
}

func (c *cluster) writeJSON(name string, v any) string {
	c.t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		c.t.Fatal(err)
	}
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// cleanup kills every daemon and every process left in the cluster's
// directory (app processes outlive a SIGKILLed rep), then dumps the logs if
// the test failed.
func (c *cluster) cleanup() {
	if c.bbsc != nil {
		_ = c.bbsc.Close()
	}
	if c.etcd != nil {
		_ = c.etcd.Close()
	}
	c.mu.Lock()
	daemons := slices.Clone(c.daemons)
	c.mu.Unlock()
	for i := len(daemons) - 1; i >= 0; i-- {
		daemons[i].kill()
	}
	c.removeContainers()
	killStrays(c.dir)
	if c.t.Failed() {
		for _, d := range daemons {
			d.dump(c.t, 150)
		}
	}
}

// ---- daemons ----

// daemon is one OS process in its own process group, its stdout and stderr
// appended to a log file that survives restarts.
type daemon struct {
	name, path, logPath, dir string
	args, env                []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// spawn starts a daemon and registers it for cleanup.
func (c *cluster) spawn(name, path string, args ...string) *daemon {
	c.t.Helper()
	d := &daemon{name: name, path: path, args: args, dir: c.dir, logPath: filepath.Join(c.dir, name+".log")}
	c.mu.Lock()
	c.daemons = append(c.daemons, d)
	c.mu.Unlock()
	if err := d.start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	return d
}

func (d *daemon) start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil && !closed(d.done) {
		return fmt.Errorf("%s is already running", d.name)
	}
	log, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "=== %s: starting %s %s\n", time.Now().Format(time.TimeOnly), d.path, strings.Join(d.args, " "))
	cmd := exec.Command(d.path, d.args...)
	cmd.Dir = d.dir
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	done := make(chan struct{})
	d.cmd, d.done, d.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		log.Close()
		d.mu.Lock()
		d.err = err
		d.mu.Unlock()
		close(done)
	}()
	return nil
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// running reports whether the process is alive.
func (d *daemon) running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd != nil && !closed(d.done)
}

// exitCode is the exit status once the daemon exited (-1 if killed).
func (d *daemon) exitCode() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd.ProcessState.ExitCode()
}

// exitedErr is nil while the daemon runs and says how it exited otherwise.
func (d *daemon) exitedErr() error {
	if d.running() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Errorf("%s exited: %v (log %s)", d.name, d.err, d.logPath)
}

// kill SIGKILLs the daemon's process group and waits for it.
func (d *daemon) kill() { d.signalGroup(syscall.SIGKILL, 10*time.Second) }

// signalGroup signals the process group and reports whether the daemon
// exited within timeout.
func (d *daemon) signalGroup(sig syscall.Signal, timeout time.Duration) bool {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return true
	}
	if !closed(done) {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// logLine returns the first log line starting with prefix, or "".
func (d *daemon) logLine(prefix string) string {
	f, err := os.Open(d.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), prefix) {
			return s.Text()
		}
	}
	return ""
}

// dump logs the last n lines of the daemon's log.
func (d *daemon) dump(t *testing.T, n int) {
	data, err := os.ReadFile(d.logPath)
	if err != nil {
		t.Logf("--- %s: no log: %v", d.name, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	from := max(0, len(lines)-n)
	t.Logf("--- %s (%s, last %d of %d lines):\n%s", d.name, d.logPath, len(lines)-from, len(lines), strings.Join(lines[from:], "\n"))
}

// strays lists the processes whose working directory is under dir (the
// process backend runs every container process in <root_dir>/<guid>/rootfs).
func strays(dir string) map[int]string {
	found := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+string(filepath.Separator))) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		found[pid] = strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return found
}

// killStrays SIGKILLs every process under dir, each one's keeper first: a
// keeper outliving its process writes the exit status into dir, racing the
// removal of the test's directory.
func killStrays(dir string) {
	found := strays(dir)
	for pid := range found {
		if keeper := keeperOf(pid); keeper > 0 {
			_ = syscall.Kill(keeper, syscall.SIGKILL)
			for deadline := time.Now().Add(5 * time.Second); running(keeper) && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	for pid := range found {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// statFields are the fields of /proc/<pid>/stat after the command name
// (fields[0] is the state, fields[1] the parent's pid), nil when pid is gone.
func statFields(pid int) []string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// keeperOf is the pid of the gavel process keeper that is pid's parent, or 0.
func keeperOf(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	cmdline, _ := os.ReadFile(filepath.Join("/proc", f[1], "cmdline"))
	if ppid <= 1 || !bytes.HasPrefix(cmdline, []byte("gavel-process-keeper\x00")) {
		return 0
	}
	return ppid
}

// running says whether pid exists and is not a zombie.
func running(pid int) bool {
	f := statFields(pid)
	return len(f) > 0 && f[0] != "Z"
}

// ---- waiting and helpers ----

// waitFor polls f until it returns nil and fails the test with f's last
// error after timeout. It returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	began := time.Now()
	deadline := began.Add(timeout)
	for {
		err := f()
		if err == nil {
			return time.Since(began)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ctx is a context for one call: it expires after 10 s (and its resources
// are released then), so a call to a killed daemon cannot hang a test.
func ctx(*testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	time.AfterFunc(10*time.Second, cancel)
	return c
}

// freeAddr returns a loopback address no other daemon of the machine has.
func (c *cluster) freeAddr() string {
	c.t.Helper()
	addr, err := c.ports.Addr()
	if err != nil {
		c.t.Fatal(err)
	}
	return addr
}

// appLRP is a desired LRP running the test app (testdata/app) on port 8080
// with a port health check; mutators adjust it.
func appLRP(guid string, instances int32, mutate ...func(*modelsv1.DesiredLRP)) *modelsv1.DesiredLRP {
	d := &modelsv1.DesiredLRP{
		ProcessGuid: guid, Domain: "it", RootFs: "preloaded:cflinuxfs4", Instances: instances,
		MemoryMb: 64, DiskMb: 64, Ports: []uint32{8080},
		Action:          runAction(bin("app")),
		CheckDefinition: &modelsv1.CheckDefinition{Checks: []*modelsv1.Check{{Check: &modelsv1.Check_TcpCheck{TcpCheck: &modelsv1.TCPCheck{Port: 8080}}}}},
		LogGuid:         guid, LogSource: "APP",
	}
	for _, m := range mutate {
		m(d)
	}
	return d
}

func runAction(path string, args ...string) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: path, Args: args}}}
}

func shAction(script string) *modelsv1.Action { return runAction("/bin/sh", "-c", script) }

func (c *cluster) desire(d *modelsv1.DesiredLRP) {
	c.t.Helper()
	if _, err := c.bbsc.DesireLRP(ctx(c.t), &bbsv1.DesireLRPRequest{DesiredLrp: d}); err != nil {
		c.t.Fatalf("desire %s: %v", d.GetProcessGuid(), err)
	}
}

// actuals lists every instance row (all presences) of guid.
func (c *cluster) actuals(guid string) ([]*modelsv1.ActualLRP, error) {
	resp, err := c.bbsc.ListActualLRPs(ctx(c.t), &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{guid}})
	if err != nil {
		return nil, err
	}
	rows := resp.GetActualLrps()
	slices.SortFunc(rows, func(a, b *modelsv1.ActualLRP) int { return int(a.GetKey().GetIndex() - b.GetKey().GetIndex()) })
	return rows, nil
}

// waitRunning waits until guid has exactly n instance rows, indices 0..n-1,
// every one ORDINARY and RUNNING, and returns them by index.
func (c *cluster) waitRunning(guid string, n int, timeout time.Duration) []*modelsv1.ActualLRP {
	c.t.Helper()
	var rows []*modelsv1.ActualLRP
	took := waitFor(c.t, timeout, fmt.Sprintf("%s: exactly %d instances RUNNING", guid, n), func() error {
		var err error
		if rows, err = c.actuals(guid); err != nil {
			return err
		}
		if len(rows) != n {
			return fmt.Errorf("%d rows: %s", len(rows), describe(rows))
		}
		for i, a := range rows {
			if a.GetKey().GetIndex() != int32(i) || a.GetPresence() != models.Ordinary || a.GetState() != models.Running {
				return fmt.Errorf("not all running: %s", describe(rows))
			}
		}
		return nil
	})
	c.t.Logf("%s: %d instances RUNNING after %s", guid, n, took.Round(time.Millisecond))
	return rows
}

// describe prints instance rows for failure messages.
func describe(rows []*modelsv1.ActualLRP) string {
	var parts []string
	for _, a := range rows {
		p := fmt.Sprintf("[%d %s %s cell=%s crashes=%d", a.GetKey().GetIndex(), models.StateName(a.GetState()),
			models.PresenceName(a.GetPresence()), a.GetInstanceKey().GetCellId(), a.GetCrashCount())
		if e := a.GetPlacementError(); e != "" {
			p += " placement_error=" + strconv.Quote(e)
		}
		if r := a.GetCrashReason(); r != "" {
			p += " crash_reason=" + strconv.Quote(r)
		}
		parts = append(parts, p+"]")
	}
	return strings.Join(parts, " ")
}

// hostAddr is the host:port an instance's container port 8080 is reachable on.
func hostAddr(a *modelsv1.ActualLRP) string {
	for _, p := range a.GetNetInfo().GetPorts() {
		if p.GetContainerPort() == 8080 {
			return net.JoinHostPort(a.GetNetInfo().GetAddress(), strconv.Itoa(int(p.GetHostPort())))
		}
	}
	return ""
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

// get fetches http://addr/path and returns the body.
func get(addr, path string) (string, error) {
	if addr == "" {
		return "", errors.New("no address")
	}
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	return string(body), nil
}

// checkAnswers checks every instance answers / on its host port with its own
// index (the test app's answer).
func checkAnswers(t *testing.T, rows []*modelsv1.ActualLRP) {
	t.Helper()
	for _, a := range rows {
		addr := hostAddr(a)
		var body string
		waitFor(t, 10*time.Second, fmt.Sprintf("instance %d answers on %s", a.GetKey().GetIndex(), addr), func() error {
			var err error
			body, err = get(addr, "/")
			return err
		})
		if want := fmt.Sprintf("index %d\n", a.GetKey().GetIndex()); body != want {
			t.Fatalf("instance %d on %s answered %q, want %q", a.GetKey().GetIndex(), addr, body, want)
		}
	}
}

// gavel runs the CLI against the cluster's BBS and returns its output.
func (c *cluster) gavel(args ...string) (string, error) {
	f := c.certs["client"]
	args = append(args, "--bbs-address", strings.Join(c.bbsAddrs, ","),
		"--ca-file", f.CAFile, "--cert-file", f.CertFile, "--key-file", f.KeyFile)
	cmd := exec.Command(bin("gavel"), args...)
	cmd.Env = append(os.Environ(), "GAVEL_CONFIG="+filepath.Join(c.dir, "no-client-config.json"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}
