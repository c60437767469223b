// Package devcluster runs a whole Gavel on one machine as one ifrit group:
// an embedded etcd, an embedded NATS server, the BBS, the auctioneer, three
// cells with the process backend in zones z1, z2 and z3, and the route
// emitter. `gavel dev` (and so `make run`) is a thin command over it.
package devcluster

import (
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"

	auctioneerapp "github.com/gavelhq/gavel/auctioneer/app"
	bbsapp "github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/encryption"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdserver"
	repapp "github.com/gavelhq/gavel/rep/app"
	emitterapp "github.com/gavelhq/gavel/route-emitter/app"
	"github.com/gavelhq/gavel/route-emitter/devrouter"
)

// Options configure a dev cluster.
type Options struct {
	// DataDir keeps etcd's data, the cells' containers and the log (default .gavel).
	DataDir string
	// BBSAddress is the BBS's gRPC address (default 127.0.0.1:8889).
	BBSAddress string
	// Cells is how many cells run (default 3, in zones z1, z2, z3, ...).
	Cells int
	// CellMemoryMB, CellDiskMB and CellContainers size each cell (default 4096, 16384, 100).
	CellMemoryMB, CellDiskMB, CellContainers int
	// PortRangeStart is the first host port given to containers (default 61000); each cell gets 1000.
	PortRangeStart uint32
	// NATSPort is the embedded NATS server's port (default 4222; -1 picks a free one).
	NATSPort int
	// Accelerated shortens the presence TTL, lock TTLs and convergence interval (for tests).
	Accelerated bool
	// DebugAddress is the BBS's metrics and pprof address (default 127.0.0.1:17017).
	DebugAddress string
	// KeeperPath is the cells' gavel-keeper (default: the running binary re-executed as the keeper).
	KeeperPath string
	// RouterAddress is the dev router's HTTP address (default 127.0.0.1:8080).
	RouterAddress string
	// Backend is the cells' container backend: "process" (default), "runc"
	// (real containers; needs root, runc and the CNI plugins) or "garden"
	// (each cell drives its own Garden server over a runc backend).
	Backend string
	// Bridge configures the cc-bridge daemons (ccbridge.go).
	Bridge BridgeOptions
	// EncryptionKeyFile, when set, is a 32-byte key the BBS seals records with (label "dev").
	EncryptionKeyFile string
	// AuctionSeed is the auctioneer's seed: auction n breaks ties with
	// AuctionSeed + n, so gavel sim can replay it (default 0).
	AuctionSeed int64
}

func (o Options) withDefaults() Options {
	if o.DataDir == "" {
		o.DataDir = ".gavel"
	}
	if o.BBSAddress == "" {
		o.BBSAddress = bbsapp.DefaultListenAddress
	}
	if o.Cells == 0 {
		o.Cells = 3
	}
	if o.CellMemoryMB == 0 {
		o.CellMemoryMB = 4096
	}
	if o.CellDiskMB == 0 {
		o.CellDiskMB = 16384
	}
	if o.CellContainers == 0 {
		o.CellContainers = 100
	}
	if o.PortRangeStart == 0 {
		o.PortRangeStart = 61000
	}
	if o.NATSPort == 0 {
		o.NATSPort = 4222
	}
	if o.DebugAddress == "" {
		o.DebugAddress = bbsapp.DefaultDebugAddress
	}
	if o.Backend == "" {
		o.Backend = repapp.BackendProcess
	}
	if o.RouterAddress == "" {
		o.RouterAddress = DefaultRouterAddress
	}
	return o
}

// DefaultRouterAddress is where the dev router listens unless told otherwise.
const DefaultRouterAddress = "127.0.0.1:8080"

// Cluster is a running (or starting) dev cluster.
type Cluster struct {
	opts   Options
	logger lager.Logger

	etcd       *etcdserver.Embedded
	nats       *server.Server
	bbs        *bbsapp.BBS
	auctioneer *auctioneerapp.Auctioneer
	reps       []*repapp.Rep
	emitter    *emitterapp.RouteEmitter
	router     *devrouter.Router
	// busyboxRootfs is the busybox rootfs container cells offer ("" for none).
	busyboxRootfs string
	bridge        atomic.Pointer[BridgeInfo]
}

// New prepares a cluster; Runner starts it.
func New(opts Options, logger lager.Logger) *Cluster {
	return &Cluster{opts: opts.withDefaults(), logger: logger}
}

// Info says what runs where, once the cluster is ready.
type Info struct {
	DataDir        string
	BBSAddress     string
	BBSDebug       string
	Etcd           []string
	NATS           string
	Auctioneer     string
	Cells          []CellInfo
	RouteEmitterOK bool
	Bridge         BridgeInfo
	// Router is the dev router's HTTP address.
	Router string
}

// CellInfo is one cell's id, zone and address.
type CellInfo struct{ ID, Zone, Address string }

// Info describes the running cluster.
func (c *Cluster) Info() Info {
	info := Info{DataDir: c.opts.DataDir, BBSAddress: c.bbs.Addr(), BBSDebug: c.opts.DebugAddress, Etcd: c.etcd.Endpoints(), RouteEmitterOK: c.emitter != nil, Bridge: c.BridgeInfo()}
	if c.nats != nil {
		info.NATS = c.nats.ClientURL()
	}
	if c.auctioneer != nil {
		info.Auctioneer = c.auctioneer.Addr()
	}
	if c.router != nil {
		info.Router = c.router.Addr()
	}
	for i, r := range c.reps {
		for _, cell := range r.Cells() {
			info.Cells = append(info.Cells, CellInfo{ID: cell.ID(), Zone: zone(i), Address: cell.Addr()})
		}
	}
	return info
}

func zone(i int) string { return "z" + strconv.Itoa(i%3+1) }

// timings are the durations the cluster runs with.
type timings struct {
	lockTTL, lockRetry, presenceTTL, presenceRetry, bulkSync, convergence, staleUnclaimed, grace time.Duration
}

func (c *Cluster) timings() timings {
	if c.opts.Accelerated {
		return timings{2 * time.Second, 200 * time.Millisecond, 3 * time.Second, 500 * time.Millisecond, 2 * time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}
	}
	return timings{15 * time.Second, 5 * time.Second, 15 * time.Second, 5 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second, 10 * time.Second}
}

// Runner starts, in order: etcd, NATS, the BBS, the auctioneer, the cells,
// the dev router and the route emitter. A signal stops them in reverse order.
func (c *Cluster) Runner() ifrit.Runner {
	c.etcd = etcdserver.New(etcdserver.Config{
		DataDir:   filepath.Join(c.opts.DataDir, "etcd"),
		ClientURL: "http://127.0.0.1:0",
		PeerURL:   "http://127.0.0.1:0",
		LogFile:   filepath.Join(c.opts.DataDir, "etcd.log"),
	}, c.logger)
	return grouper.NewOrdered(os.Interrupt, grouper.Members{
		{Name: "etcd", Runner: c.etcd},
		{Name: "nats", Runner: ifrit.RunFunc(c.runNATS)},
		{Name: "bbs", Runner: ifrit.RunFunc(c.runBBS)},
		{Name: "auctioneer", Runner: ifrit.RunFunc(c.runAuctioneer)},
		{Name: "cells", Runner: ifrit.RunFunc(c.runCells)},
		{Name: "router", Runner: ifrit.RunFunc(c.runRouter)},
		{Name: "route-emitter", Runner: ifrit.RunFunc(c.runEmitter)},
		{Name: "cc-bridge", Runner: ifrit.RunFunc(c.runBridge)},
	})
}

// runNested runs r as part of this member: ready when r is, stopped on a signal.
func runNested(r ifrit.Runner, signals <-chan os.Signal, ready chan<- struct{}) error {
	p := ifrit.Background(r)
	select {
	case <-p.Ready():
	case err := <-p.Wait():
		return err
	}
	close(ready)
	select {
	case sig := <-signals:
		p.Signal(sig)
		return <-p.Wait()
	case err := <-p.Wait():
		return err
	}
}

func (c *Cluster) etcdConfig() etcdclient.Config {
	return etcdclient.Config{Endpoints: c.etcd.Endpoints()}
}

func (c *Cluster) runNATS(signals <-chan os.Signal, ready chan<- struct{}) error {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: c.opts.NATSPort, NoSigs: true, NoLog: true})
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("nats: not ready on port %d (is the port taken? set another with --nats-port)", c.opts.NATSPort)
	}
	c.nats = ns
	close(ready)
	<-signals
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

func (c *Cluster) runBBS(signals <-chan os.Signal, ready chan<- struct{}) error {
	t := c.timings()
	cfg := bbsapp.DefaultConfig()
	cfg.InsecurePlaintext = true // gavel dev runs plaintext (DESIGN.md allows it)
	cfg.ListenAddress = c.opts.BBSAddress
	cfg.DebugAddress = c.opts.DebugAddress
	cfg.InstanceID = "dev-bbs"
	cfg.Etcd = c.etcdConfig()
	cfg.EtcdMaxTxnOps = int(etcdserver.DefaultMaxTxnOps)
	cfg.CommitBatchOps = bbsapp.EmbeddedCommitBatchOps
	cfg.LockTTL, cfg.LockRetryInterval = config.Duration(t.lockTTL), config.Duration(t.lockRetry)
	cfg.Convergence.Interval = config.Duration(t.convergence)
	cfg.Convergence.StaleUnclaimed = config.Duration(t.staleUnclaimed)
	if c.opts.EncryptionKeyFile != "" {
		cfg.Encryption = encryption.Config{Keys: map[string]encryption.Key{"dev": {KeyFile: c.opts.EncryptionKeyFile}}, ActiveKeyLabel: "dev"}
	}
	// One pass once the cells have had a presence TTL to come back, so a
	// restarted cluster is back to desired within seconds, not an interval.
	cfg.Convergence.CellReturn = config.Duration(t.presenceTTL + time.Second)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("bbs config: %w", err)
	}
	c.bbs = bbsapp.New(cfg, c.logger.Session("bbs"))
	p := ifrit.Background(c.bbs.Runner())
	// The BBS is ready for the rest once it serves and holds its lock.
	deadline := time.After(60 * time.Second)
	for !c.bbs.Held() {
		select {
		case err := <-p.Wait():
			return fmt.Errorf("bbs: %w", err)
		case <-deadline:
			p.Signal(os.Interrupt)
			<-p.Wait()
			return fmt.Errorf("bbs did not become active within 60s")
		case <-time.After(50 * time.Millisecond):
		}
	}
	close(ready)
	select {
	case sig := <-signals:
		p.Signal(sig)
		return <-p.Wait()
	case err := <-p.Wait():
		return err
	}
}

func (c *Cluster) runAuctioneer(signals <-chan os.Signal, ready chan<- struct{}) error {
	t := c.timings()
	cfg := auctioneerapp.DefaultConfig()
	cfg.InsecurePlaintext = true // gavel dev runs plaintext (DESIGN.md allows it)
	cfg.ListenAddress, cfg.DebugAddress = "127.0.0.1:0", "127.0.0.1:0"
	cfg.InstanceID = "dev-auctioneer"
	cfg.Seed = c.opts.AuctionSeed
	cfg.Etcd = c.etcdConfig()
	cfg.BBSAddresses = []string{c.bbs.Addr()}
	cfg.LockTTL, cfg.LockRetryInterval = config.Duration(t.lockTTL), config.Duration(t.lockRetry)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("auctioneer config: %w", err)
	}
	c.auctioneer = auctioneerapp.New(cfg, c.logger.Session("auctioneer"))
	return runNested(c.auctioneer.Runner(), signals, ready)
}

func (c *Cluster) runCells(signals <-chan os.Signal, ready chan<- struct{}) error {
	t := c.timings()
	if c.opts.Backend != repapp.BackendProcess {
		if err := CheckContainerHost(""); err != nil {
			return fmt.Errorf("--backend %s: %w", c.opts.Backend, err)
		}
		c.busyboxRootfs = c.buildBusyboxRootfs()
	}
	members := grouper.Members{}
	for i := 0; i < c.opts.Cells; i++ {
		cfg := repapp.DefaultConfig()
		cfg.InsecurePlaintext = true // gavel dev runs plaintext (DESIGN.md allows it)
		cfg.CellID = "cell-" + strconv.Itoa(i+1)
		cfg.Zone = zone(i)
		cfg.Index = int32(i)
		cfg.ListenAddress, cfg.DebugAddress = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Etcd = c.etcdConfig()
		cfg.BBSAddresses = []string{c.bbs.Addr()}
		if err := c.configureBackend(&cfg, i); err != nil {
			return err
		}
		cfg.Capacity = repapp.CapacityConfig{MemoryMB: c.opts.CellMemoryMB, DiskMB: c.opts.CellDiskMB, Containers: c.opts.CellContainers}
		cfg.PresenceTTL, cfg.PresenceRetryInterval = config.Duration(t.presenceTTL), config.Duration(t.presenceRetry)
		cfg.BulkSyncInterval = config.Duration(t.bulkSync)
		cfg.GraceTime = config.Duration(t.grace)
		cfg.DestroyContainersOnExit = true
		cfg.LogArchive.Path = filepath.Join(c.opts.DataDir, "logs", cfg.CellID+".json")
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("cell %s config: %w", cfg.CellID, err)
		}
		r := repapp.New(cfg, c.logger.Session(cfg.CellID))
		c.reps = append(c.reps, r)
		var cell ifrit.Runner = r.Runner()
		if c.opts.Backend == repapp.BackendGarden {
			// The cell's own Garden server starts before its rep and stops after it.
			cell = grouper.NewOrdered(os.Interrupt, grouper.Members{
				{Name: "garden", Runner: c.gardenServer(cfg, i)},
				{Name: "rep", Runner: cell},
			})
		}
		members = append(members, grouper.Member{Name: cfg.CellID, Runner: c.keepGoing(cfg.CellID, cell)})
	}
	return runNested(grouper.NewParallel(os.Interrupt, members), signals, ready)
}

// keepGoing runs one cell so that its end does not end the cluster: a
// drained cell exits on its own (0 when empty, non-zero at its evacuation
// timeout), and a failed cell must not take the others down. Either is
// logged; the member then waits for the cluster's stop.
func (c *Cluster) keepGoing(cellID string, r ifrit.Runner) ifrit.Runner {
	return ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		p := ifrit.Background(r)
		select {
		case <-p.Ready():
		case err := <-p.Wait():
			return fmt.Errorf("cell %s: %w", cellID, err)
		}
		close(ready)
		select {
		case sig := <-signals:
			p.Signal(sig)
			return <-p.Wait()
		case err := <-p.Wait():
			if err != nil {
				c.logger.Error("cell-exited", err, lager.Data{"cell_id": cellID})
			} else {
				c.logger.Info("cell-exited", lager.Data{"cell_id": cellID, "reason": "drained"})
			}
			<-signals
			return nil
		}
	})
}

// runRouter runs the dev router on the registrations the route emitter
// sends to NATS (it starts first, so the emitter's greet finds it).
func (c *Cluster) runRouter(signals <-chan os.Signal, ready chan<- struct{}) error {
	c.router = devrouter.New(devrouter.Config{ListenAddress: c.opts.RouterAddress, NATSURL: c.nats.ClientURL()}, c.logger.Session("router"))
	err := c.router.Run(signals, ready)
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		return fmt.Errorf("%w (set another with --router-address)", err)
	}
	return err
}

func (c *Cluster) runEmitter(signals <-chan os.Signal, ready chan<- struct{}) error {
	t := c.timings()
	cfg := emitterapp.DefaultConfig()
	cfg.InsecurePlaintext = true // gavel dev runs plaintext (DESIGN.md allows it)
	cfg.NATSURLs = []string{c.nats.ClientURL()}
	cfg.BBSAddresses = []string{c.bbs.Addr()}
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.InstanceID = "dev-route-emitter"
	cfg.Etcd = c.etcdConfig()
	cfg.LockTTL, cfg.LockRetryInterval = config.Duration(t.lockTTL), config.Duration(t.lockRetry)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("route emitter config: %w", err)
	}
	c.emitter = emitterapp.New(cfg, c.logger.Session("route-emitter"))
	return runNested(c.emitter.Runner(), signals, ready)
}

// Named clusters take their fixed ports from [namedPortBase,
// namedPortBase+namedPortSpan), below Linux's default ephemeral range
// (32768-60999): a port chosen there and bound a moment later cannot be
// handed in between to a component that binds port 0.
const (
	namedPortBase = 18000
	namedPortSpan = 2000
)

// NamedPorts returns n distinct loopback ports that are free now, for the
// cluster called name. They lie below the kernel's ephemeral port range
// (read from ephemeralRange, "low high" as in
// /proc/sys/net/ipv4/ip_local_port_range; "" means Linux's default), so no
// port-0 bind can take one before the cluster binds it, and the search
// starts at an offset derived from the name, so clusters of different names
// started together rarely probe the same ports.
func NamedPorts(name string, n int, ephemeralRange string) ([]int, error) {
	lo, hi := namedPortBase, namedPortBase+namedPortSpan
	if f := strings.Fields(ephemeralRange); len(f) == 2 {
		if low, err := strconv.Atoi(f[0]); err == nil && low < hi {
			hi = low
		}
	}
	if hi-lo < n {
		return nil, fmt.Errorf("named ports: the ephemeral port range starts at %d, leaving fewer than %d ports from %d", hi, n, lo)
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	span := hi - lo
	start := int(h.Sum32() % uint32(span))
	var out []int
	for i := 0; i < span && len(out) < n; i++ {
		p := lo + (start+i)%span
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		out = append(out, p)
	}
	if len(out) < n {
		return nil, fmt.Errorf("named ports: only %d of the %d ports %d-%d are free", len(out), n, lo, hi-1)
	}
	return out, nil
}
