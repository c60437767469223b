package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gavelhq/gavel/bbs/client"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Domain is the domain of the benchmark's LRPs.
const Domain = "bench"

// sampleInterval is the timeline's resolution.
const sampleInterval = 200 * time.Millisecond

// ProcessGUID names LRP i of a run.
func ProcessGUID(i int) string { return fmt.Sprintf("bench-%06d", i) }

// Run starts the stack, measures, stops everything and returns the result.
// An error means the run could not be measured (a daemon failed, the
// timeout passed before every instance ran is not an error: the result says
// so). ctx cancels the run.
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("bench options: %w", err)
	}
	res := &Result{Setup: Setup{
		Started: time.Now().UTC(), Cells: opts.Cells, LRPs: opts.lrpCount(), InstancesPerLRP: opts.InstancesPerLRP,
		Instances: opts.Instances, Sizes: opts.Sizes, CellMemoryMB: opts.CellMemoryMB, CellContainers: opts.CellContainers,
		DesireConcurrency: opts.DesireConcurrency, PresenceTTLSec: opts.PresenceTTL.Seconds(), ClaimDelaySec: opts.ClaimDelay.Seconds(),
		CommitWorkers: opts.CommitWorkers, CommitBatchOps: opts.CommitBatchOps, EtcdMode: opts.EtcdMode,
		NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), LoadBefore: loadAverage(), TransparentHugePages: transparentHugePages(),
	}}
	if iv := opts.MinAuctionInterval; iv != nil {
		sec := iv.Seconds()
		res.Setup.MinAuctionIntervalSec = &sec
	}
	if iv := opts.MaxAuctionInterval; iv != nil {
		sec := iv.Seconds()
		res.Setup.MaxAuctionIntervalSec = &sec
	}
	dir, err := os.MkdirTemp(opts.WorkDir, "gavel-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench work dir: %w", err)
	}
	if !opts.KeepWorkDir {
		defer os.RemoveAll(dir)
	}
	binDir, err := filepath.Abs(opts.BinDir)
	if err != nil {
		return nil, fmt.Errorf("--bin-dir %s: %w", opts.BinDir, err)
	}
	if opts.BinDir == "" {
		binDir = filepath.Join(dir, "bin")
		progress(opts, "building the daemons into %s", binDir)
		if err := buildDaemons(ctx, binDir); err != nil {
			return nil, err
		}
	}

	var m *measurement
	fail := func(err error) (*Result, error) {
		f := &Failure{Reason: err.Error()}
		if m != nil {
			f.Placed = m.tr.placedCount()
			if !m.t0.IsZero() {
				f.AfterSeconds = time.Since(m.t0).Seconds()
			}
			m.mu.Lock()
			res.Timeline = append([]Point(nil), m.timeline...)
			m.mu.Unlock()
		}
		res.Failure = f
		res.Setup.LoadAfter = loadAverage()
		return res, err
	}
	startup := time.Now()
	progress(opts, "starting etcd (%s), BBS, auctioneer and %d cells in %s", opts.EtcdMode, opts.Cells, dir)
	c, err := startCluster(ctx, opts, dir, binDir)
	if err != nil {
		return fail(err)
	}
	defer c.stop()
	res.Setup.CellProcesses = len(c.farms)
	res.Setup.StartupSeconds = time.Since(startup).Seconds()

	progress(opts, "measuring raw etcd: %d clients, %s", opts.RawClients, opts.RawDuration)
	serverCPU := c.etcdServerCPU()
	if res.RawEtcd, err = measureRawEtcd(ctx, []string{c.etcdURL}, opts.RawClients, opts.RawValueBytes, opts.RawDuration); err != nil {
		return fail(err)
	}
	if res.RawEtcd.Server, err = serverCPU(float64(res.RawEtcd.Txns)); err != nil {
		return fail(err)
	}
	progress(opts, "raw etcd: %.0f txn/s", res.RawEtcd.TxnsPerSecond)
	progress(opts, "measuring batched etcd: %d clients × %d nested guarded puts, %s", opts.BatchedClients, opts.BatchedKeysPerTxn, opts.RawDuration)
	serverCPU = c.etcdServerCPU()
	if res.BatchedEtcd, err = measureBatchedEtcd(ctx, []string{c.etcdURL}, opts.BatchedClients, opts.BatchedKeysPerTxn, opts.RawValueBytes, opts.RawDuration); err != nil {
		return fail(err)
	}
	if res.BatchedEtcd.Server, err = serverCPU(float64(res.BatchedEtcd.Keys)); err != nil {
		return fail(err)
	}
	progress(opts, "batched etcd: %.0f keys/s", res.BatchedEtcd.KeysPerSecond)

	m = &measurement{c: c, opts: opts, res: res, tr: newTracker()}
	if err := m.run(ctx); err != nil {
		return fail(err)
	}
	return res, nil
}

// measurement holds the phases' shared state.
type measurement struct {
	c    *cluster
	opts Options
	res  *Result
	tr   *tracker
	t0   time.Time // the first DesireLRP call

	desiredInstances atomic.Int64 // instances of the DesireLRP calls that returned

	mu       sync.Mutex
	timeline []Point
}

func (m *measurement) run(ctx context.Context) error {
	list, err := m.c.client.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{Domain: Domain})
	if err != nil {
		return fmt.Errorf("list actual LRPs: %w", err)
	}
	fctx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	followErr := make(chan error, 1)
	go func() { followErr <- m.tr.follow(fctx, m.c.client, list.GetRevision()) }()

	before, err := m.c.snapshot(ctx)
	if err != nil {
		return err
	}
	m.t0 = time.Now()
	sctx, stopSampler := context.WithCancel(ctx)
	defer stopSampler()
	go m.sample(sctx)

	if err := m.placement(ctx, before, followErr); err != nil {
		return err
	}
	if m.opts.KillShare > 0 && m.res.Placement.AllRunning {
		if err := m.recovery(ctx, followErr); err != nil {
			return err
		}
	}
	stopSampler()
	m.mu.Lock()
	m.res.Timeline = m.timeline
	m.mu.Unlock()
	if err := m.settle(ctx); err != nil {
		return err
	}
	m.res.Setup.LoadAfter = loadAverage()
	m.res.Targets = targets(m.res)
	return nil
}

// sample records the timeline until ctx ends.
func (m *measurement) sample(ctx context.Context) {
	tick := time.NewTicker(sampleInterval)
	defer tick.Stop()
	for {
		m.mu.Lock()
		m.timeline = append(m.timeline, Point{Sec: time.Since(m.t0).Seconds(), Running: m.tr.runningCount(), Desired: int(m.desiredInstances.Load())})
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// desiredLRP is LRP i of the run: a simulated process with one port.
func (m *measurement) desiredLRP(i int) *modelsv1.DesiredLRP {
	guid := ProcessGUID(i)
	mem := m.opts.lrpMemory(i)
	return &modelsv1.DesiredLRP{
		ProcessGuid: guid, Domain: Domain, RootFs: "preloaded:cflinuxfs4",
		Instances: int32(m.opts.lrpInstances(i)), MemoryMb: mem, DiskMb: mem,
		Ports: []uint32{8080}, LogGuid: guid, LogSource: "APP", StartTimeoutMs: 60000,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app", User: "vcap"}}},
	}
}

// placement desires every LRP and waits until every instance has run.
func (m *measurement) placement(ctx context.Context, before *snapshot, followErr <-chan error) error {
	p := &m.res.Placement
	p.Instances = m.opts.Instances
	progress(m.opts, "desiring %d LRPs (%d instances)", m.opts.lrpCount(), m.opts.Instances)

	desireDone := make(chan error, 1)
	go func() {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(m.opts.DesireConcurrency)
		for i := range m.opts.lrpCount() {
			g.Go(func() error {
				d := m.desiredLRP(i)
				m.tr.desired(d.GetProcessGuid(), time.Now())
				if _, err := m.c.client.DesireLRP(gctx, &bbsv1.DesireLRPRequest{DesiredLrp: d}); err != nil {
					return fmt.Errorf("desire %s: %w", d.GetProcessGuid(), err)
				}
				m.desiredInstances.Add(int64(d.GetInstances()))
				return nil
			})
		}
		err := g.Wait()
		p.DesireSeconds = time.Since(m.t0).Seconds()
		desireDone <- err
	}()

	deadline := time.Now().Add(m.opts.Timeout)
	lastLine, lastPlaced := time.Now(), 0
	desiring := true
	for {
		placed := m.tr.placedCount()
		if placed >= m.opts.Instances && !desiring {
			break
		}
		select {
		case err := <-desireDone:
			if err != nil {
				return err
			}
			desiring = false
		case err := <-followErr:
			return fmt.Errorf("following events: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if err := m.c.checkAlive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			progress(m.opts, "timed out after %s with %d/%d instances placed", m.opts.Timeout, placed, m.opts.Instances)
			break
		}
		if now := time.Now(); now.Sub(lastLine) >= m.opts.ProgressInterval {
			progress(m.opts, "placement: %d/%d running, %.0f/s (last %.0fs: %.0f/s)", placed, m.opts.Instances,
				float64(placed)/now.Sub(m.t0).Seconds(), now.Sub(lastLine).Seconds(), float64(placed-lastPlaced)/now.Sub(lastLine).Seconds())
			lastLine, lastPlaced = now, placed
		}
	}

	after, err := m.c.snapshot(ctx)
	if err != nil {
		return err
	}
	times := m.tr.runTimes()
	p.Placed = len(times)
	p.AllRunning = p.Placed >= p.Instances
	if p.Placed > 0 {
		p.Seconds = times[len(times)-1].Sub(m.t0).Seconds()
		p.PerSecond = float64(p.Placed) / p.Seconds
	}
	if m.res.RawEtcd.TxnsPerSecond > 0 {
		p.RatioToRawEtcd = p.PerSecond / m.res.RawEtcd.TxnsPerSecond
	}
	p.Tenths = tenths(m.t0, times)
	p.TimeTenths = timeTenths(m.t0, times)
	if len(times) > 0 {
		p.FirstRunningSec = times[0].Sub(m.t0).Seconds()
	}
	if n := len(p.Tenths); n == 10 && p.Tenths[0].PerSecond > 0 {
		p.LastToFirstTenth = p.Tenths[9].PerSecond / p.Tenths[0].PerSecond
	}
	lat := m.tr.latencies()
	slices.Sort(lat)
	p.LatencyP50Ms, p.LatencyP99Ms = ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99))
	if len(lat) > 0 {
		p.LatencyMaxMs = ms(lat[len(lat)-1])
	}
	p.Etcd = etcdUse(before, after, p.Placed)
	p.BatchedCeiling, p.RatioToBatchedEtcd = batchedRatio(p.PerSecond, m.res.BatchedEtcd.KeysPerSecond, p.Etcd.WritesPerInstance)
	p.EtcdLeastMicros = m.res.BatchedEtcd.Server.MicrosPerWrite * p.Etcd.WritesPerInstance
	p.BBS, p.Auctioneer, p.Cells = procUse(before.bbsProc, after.bbsProc), procUse(before.aucProc, after.aucProc), procUse(before.cellsProc, after.cellsProc)
	p.EtcdProcess = etcdProcUse(before, after)
	p.Bench = procUse(before.benchProc, after.benchProc)
	if p.Placed > 0 {
		for _, u := range []*ProcUse{&p.BBS, &p.Auctioneer, &p.Cells, p.EtcdProcess, &p.Bench} {
			if u != nil {
				u.CPUMicrosPerPlaced = u.CPUSeconds * 1e6 / float64(p.Placed)
				u.MinorFaultsPerPlaced = float64(u.MinorFaults) / float64(p.Placed)
				u.CPUPerPlacedInEtcdKeys = inEtcdKeys(u.CPUMicrosPerPlaced, m.res.BatchedEtcd.Server.MicrosPerWrite)
			}
		}
	}
	p.Auctions = auctions(before, after)
	p.Convergence = convergence(before, after)
	p.CellCallErrors = cellCallErrors(before, after)
	p.RunInfo = cellRunInfo(before, after)
	p.CellBatches = cellBatches(before, after)
	p.BBSCalls = histogramsBy(before.bbs, after.bbs, "gavel_grpc_server_handling_seconds", "method")
	p.EventStream.Events, p.EventStream.Resubscribes = m.tr.streamStats()
	progress(m.opts, "placement: %d/%d running after %.1f s (%.0f/s)", p.Placed, p.Instances, p.Seconds, p.PerSecond)
	return nil
}

// inEtcdKeys is micros over etcd's CPU per batched key, microsPerKey (0
// when that is unknown).
func inEtcdKeys(micros, microsPerKey float64) float64 {
	if microsPerKey <= 0 {
		return 0
	}
	return micros / microsPerKey
}

// batchedRatio is the placement rate etcd's batched key rate allows at
// writesPerInstance, and perSecond's share of it (zeros when unknown).
func batchedRatio(perSecond, keysPerSecond, writesPerInstance float64) (ceiling, ratio float64) {
	if keysPerSecond <= 0 || writesPerInstance <= 0 {
		return 0, 0
	}
	ceiling = keysPerSecond / writesPerInstance
	return ceiling, perSecond / ceiling
}

// tenths splits the RUNNING times into ten equal parts.
func tenths(t0 time.Time, times []time.Time) []Tenth {
	n := len(times)
	if n < 10 {
		return nil
	}
	out := make([]Tenth, 10)
	for k := range out {
		from, to := k*n/10, (k+1)*n/10
		// Part k runs from the previous part's last RUNNING to its own;
		// the first from the first RUNNING, so that the pipeline's fill
		// time (reported as first_running_sec) does not count as slowness.
		first, count := from-1, to-from
		if k == 0 {
			first, count = 0, to-1
		}
		start, end := times[first], times[to-1]
		t := Tenth{From: from, To: to, StartSec: start.Sub(t0).Seconds(), EndSec: end.Sub(t0).Seconds()}
		if d := end.Sub(start).Seconds(); d > 0 {
			t.PerSecond = float64(count) / d
		}
		out[k] = t
	}
	return out
}

// timeTenths splits the time from the first RUNNING to the last into ten
// equal slices; each slice's rate is the instances that reached RUNNING in
// it over its length. Unlike tenths (equal counts), a stall shows as a slow
// slice of its real length.
func timeTenths(t0 time.Time, times []time.Time) []Tenth {
	n := len(times)
	if n < 10 {
		return nil
	}
	first, last := times[0], times[n-1]
	span := last.Sub(first)
	if span <= 0 {
		return nil
	}
	out := make([]Tenth, 10)
	i := 0
	for k := range out {
		start := first.Add(span * time.Duration(k) / 10)
		end := first.Add(span * time.Duration(k+1) / 10)
		from := i
		for i < n && (times[i].Before(end) || k == 9) {
			i++
		}
		d := end.Sub(start).Seconds()
		out[k] = Tenth{From: from, To: i, StartSec: start.Sub(t0).Seconds(), EndSec: end.Sub(t0).Seconds(), PerSecond: float64(i-from) / d}
	}
	return out
}

// recovery kills the victim farms and waits until every instance they ran
// runs again on a live cell.
func (m *measurement) recovery(ctx context.Context, followErr <-chan error) error {
	dead := map[string]bool{}
	var victims []*farm
	for _, f := range m.c.farms {
		if f.victim {
			victims = append(victims, f)
			for _, cell := range f.cells {
				dead[cell] = true
			}
		}
	}
	displaced := m.tr.onCells(dead)
	rc := &Recovery{KilledCells: len(dead), KilledProcesses: len(victims), Displaced: len(displaced),
		TargetSeconds: (m.opts.PresenceTTL + 5*time.Second).Seconds()}
	m.res.Recovery = rc
	before, err := m.c.snapshot(ctx)
	if err != nil {
		return err
	}
	progress(m.opts, "recovery: SIGKILL %d cells in %d processes, holding %d instances", len(dead), len(victims), len(displaced))
	kill := time.Now()
	for _, f := range victims {
		f.proc.kill()
	}
	rc.KillAtSec = kill.Sub(m.t0).Seconds()
	deadline := kill.Add(m.opts.RecoveryTimeout)
	lastLine := kill
	presences := presenceWatch{dead: dead, kill: kill, rc: rc}
	for {
		presences.poll(ctx, m.c.client)
		left := m.tr.displacedLeft(displaced, dead)
		if left == 0 {
			rc.AllRunning = true
			rc.Seconds = time.Since(kill).Seconds()
			break
		}
		if time.Now().After(deadline) {
			rc.Seconds = time.Since(kill).Seconds()
			progress(m.opts, "recovery: timed out after %s with %d instances not running again", m.opts.RecoveryTimeout, left)
			break
		}
		if err := m.c.checkAlive(); err != nil {
			return err
		}
		if now := time.Now(); now.Sub(lastLine) >= m.opts.ProgressInterval {
			progress(m.opts, "recovery: %.0f s after the kill, %d/%d displaced instances running again; %d/%d running",
				now.Sub(kill).Seconds(), len(displaced)-left, len(displaced), m.tr.runningCount(), m.opts.Instances)
			lastLine = now
		}
		select {
		case err := <-followErr:
			return fmt.Errorf("following events: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	after, err := m.c.snapshot(ctx)
	if err != nil {
		return err
	}
	presences.list(ctx, m.c.client) // once more, should the last go have fallen between two polls
	if rc.LastPresenceGoneSec > 0 {
		rc.AfterLastPresenceSec = rc.Seconds - rc.LastPresenceGoneSec
	}
	rc.Etcd = etcdUse(before, after, len(displaced))
	rc.BBS, rc.Auctioneer = procUse(before.bbsProc, after.bbsProc), procUse(before.aucProc, after.aucProc)
	rc.EtcdProcess = etcdProcUse(before, after)
	rc.Auctions = auctions(before, after)
	rc.Convergence = convergence(before, after)
	rc.CellCallErrors = cellCallErrors(before, after)
	progress(m.opts, "recovery: all %d displaced instances running again after %.1f s", len(displaced), rc.Seconds)
	return nil
}

// presenceWatch notes when the killed cells' presences leave the BBS's cell
// list, which their TTL decides: what follows the last one is the system's
// own reaction time.
type presenceWatch struct {
	dead map[string]bool
	kill time.Time
	rc   *Recovery
	last time.Time // the last poll
	done bool
}

// presencePollInterval is the time between two polls of the cell list.
const presencePollInterval = 100 * time.Millisecond

// poll lists the cells, at most every presencePollInterval until every
// killed cell is gone.
func (w *presenceWatch) poll(ctx context.Context, bbs *client.Client) {
	if time.Since(w.last) < presencePollInterval {
		return
	}
	w.list(ctx, bbs)
}

// list lists the cells now, unless every killed cell is known gone, and
// notes the first and the last to go. A failed list is skipped: the next
// decides.
func (w *presenceWatch) list(ctx context.Context, bbs *client.Client) {
	if w.done {
		return
	}
	w.last = time.Now()
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := bbs.ListCells(lctx, &bbsv1.ListCellsRequest{})
	if err != nil {
		return
	}
	present := 0
	for _, c := range resp.GetCells() {
		if w.dead[c.GetCellId()] {
			present++
		}
	}
	at := time.Since(w.kill).Seconds()
	if present < len(w.dead) && w.rc.FirstPresenceGoneSec == 0 {
		w.rc.FirstPresenceGoneSec = at
	}
	if present == 0 {
		w.rc.LastPresenceGoneSec, w.done = at, true
	}
}

// settleTimeout bounds how long the final check waits for a state it
// found wrong to right itself.
const settleTimeout = 45 * time.Second

// settle runs the check at once, keeping that first result, then again
// every 2 s until it passes or settleTimeout passes: a wrong first check
// that rights itself is a transient, one that stays wrong is stuck.
func (m *measurement) settle(ctx context.Context) error {
	first, err := m.check(ctx)
	if err != nil {
		return err
	}
	m.res.Check = first
	if first.OK {
		return nil
	}
	progress(m.opts, "check: %d/%d indices with one ORDINARY RUNNING row (ordinary states %v, %d suspects); waiting up to %s for it to settle",
		first.OrdinaryRunning, first.Indices, first.NotRunningStates, first.Suspect, settleTimeout)
	start := time.Now()
	for time.Since(start) < settleTimeout {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
		c, err := m.check(ctx)
		if err != nil {
			return err
		}
		m.res.SettledCheck = &c
		m.res.SettledCheck.AfterSec = time.Since(start).Seconds()
		if c.OK {
			break
		}
	}
	return nil
}

// check lists every actual LRP (100 LRPs per call) and checks that every
// index has exactly one ORDINARY row, RUNNING on a live cell.
func (m *measurement) check(ctx context.Context) (Check, error) {
	var c Check
	dead := map[string]bool{}
	for _, f := range m.c.farms {
		if f.victim && f.proc.exited() {
			for _, cell := range f.cells {
				dead[cell] = true
			}
		}
	}
	ordinary := map[instanceKey][]*modelsv1.ActualLRP{}
	const chunk = 100
	for start := 0; start < m.opts.lrpCount(); start += chunk {
		var guids []string
		for i := start; i < min(start+chunk, m.opts.lrpCount()); i++ {
			guids = append(guids, ProcessGUID(i))
		}
		resp, err := m.c.client.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{Domain: Domain, ProcessGuids: guids})
		if err != nil {
			return c, fmt.Errorf("check: list actual LRPs: %w", err)
		}
		c.Revision = max(c.Revision, resp.GetRevision())
		for _, a := range resp.GetActualLrps() {
			switch a.GetPresence() {
			case modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY:
				k := instanceKey{a.GetKey().GetProcessGuid(), a.GetKey().GetIndex()}
				ordinary[k] = append(ordinary[k], a)
			case modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_SUSPECT:
				c.Suspect++
			case modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_EVACUATING:
				c.Evacuating++
			}
		}
	}
	for i := range m.opts.lrpCount() {
		for idx := range m.opts.lrpInstances(i) {
			c.Indices++
			rows := ordinary[instanceKey{ProcessGUID(i), int32(idx)}]
			switch {
			case len(rows) == 0:
				c.MissingOrdinary++
			case len(rows) > 1:
				c.DuplicateOrdinary++
			case rows[0].GetState() != modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING:
				c.NotRunning++
				if c.NotRunningStates == nil {
					c.NotRunningStates = map[string]int{}
				}
				c.NotRunningStates[rows[0].GetState().String()]++
				if len(c.Samples) < 5 {
					c.Samples = append(c.Samples, fmt.Sprintf("%s/%d %s on %q since %s: %s", ProcessGUID(i), idx,
						rows[0].GetState(), rows[0].GetInstanceKey().GetCellId(),
						time.Unix(0, rows[0].GetSince()).UTC().Format("15:04:05.000"), rows[0].GetPlacementError()))
				}
			case dead[rows[0].GetInstanceKey().GetCellId()]:
				c.OnDeadCells++
			default:
				c.OrdinaryRunning++
			}
		}
	}
	c.OK = c.OrdinaryRunning == c.Indices
	return c, nil
}

// snapshot is the daemons' metrics and resource use at one moment.
type snapshot struct {
	bbs, auc metrics
	// etcd is etcd's metrics: the gavel-etcd's, or the BBS's when embedded.
	etcd                        metrics
	bbsProc, aucProc, cellsProc ProcStats
	// benchProc is the bench's own process.
	benchProc ProcStats
	// etcdProc is the gavel-etcd process's (nil when embedded).
	etcdProc *ProcStats
	// cells is each running cell process's metrics, by farm name.
	cells map[string]metrics
}

// etcdServerCPU starts measuring the CPU of the process serving etcd (the
// gavel-etcd process, or the BBS with etcd embedded): the function it
// returns gives the CPU since, and per write of the given count.
func (c *cluster) etcdServerCPU() func(writes float64) (EtcdServerCPU, error) {
	holder := c.bbs
	if c.etcd != nil {
		holder = c.etcd
	}
	before, err := readProcStats(holder.pid())
	return func(writes float64) (EtcdServerCPU, error) {
		if err != nil {
			return EtcdServerCPU{}, fmt.Errorf("etcd server's CPU: %w", err)
		}
		after, err := readProcStats(holder.pid())
		if err != nil {
			return EtcdServerCPU{}, fmt.Errorf("etcd server's CPU: %w", err)
		}
		return serverCPUOver(before, after, writes), nil
	}
}

// serverCPUOver is the CPU between two readings of the etcd server's
// process, in all and per write.
func serverCPUOver(before, after ProcStats, writes float64) EtcdServerCPU {
	u := EtcdServerCPU{CPUSeconds: after.CPUSeconds - before.CPUSeconds}
	if writes > 0 {
		u.MicrosPerWrite = u.CPUSeconds * 1e6 / writes
	}
	return u
}

// snapshot scrapes etcd, the BBS and the auctioneer and reads /proc for
// every running daemon.
func (c *cluster) snapshot(ctx context.Context) (*snapshot, error) {
	s := &snapshot{}
	var err error
	if s.bbs, err = scrape(ctx, c.bbsDebug); err != nil {
		return nil, err
	}
	s.etcd = s.bbs
	if c.etcd != nil {
		if s.etcd, err = scrape(ctx, c.etcdDebug); err != nil {
			return nil, err
		}
		st, err := readProcStats(c.etcd.pid())
		if err != nil {
			return nil, err
		}
		s.etcdProc = &st
	}
	if s.auc, err = scrape(ctx, c.aucDebug); err != nil {
		return nil, err
	}
	if s.bbsProc, err = readProcStats(c.bbs.pid()); err != nil {
		return nil, err
	}
	if s.aucProc, err = readProcStats(c.auctioneer.pid()); err != nil {
		return nil, err
	}
	if s.benchProc, err = readProcStats(os.Getpid()); err != nil {
		return nil, err
	}
	s.cells = map[string]metrics{}
	for _, f := range c.farms {
		if f.proc.exited() {
			continue
		}
		st, err := readProcStats(f.proc.pid())
		if err != nil {
			return nil, err
		}
		// A cell process killed by the recovery phase between the check
		// above and the scrape is simply left out.
		if m, err := scrape(ctx, f.debug); err == nil {
			s.cells[f.name] = m
		}
		s.cellsProc.CPUSeconds += st.CPUSeconds
		s.cellsProc.SystemCPUSeconds += st.SystemCPUSeconds
		s.cellsProc.MinorFaults += st.MinorFaults
		s.cellsProc.PeakRSSBytes += st.PeakRSSBytes
		s.cellsProc.RSSBytes += st.RSSBytes
	}
	return s, nil
}

func etcdUse(before, after *snapshot, placed int) EtcdUse {
	e := func(name string) float64 { return after.etcd.value(name) - before.etcd.value(name) }
	d := func(name string) float64 { return after.bbs.value(name) - before.bbs.value(name) }
	u := EtcdUse{
		Puts: e("etcd_mvcc_put_total"), Deletes: e("etcd_mvcc_delete_total"), Txns: e("etcd_mvcc_txn_total"),
		Proposals: e("etcd_server_proposals_committed_total"), PutBytes: e("etcd_debugging_mvcc_total_put_size_in_bytes"),
		BBSTxns: d("gavel_bbs_etcd_txns_total"), BBSTxnRequests: d("gavel_bbs_etcd_txn_requests_total"),
		CacheRelists: d("gavel_bbs_watch_cache_relists_total"),
	}
	if placed > 0 {
		u.WritesPerInstance = (u.Puts + u.Deletes) / float64(placed)
		u.ProposalsPerInstance = u.Proposals / float64(placed)
	}
	return u
}

// etcdProcUse is the etcd process's use between the snapshots (nil when
// etcd is embedded in the BBS).
func etcdProcUse(before, after *snapshot) *ProcUse {
	if before.etcdProc == nil || after.etcdProc == nil {
		return nil
	}
	u := procUse(*before.etcdProc, *after.etcdProc)
	return &u
}

func procUse(before, after ProcStats) ProcUse {
	u := ProcUse{CPUSeconds: after.CPUSeconds - before.CPUSeconds, PeakRSSBytes: after.PeakRSSBytes,
		PeakRSSMiB: float64(after.PeakRSSBytes) / (1 << 20), MinorFaults: after.MinorFaults - before.MinorFaults}
	if u.CPUSeconds > 0 {
		u.SystemCPUShare = (after.SystemCPUSeconds - before.SystemCPUSeconds) / u.CPUSeconds
	}
	return u
}

// eachCellThroughout calls f with the metrics of each cell process that ran
// throughout the phase, after and before it (a process started or killed
// meanwhile would count only part of the phase).
func eachCellThroughout(before, after *snapshot, f func(now, was metrics)) {
	for name, now := range after.cells {
		if was, ok := before.cells[name]; ok {
			f(now, was)
		}
	}
}

// cellCallErrors is the cells' failed BBS calls over the phase, by call and
// code ("ClaimActualLRP/DeadlineExceeded"), summed over the cell processes
// that ran throughout it.
func cellCallErrors(before, after *snapshot) map[string]float64 {
	out := map[string]float64{}
	eachCellThroughout(before, after, func(now, was metrics) {
		for call, n := range now.deltaByLabel(was, "gavel_rep_bbs_call_errors_total", "call", "code") {
			out[call] += n
		}
	})
	return out
}

// cellRunInfo is the cells' run-info cache counters over the phase, summed
// over the cell processes that ran throughout it.
func cellRunInfo(before, after *snapshot) RunInfo {
	var out RunInfo
	eachCellThroughout(before, after, func(now, was metrics) {
		d := func(metric string) float64 { return now.value(metric) - was.value(metric) }
		out.Hits += d("gavel_rep_run_info_cache_hits_total")
		out.Misses += d("gavel_rep_run_info_cache_misses_total")
		out.Fetches += d("gavel_rep_run_info_fetches_total")
	})
	return out
}

// cellBatches is the cells' batched BBS calls over the phase, by call,
// summed over the cell processes that ran throughout it.
func cellBatches(before, after *snapshot) map[string]CellBatch {
	out := map[string]CellBatch{}
	eachCellThroughout(before, after, func(now, was metrics) {
		items := now.deltaByLabel(was, "gavel_rep_bbs_batch_items_total", "call")
		for call, n := range now.deltaByLabel(was, "gavel_rep_bbs_batch_calls_total", "call") {
			b := out[call]
			b.Calls += n
			b.Items += items[call]
			out[call] = b
		}
	})
	return out
}

// convergence is the BBS converger's counters over the phase.
func convergence(before, after *snapshot) Convergence {
	return Convergence{
		Passes:    after.bbs.deltaByLabel(before.bbs, "gavel_bbs_convergence_passes_total", "trigger"),
		Actions:   after.bbs.deltaByLabel(before.bbs, "gavel_bbs_convergence_actions_total", "action"),
		Conflicts: after.bbs.value("gavel_bbs_convergence_conflicts_total") - before.bbs.value("gavel_bbs_convergence_conflicts_total"),
	}
}

func auctions(before, after *snapshot) Auctions {
	d := func(name string) float64 {
		var b, a float64
		for _, s := range before.auc {
			if s.name == name && s.labels["kind"] == "lrp" {
				b += s.value
			}
		}
		for _, s := range after.auc {
			if s.name == name && s.labels["kind"] == "lrp" {
				a += s.value
			}
		}
		return a - b
	}
	return Auctions{
		Started:          d("gavel_auctioneer_auctions_started_total"),
		Failed:           d("gavel_auctioneer_auctions_failed_total"),
		FailedCellStates: after.auc.value("gavel_auctioneer_failed_cell_state_requests_total") - before.auc.value("gavel_auctioneer_failed_cell_state_requests_total"),
		PerformErrors:    after.auc.value("gavel_auctioneer_perform_errors_total") - before.auc.value("gavel_auctioneer_perform_errors_total"),
		WriteBackErrors:  after.auc.value("gavel_auctioneer_write_back_errors_total") - before.auc.value("gavel_auctioneer_write_back_errors_total"),
		StatesFetched:    after.auc.value("gavel_auctioneer_cell_states_fetched_total") - before.auc.value("gavel_auctioneer_cell_states_fetched_total"),
		StatesReused:     after.auc.value("gavel_auctioneer_cell_states_reused_total") - before.auc.value("gavel_auctioneer_cell_states_reused_total"),
		Paced:            after.auc.value("gavel_auctioneer_paced_auctions_total") - before.auc.value("gavel_auctioneer_paced_auctions_total"),
		PacingSeconds:    after.auc.value("gavel_auctioneer_pacing_wait_seconds_total") - before.auc.value("gavel_auctioneer_pacing_wait_seconds_total"),
		Held:             after.auc.value("gavel_auctioneer_held_auctions_total") - before.auc.value("gavel_auctioneer_held_auctions_total"),
		BatchSize:        histogram(before.auc, after.auc, "gavel_auctioneer_batch_size"),
		Duration:         histogram(before.auc, after.auc, "gavel_auctioneer_auction_duration_seconds"),
		FetchStates:      histogram(before.auc, after.auc, "gavel_auctioneer_fetch_states_duration_seconds"),
	}
}

// bbsRSSBoundMiB is issue 16's bound on the BBS's peak RSS for a run of
// instances: 1 GiB up to 100,000 instances, 2 GiB beyond (250,000).
func bbsRSSBoundMiB(instances int) float64 {
	if instances <= 100_000 {
		return 1024
	}
	return 2048
}

// targets compares the result with issues 8's and 16's goals.
func targets(r *Result) []Target {
	p := r.Placement
	rss := bbsRSSBoundMiB(p.Instances)
	out := []Target{
		{Name: "placements/s ÷ raw etcd txn/s", Goal: ">= 0.5", Value: p.RatioToRawEtcd, Met: p.AllRunning && p.RatioToRawEtcd >= 0.5},
		{Name: "placements/s ÷ (batched keys/s ÷ writes per instance)", Goal: ">= 0.25", Value: p.RatioToBatchedEtcd, Met: p.AllRunning && p.RatioToBatchedEtcd >= 0.25},
		{Name: "etcd writes per placed instance", Goal: "<= 4", Value: p.Etcd.WritesPerInstance, Met: p.AllRunning && p.Etcd.WritesPerInstance <= 4},
		{Name: "last tenth rate ÷ first tenth rate", Goal: ">= 0.8", Value: p.LastToFirstTenth, Met: p.LastToFirstTenth >= 0.8},
		{Name: "BBS peak RSS (MiB)", Goal: fmt.Sprintf("< %.0f", rss), Value: p.BBS.PeakRSSMiB, Met: p.BBS.PeakRSSMiB < rss},
	}
	if rc := r.Recovery; rc != nil {
		out = append(out, Target{Name: "recovery after kill (s)", Goal: fmt.Sprintf("<= %.0f (TTL + 5 s)", rc.TargetSeconds),
			Value: rc.Seconds, Met: rc.AllRunning && rc.Seconds <= rc.TargetSeconds})
		out = append(out, Target{Name: "BBS peak RSS incl. recovery (MiB)", Goal: fmt.Sprintf("< %.0f", rss), Value: rc.BBS.PeakRSSMiB, Met: rc.BBS.PeakRSSMiB < rss})
	}
	out = append(out, Target{Name: "indices with one ORDINARY RUNNING row", Goal: fmt.Sprintf("= %d", r.Check.Indices),
		Value: float64(r.Check.OrdinaryRunning), Met: r.Check.OK})
	return out
}

// loadAverage reads the 1, 5 and 15 minute load averages (zeros if
// /proc/loadavg cannot be read).
func loadAverage() [3]float64 {
	var out [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	f := strings.Fields(string(data))
	for i := 0; i < 3 && i < len(f); i++ {
		out[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return out
}

// progress prints one line to opts.Progress.
func progress(opts Options, format string, args ...any) {
	if opts.Progress == nil {
		return
	}
	fmt.Fprintf(opts.Progress, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
