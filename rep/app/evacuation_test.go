package app_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	auctioneerapp "github.com/gavelhq/gavel/auctioneer/app"
	bbsapp "github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/bbs/converger"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/internal/freeport"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/app"
)

const (
	running    = modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING
	ordinary   = modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY
	evacuating = modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_EVACUATING
)

// evacCluster is a BBS (accelerated convergence) and a real auctioneer in
// this process, and reps as their own OS processes.
type evacCluster struct {
	t      *testing.T
	prefix string
	bbs    *bbsapp.BBS
	client *client.Client
	cells  map[string]*cellProc
}

// cellProc is a rep daemon and what it wrote on stderr.
type cellProc struct {
	*daemon
	id     string
	cfg    app.Config
	stderr *syncBuffer
	exited chan struct{}
	code   int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEvacCluster(t *testing.T) *evacCluster {
	t.Helper()
	prefix := etcdtest.Prefix(t)
	b, bbs := startBBSWith(t, prefix, func(cfg *bbsapp.Config) {
		cfg.Convergence = converger.AcceleratedConfig()
	})
	acfg := auctioneerapp.DefaultConfig()
	acfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	acfg.ListenAddress, acfg.DebugAddress = "127.0.0.1:0", "127.0.0.1:0"
	acfg.InstanceID = "auctioneer-" + t.Name()
	acfg.KeyPrefix = prefix
	acfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	acfg.BBSAddresses = []string{b.Addr()}
	acfg.LockTTL, acfg.LockRetryInterval = config.Duration(2*time.Second), config.Duration(200*time.Millisecond)
	acfg.CellStateTimeout = config.Duration(2 * time.Second)
	require.NoError(t, acfg.Validate())
	a := auctioneerapp.New(acfg, lager.NewLogger("auctioneer"))
	proc := ifrit.Background(a.Runner())
	t.Cleanup(func() {
		proc.Signal(os.Interrupt)
		select {
		case <-proc.Wait():
		case <-time.After(20 * time.Second):
			t.Error("auctioneer did not stop")
		}
	})
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		t.Fatalf("auctioneer exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("auctioneer did not start")
	}
	require.Eventually(t, a.Held, 10*time.Second, 20*time.Millisecond, "auctioneer never took its lock")
	return &evacCluster{t: t, prefix: prefix, bbs: b, client: bbs, cells: map[string]*cellProc{}}
}

// startCell starts a rep daemon for cell id in zone; tweak adjusts its config.
func (e *evacCluster) startCell(id, zone string, tweak func(*app.Config)) *cellProc {
	t := e.t
	t.Helper()
	cfg := repConfig(t, e.prefix, e.bbs.Addr(), id)
	cfg.Zone = zone
	cfg.EvacuationPollingInterval = config.Duration(200 * time.Millisecond)
	cfg.EvacuationTimeout = config.Duration(time.Minute)
	tweak(&cfg)
	require.NoError(t, cfg.Validate())
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), daemonEnv+"="+writeJSON(t, cfg))
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = os.Stderr, buf
	require.NoError(t, cmd.Start())
	c := &cellProc{daemon: &daemon{t: t, cmd: cmd}, id: id, cfg: cfg, stderr: buf, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		c.code = cmd.ProcessState.ExitCode()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-c.exited
		}
		if t.Failed() {
			t.Logf("rep %s stderr (tail):\n%s", id, tail(buf.String(), 4000))
		}
	})
	repAddress(t, e.client, id, "")
	e.cells[id] = c
	return c
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// kill sends sig and waits for the exit.
func (c *cellProc) kill(sig syscall.Signal) {
	_ = c.cmd.Process.Signal(sig)
	<-c.exited
}

// waitExit waits for the daemon to exit and returns its exit code.
func (c *cellProc) waitExit(timeout time.Duration) int {
	c.daemon.t.Helper()
	select {
	case <-c.exited:
		return c.code
	case <-time.After(timeout):
		c.daemon.t.Fatalf("rep %s did not exit within %s", c.id, timeout)
		return -1
	}
}

func (e *evacCluster) rows(guid string) []*modelsv1.ActualLRP {
	resp, err := e.client.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{guid}})
	require.NoError(e.t, err)
	return resp.GetActualLrps()
}

// placement counts guid's RUNNING ordinary instances per cell, and whether any other row exists.
func (e *evacCluster) placement(guid string) (perCell map[string]int, others int) {
	perCell = map[string]int{}
	for _, a := range e.rows(guid) {
		if a.GetPresence() == ordinary && a.GetState() == running {
			perCell[a.GetInstanceKey().GetCellId()]++
		} else {
			others++
		}
	}
	return perCell, others
}

func (e *evacCluster) desire(guid string, instances int32, strategy modelsv1.UpdateStrategy, appArgs ...string) {
	d := desiredLRP(guid, runA(appPath, appArgs...), healthChecks())
	d.Instances = instances
	d.UpdateStrategy = strategy
	_, err := e.client.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
	require.NoError(e.t, err)
}

// waitPlacement waits until cond holds for guid's placement.
func (e *evacCluster) waitPlacement(guid, what string, timeout time.Duration, cond func(perCell map[string]int, others int) bool) map[string]int {
	e.t.Helper()
	var per map[string]int
	var others int
	require.Eventually(e.t, func() bool {
		per, others = e.placement(guid)
		return cond(per, others)
	}, timeout, 50*time.Millisecond, "%s never %s (last %v, %d other rows)", guid, what, per, others)
	return per
}

func total(per map[string]int) int {
	n := 0
	for _, v := range per {
		n += v
	}
	return n
}

// busiest is the cell holding the most instances (ties: the smallest id).
func busiest(per map[string]int) string {
	ids := make([]string, 0, len(per))
	for id := range per {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	best := ""
	for _, id := range ids {
		if best == "" || per[id] > per[best] {
			best = id
		}
	}
	return best
}

// poller requests every instance of the routable set (RUNNING and routable
// rows of any presence, straight from the BBS) 20 times a second. A failed
// request counts when its instance is still in the routable set after the
// failure: an instance whose row left the set before its process stopped was
// not routable any more when it failed (routers drop it from the same
// events).
type poller struct {
	e        *evacCluster
	guid     string
	ok, fail atomic.Int64
	excused  atomic.Int64 // failed after the instance left the routable set
	mu       sync.Mutex
	failures []string
	stop     chan struct{}
	done     chan struct{}
}

type target struct{ instance, url string }

func (p *poller) routable() map[string]target {
	out := map[string]target{}
	resp, err := p.e.client.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{p.guid}})
	if err != nil {
		p.record("list: " + err.Error())
		return out
	}
	for _, a := range resp.GetActualLrps() {
		if a.GetState() != running || (a.Routable != nil && !a.GetRoutable()) || len(a.GetNetInfo().GetPorts()) == 0 {
			continue
		}
		ig := a.GetInstanceKey().GetInstanceGuid()
		out[ig] = target{ig, fmt.Sprintf("http://%s:%d/", a.GetNetInfo().GetAddress(), a.GetNetInfo().GetPorts()[0].GetHostPort())}
	}
	return out
}

func (p *poller) record(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = append(p.failures, s)
}

func startPoller(e *evacCluster, guid string) *poller {
	p := &poller{e: e, guid: guid, stop: make(chan struct{}), done: make(chan struct{})}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			var wg sync.WaitGroup
			for _, tg := range p.routable() {
				wg.Add(1)
				go func(tg target) {
					defer wg.Done()
					resp, err := hc.Get(tg.url)
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							p.ok.Add(1)
							return
						}
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
					if _, still := p.routable()[tg.instance]; still {
						p.fail.Add(1)
						p.record(fmt.Sprintf("%s %s: %v", tg.instance, tg.url, err))
					} else {
						p.excused.Add(1)
					}
				}(tg)
			}
			wg.Wait()
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *poller) finish() (ok, fail int64, failures []string) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ok.Load(), p.fail.Load(), p.failures
}

// Draining the cell holding the most of 6 instances over 3 cells moves them
// to the other two with zero failed requests to the routable set (polled 20
// times a second during the drain); the drained rep exits 0 and its
// presence is gone.
func TestDrainMovesInstancesWithNoDowntime(t *testing.T) {
	e := newEvacCluster(t)
	for i, z := range []string{"z1", "z2", "z3"} {
		e.startCell(fmt.Sprintf("cell-%d", i+1), z, func(*app.Config) {})
	}
	e.desire("web", 6, modelsv1.UpdateStrategy_UPDATE_STRATEGY_ROLLING)
	per := e.waitPlacement("web", "ran 6 instances", 60*time.Second, func(per map[string]int, others int) bool {
		return total(per) == 6 && others == 0
	})
	drained := busiest(per)
	t.Logf("placement before the drain: %v; draining %s", per, drained)

	p := startPoller(e, "web")
	time.Sleep(500 * time.Millisecond) // requests before the drain too
	addr := repAddress(t, e.client, drained, "")
	repc := dialRep(t, addr)
	resp, err := repc.Drain(ctx, &repv1.DrainRequest{})
	require.NoError(t, err)
	require.False(t, resp.GetAlreadyDraining())
	require.Greater(t, resp.GetDeadline(), time.Now().UnixNano())
	if st, err := repc.State(ctx, &repv1.StateRequest{}); err == nil {
		require.True(t, st.GetEvacuating(), "cell-state shows the drain")
		require.Equal(t, resp.GetDeadline(), st.GetEvacuationDeadline())
	}
	again, err := repc.Drain(ctx, &repv1.DrainRequest{})
	if err == nil { // the rep may be gone already
		require.True(t, again.GetAlreadyDraining())
	}

	code := e.cells[drained].waitExit(60 * time.Second)
	require.Equal(t, 0, code, "the drained rep exits 0")
	after := e.waitPlacement("web", "ran 6 instances on the two other cells", 30*time.Second, func(per map[string]int, others int) bool {
		return total(per) == 6 && others == 0 && per[drained] == 0
	})
	time.Sleep(500 * time.Millisecond) // requests after the drain too
	ok, fail, failures := p.finish()
	t.Logf("placement after the drain: %v; %d requests answered, %d failed (%d more failed after leaving the routable set)", after, ok, fail, p.excused.Load())
	require.Zero(t, fail, "failed requests to the routable set: %v", failures)
	require.Greater(t, ok, int64(60), "the poller ran")
	require.Len(t, after, 2)

	cells, err := e.client.ListCells(ctx, &bbsv1.ListCellsRequest{})
	require.NoError(t, err)
	for _, c := range cells.GetCells() {
		require.NotEqual(t, drained, c.GetCellId(), "a drained cell releases its presence")
	}
}

// A drain that cannot finish (no room elsewhere) ends at the evacuation
// timeout: the rep exits non-zero naming the stranded instances, and those
// instances are still RUNNING (reclaimed as ordinary instances of the
// stopped cell; then suspect once its presence expires) and answering.
func TestDrainThatCannotFinishStrandsAndKeepsInstances(t *testing.T) {
	e := newEvacCluster(t)
	debugAddr := freeAddr(t)
	full := e.startCell("cell-full", "z1", func(cfg *app.Config) {
		cfg.EvacuationTimeout = config.Duration(6 * time.Second)
		cfg.DebugAddress = debugAddr
	})
	e.desire("stuck", 3, modelsv1.UpdateStrategy_UPDATE_STRATEGY_ROLLING)
	e.waitPlacement("stuck", "ran 3 instances", 60*time.Second, func(per map[string]int, others int) bool {
		return per["cell-full"] == 3 && others == 0
	})
	// The only other cell has room for one instance.
	e.startCell("cell-small", "z2", func(cfg *app.Config) { cfg.Capacity.Containers = 1 })

	_, err := dialRep(t, repAddress(t, e.client, "cell-full", "")).Drain(ctx, &repv1.DrainRequest{})
	require.NoError(t, err)
	// The drain's progress is a metric: two instances cannot leave.
	require.Eventually(t, func() bool {
		m := scrape(debugAddr)
		return strings.Contains(m, `gavel_rep_evacuating{cell_id="cell-full"} 1`) &&
			strings.Contains(m, `gavel_rep_evacuation_remaining{cell_id="cell-full",kind="lrps"} 2`)
	}, 5*time.Second, 50*time.Millisecond, "evacuation metrics: %s", grepMetrics(scrape(debugAddr), "evacua"))
	code := full.waitExit(60 * time.Second)
	require.NotEqual(t, 0, code, "a drain that times out exits non-zero")

	per, _ := e.placement("stuck")
	require.Equal(t, 1, per["cell-small"], "one instance moved: %v", per)
	require.Equal(t, 2, per["cell-full"], "the two stranded instances are the ordinary instances again: %v", per)
	stderr := full.stderr.String()
	require.Contains(t, stderr, "evacuation timed out")
	for _, a := range e.rows("stuck") {
		if a.GetInstanceKey().GetCellId() == "cell-full" {
			require.Contains(t, stderr, fmt.Sprintf("lrp stuck/%d", a.GetKey().GetIndex()), "the stranded instance is named")
		}
	}

	// Long after the cell's presence expired, every instance is still RUNNING
	// somewhere (the stranded ones as suspects: nowhere to move them) and answers.
	time.Sleep(full.cfg.PresenceTTL.D() + 4*time.Second)
	byIndex := map[int32]bool{}
	for _, a := range e.rows("stuck") {
		if a.GetState() != running {
			continue
		}
		byIndex[a.GetKey().GetIndex()] = true
		status, _, err := get(fmt.Sprintf("http://%s:%d/", a.GetNetInfo().GetAddress(), a.GetNetInfo().GetPorts()[0].GetHostPort()))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
	}
	require.Len(t, byIndex, 3, "every index still has a RUNNING instance: %v", e.rows("stuck"))
}

// A cell killed (SIGKILL) in the middle of a drain started by SIGUSR1 loses
// nothing: once its presence expires, its instances come back on the other
// cells, and the routable set answers throughout.
func TestCellKilledMidDrainLosesNothing(t *testing.T) {
	e := newEvacCluster(t)
	for i, z := range []string{"z1", "z2", "z3"} {
		e.startCell(fmt.Sprintf("cell-%d", i+1), z, func(*app.Config) {})
	}
	// Instances take 2 s to start, so the drain is killed while its replacements start.
	e.desire("victim", 6, modelsv1.UpdateStrategy_UPDATE_STRATEGY_ROLLING, "-delay", "2s")
	per := e.waitPlacement("victim", "ran 6 instances", 60*time.Second, func(per map[string]int, others int) bool {
		return total(per) == 6 && others == 0
	})
	doomed := busiest(per)
	p := startPoller(e, "victim")

	require.NoError(t, e.cells[doomed].cmd.Process.Signal(syscall.SIGUSR1))
	require.Eventually(t, func() bool {
		for _, a := range e.rows("victim") {
			if a.GetPresence() == evacuating {
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "the drain never evacuated an instance")
	evacRows := 0
	for _, a := range e.rows("victim") {
		if a.GetPresence() == evacuating {
			evacRows++
		}
	}
	e.cells[doomed].kill(syscall.SIGKILL)

	after := e.waitPlacement("victim", "came back on the other cells", 60*time.Second, func(per map[string]int, others int) bool {
		return total(per) == 6 && others == 0 && per[doomed] == 0
	})
	ok, fail, failures := p.finish()
	t.Logf("killed %s mid-drain with %d instances evacuating; placement after: %v; %d requests answered, %d failed (%d more failed after leaving the routable set)", doomed, evacRows, after, ok, fail, p.excused.Load())
	require.Zero(t, fail, "failed requests to the routable set: %v", failures)
}

// freeAddr returns a loopback address that no port-0 bind can take before
// the daemon binds it.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.New().Addr()
	require.NoError(t, err)
	return addr
}

func scrape(addr string) string {
	_, body, err := get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	return body
}

func grepMetrics(all, substr string) string {
	var out []string
	for _, line := range strings.Split(all, "\n") {
		if strings.Contains(line, substr) && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "; ")
}

// RECREATE: a draining cell's instances are stopped before their
// replacements start, one at a time: at most one index lacks a RUNNING
// instance at any moment, and none is ever copied as EVACUATING.
func TestDrainRecreateMovesOneAtATime(t *testing.T) {
	e := newEvacCluster(t)
	old := e.startCell("cell-old", "z1", func(*app.Config) {})
	e.desire("singleton", 3, modelsv1.UpdateStrategy_UPDATE_STRATEGY_RECREATE)
	e.waitPlacement("singleton", "ran 3 instances", 60*time.Second, func(per map[string]int, others int) bool {
		return per["cell-old"] == 3 && others == 0
	})
	e.startCell("cell-new", "z2", func(*app.Config) {})

	_, err := dialRep(t, repAddress(t, e.client, "cell-old", "")).Drain(ctx, &repv1.DrainRequest{})
	require.NoError(t, err)
	minRunning, sawEvacuating := 3, false
	for {
		per, _ := e.placement("singleton")
		minRunning = min(minRunning, total(per))
		for _, a := range e.rows("singleton") {
			sawEvacuating = sawEvacuating || a.GetPresence() == evacuating
		}
		if per["cell-new"] == 3 {
			break
		}
		select {
		case <-old.exited:
		case <-time.After(20 * time.Millisecond):
			continue
		}
		break
	}
	require.Equal(t, 0, old.waitExit(60*time.Second))
	e.waitPlacement("singleton", "ran 3 instances on the new cell", 30*time.Second, func(per map[string]int, others int) bool {
		return per["cell-new"] == 3 && others == 0
	})
	require.False(t, sawEvacuating, "RECREATE keeps no evacuating copy")
	require.Equal(t, 2, minRunning, "one instance at a time is down, never two")
}
