package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	bbsapp "github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/etcdserver"
	"github.com/gavelhq/gavel/internal/freeport"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// daemons are the binaries the cluster runs (gavel-etcd only with
// EtcdProcess).
var daemons = []string{"bbs", "auctioneer", "rep", "gavel-etcd"}

// farm is one rep process running simulated cells.
type farm struct {
	name   string
	cells  []string
	debug  string
	victim bool
	proc   *process
}

// cluster is the running stack.
type cluster struct {
	opts   Options
	dir    string
	binDir string

	ports      *freeport.Picker // the daemons' addresses, chosen before they start
	etcdURL    string
	etcdDebug  string // gavel-etcd's metrics (EtcdProcess only)
	etcd       *process
	bbsAddr    string
	bbsDebug   string
	aucAddr    string
	aucDebug   string
	bbs        *process
	auctioneer *process
	farms      []*farm
	client     *client.Client
}

// buildDaemons builds bbs, auctioneer and rep into dir with `go build`.
func buildDaemons(ctx context.Context, dir string) error {
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	for _, d := range daemons {
		args = append(args, "github.com/gavelhq/gavel/cmd/"+d)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build the daemons (run inside the gavel module, or pass --bin-dir): %w\n%s", err, out)
	}
	return nil
}

// writeJSON writes v as JSON to dir/name.
func writeJSON(dir, name string, v any) (string, error) {
	path := filepath.Join(dir, name)
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", name, err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return path, nil
}

// startCluster starts etcd (a gavel-etcd process, or embedded in the BBS
// with EtcdEmbedded), the BBS, the auctioneer and the cell farms, each as
// its own process, and waits until the BBS holds its lock, the auctioneer
// holds its lock and every cell is registered. On error, whatever started
// is stopped.
func startCluster(ctx context.Context, opts Options, dir, binDir string) (c *cluster, err error) {
	c = &cluster{opts: opts, dir: dir, binDir: binDir, ports: freeport.New()}
	defer func() {
		if err != nil {
			c.stop()
			c = nil
		}
	}()
	addrs := make([]string, 7)
	for i := range addrs {
		if addrs[i], err = c.ports.Addr(); err != nil {
			return c, err
		}
	}
	c.etcdURL = "http://" + addrs[0]
	c.bbsAddr, c.bbsDebug, c.aucAddr, c.aucDebug = addrs[2], addrs[3], addrs[4], addrs[5]
	etcdCfg := map[string]any{
		"data_dir":   filepath.Join(dir, "etcd"),
		"client_url": c.etcdURL,
		"peer_url":   "http://" + addrs[1],
		// At warn etcd logs every slow request with its whole
		// transaction; under a bench that is most of them.
		"log_level": "error",
	}

	// The bench measures scheduling, not TLS: every daemon opts out of mTLS.
	bbsCfg := map[string]any{
		"insecure_plaintext": true,
		"listen_address":     c.bbsAddr,
		"debug_address":      c.bbsDebug,
		"log_level":          opts.LogLevel,
		"instance_id":        "bench-bbs",
	}
	if opts.EtcdMode == EtcdProcess {
		c.etcdDebug = addrs[6]
		if c.etcd, err = c.startDaemon("etcd", "gavel-etcd", map[string]any{
			"debug_address": c.etcdDebug,
			"log_level":     opts.LogLevel,
			"embedded_etcd": etcdCfg, // etcd's logs go to etcd.log with the daemon's
		}); err != nil {
			return c, err
		}
		if err := c.waitFor(ctx, c.etcd, time.Minute, "etcd to elect itself leader", func(ctx context.Context) bool {
			m, err := scrape(ctx, c.etcdDebug)
			return err == nil && m.value("etcd_server_has_leader") == 1
		}); err != nil {
			return c, err
		}
		// The BBS uses the etcd as an external cluster, with the limits
		// and the batch size it would give its embedded one, so that the
		// two modes differ only in the process boundary.
		bbsCfg["etcd"] = map[string]any{"endpoints": []string{c.etcdURL}}
		bbsCfg["etcd_max_txn_ops"] = etcdserver.DefaultMaxTxnOps
		bbsCfg["etcd_max_request_bytes"] = etcdserver.DefaultMaxRequestBytes
		bbsCfg["commit_batch_ops"] = bbsapp.EmbeddedCommitBatchOps
	} else {
		etcdCfg["log_file"] = filepath.Join(dir, "etcd.log")
		bbsCfg["embedded_etcd"] = etcdCfg
	}
	if opts.CommitWorkers > 0 {
		bbsCfg["commit_workers"] = opts.CommitWorkers
	}
	if opts.CommitBatchOps > 0 {
		bbsCfg["commit_batch_ops"] = opts.CommitBatchOps
	}
	if c.bbs, err = c.startDaemon("bbs", "bbs", bbsCfg); err != nil {
		return c, err
	}
	if c.client, err = client.New(client.Config{Addresses: []string{c.bbsAddr}, Retries: 1}); err != nil {
		return c, fmt.Errorf("bbs client: %w", err)
	}
	if err := c.waitFor(ctx, c.bbs, time.Minute, "the BBS to hold its lock", func(ctx context.Context) bool {
		resp, err := c.client.Ping(ctx, &bbsv1.PingRequest{})
		return err == nil && resp.GetAvailable()
	}); err != nil {
		return c, err
	}

	etcd := map[string]any{"endpoints": []string{c.etcdURL}}
	aucCfg := map[string]any{
		"insecure_plaintext": true,
		"listen_address":     c.aucAddr,
		"debug_address":      c.aucDebug,
		"log_level":          opts.LogLevel,
		"instance_id":        "bench-auctioneer",
		"etcd":               etcd,
		"bbs_addresses":      []string{c.bbsAddr},
	}
	if iv := opts.MinAuctionInterval; iv != nil {
		aucCfg["min_auction_interval"] = iv.String()
	}
	if iv := opts.MaxAuctionInterval; iv != nil {
		aucCfg["max_auction_interval"] = iv.String()
	}
	if c.auctioneer, err = c.startDaemon("auctioneer", "auctioneer", aucCfg); err != nil {
		return c, err
	}
	if err := c.waitFor(ctx, c.auctioneer, time.Minute, "the auctioneer to hold its lock", func(ctx context.Context) bool {
		m, err := scrape(ctx, c.aucDebug)
		return err == nil && m.value("gavel_auctioneer_lock_held") == 1
	}); err != nil {
		return c, err
	}

	c.farms = planFarms(opts)
	index := 0
	for _, f := range c.farms {
		if f.debug, err = c.ports.Addr(); err != nil {
			return c, err
		}
		if f.proc, err = c.startDaemon(f.name, "rep", map[string]any{
			"insecure_plaintext": true,
			"cell_id":            f.name,
			"zone":               "z1",
			"index":              index,
			"listen_address":     "127.0.0.1:0",
			"debug_address":      f.debug,
			"log_level":          opts.LogLevel,
			"etcd":               etcd,
			"bbs_addresses":      []string{c.bbsAddr},
			"backend":            "sim",
			"sim_cells":          len(f.cells),
			"capacity": map[string]any{
				"memory_mb": opts.CellMemoryMB, "disk_mb": opts.CellDiskMB, "containers": opts.CellContainers,
			},
			"presence_ttl": opts.PresenceTTL.String(),
			"claim_delay":  opts.ClaimDelay.String(),
		}); err != nil {
			return c, err
		}
		index += len(f.cells)
	}
	err = c.waitFor(ctx, nil, 3*time.Minute, fmt.Sprintf("%d cells to register", opts.Cells), func(ctx context.Context) bool {
		for _, f := range c.farms {
			if f.proc.exited() {
				return true // reported below
			}
		}
		resp, err := c.client.ListCells(ctx, &bbsv1.ListCellsRequest{})
		return err == nil && len(resp.GetCells()) == opts.Cells
	})
	for _, f := range c.farms {
		if f.proc.exited() {
			return c, f.proc.exitError()
		}
	}
	return c, err
}

// planFarms splits the cells into rep processes of at most CellsPerProcess
// cells, the cells to kill in processes of their own. Cell j of farm
// "cells-NN" is "cells-NN-j".
func planFarms(opts Options) []*farm {
	var farms []*farm
	add := func(n int, victim bool) {
		for n > 0 {
			size := min(n, opts.CellsPerProcess)
			name := fmt.Sprintf("cells-%02d", len(farms))
			f := &farm{name: name, victim: victim}
			for j := range size {
				f.cells = append(f.cells, name+"-"+strconv.Itoa(j))
			}
			farms = append(farms, f)
			n -= size
		}
	}
	kill := opts.killCount()
	add(opts.Cells-kill, false)
	add(kill, true)
	return farms
}

// startDaemon writes cfg to name.json and starts bin -config name.json.
func (c *cluster) startDaemon(name, bin string, cfg map[string]any) (*process, error) {
	path, err := writeJSON(c.dir, name+".json", cfg)
	if err != nil {
		return nil, err
	}
	return startProcess(c.dir, name, filepath.Join(c.binDir, bin), "-config", path)
}

// waitFor polls cond every 100 ms until it holds, p exits, ctx ends or
// timeout passes.
func (c *cluster) waitFor(ctx context.Context, p *process, timeout time.Duration, what string, cond func(context.Context) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if p != nil && p.exited() {
			return fmt.Errorf("waiting for %s: %w", what, p.exitError())
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok := cond(cctx)
		cancel()
		if ok {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %s waiting for %s", timeout, what)
			if p != nil {
				msg += fmt.Sprintf("; end of %s:\n%s", p.logPath, p.logTail(20))
			}
			return fmt.Errorf("%s", msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkAlive returns an error naming the first daemon that exited, other
// than the killed farms.
func (c *cluster) checkAlive() error {
	for _, p := range c.daemons() {
		if p.exited() {
			return p.exitError()
		}
	}
	return nil
}

// daemons returns the processes expected to be running.
func (c *cluster) daemons() []*process {
	var out []*process
	for _, p := range []*process{c.etcd, c.bbs, c.auctioneer} {
		if p != nil {
			out = append(out, p)
		}
	}
	for _, f := range c.farms {
		if f.proc != nil && !(f.victim && f.proc.exited()) {
			out = append(out, f.proc)
		}
	}
	return out
}

// stop stops the farms, the auctioneer, the BBS and etcd, in that order.
func (c *cluster) stop() {
	if c.client != nil {
		_ = c.client.Close()
	}
	done := make(chan struct{})
	for _, f := range c.farms {
		go func() {
			if f.proc != nil {
				f.proc.stop()
			}
			done <- struct{}{}
		}()
	}
	for range c.farms {
		<-done
	}
	if c.auctioneer != nil {
		c.auctioneer.stop()
	}
	if c.bbs != nil {
		c.bbs.stop()
	}
	if c.etcd != nil {
		c.etcd.stop()
	}
}
