package harmonizer

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/bbs/models"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
)

// The run info version the auctions of these tests name.
const (
	testEpoch    = "epoch-1"
	testRevision = int64(42)
)

// lifecycleBBS records a cell's lifecycle calls in order. It serves one
// desired LRP at testEpoch@testRevision (claims name that version too),
// refuses every start when refuseStarts is set and every claim when
// refuseClaims is, as a BBS does an instance another cell holds. The bulk
// sync lists rows (none unless listed is set). Calls the test does not
// expect panic through the nil embedded interface.
type lifecycleBBS struct {
	BBS
	mu                         sync.Mutex
	refuseStarts, refuseClaims bool
	startLatency               time.Duration // each start call takes this long
	claimRevision              int64         // the run info revision claims name; default testRevision
	startsBegun                atomic.Int32  // start calls received, counted before their latency
	calls                      []string      // "claim", "start", "start+version", "crash", "remove", "get-desired"
	listed                     []*modelsv1.ActualLRP
}

func (b *lifecycleBBS) record(call string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call)
}

func (b *lifecycleBBS) snapshot() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...)
}

func (b *lifecycleBBS) refused() error {
	return fmt.Errorf("%w: cannot do it: the instance is another cell's", models.ErrInvalidTransition)
}

func (b *lifecycleBBS) itemResult(refuse bool) *bbsv1.BatchItemResult {
	if !refuse {
		return &bbsv1.BatchItemResult{}
	}
	err := b.refused()
	return &bbsv1.BatchItemResult{Code: int32(models.Code(err)), Message: err.Error()}
}

func (b *lifecycleBBS) BatchClaimActualLRPs(_ context.Context, in *bbsv1.BatchClaimActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.BatchClaimActualLRPsResponse, error) {
	b.mu.Lock()
	refuse, rev := b.refuseClaims, b.claimRevision
	b.mu.Unlock()
	if rev == 0 {
		rev = testRevision
	}
	out := &bbsv1.BatchClaimActualLRPsResponse{}
	for range in.GetClaims() {
		b.record("claim")
		out.Results = append(out.Results, b.itemResult(refuse))
		out.Claims = append(out.Claims, &bbsv1.ClaimActualLRPResponse{DesiredEpoch: testEpoch, RunInfoRevision: rev})
	}
	return out, nil
}

func (b *lifecycleBBS) BatchStartActualLRPs(_ context.Context, in *bbsv1.BatchStartActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.BatchStartActualLRPsResponse, error) {
	b.mu.Lock()
	refuse, latency := b.refuseStarts, b.startLatency
	b.mu.Unlock()
	b.startsBegun.Add(1)
	time.Sleep(latency)
	out := &bbsv1.BatchStartActualLRPsResponse{}
	for _, s := range in.GetStarts() {
		call := "start"
		if v := s.GetRunInfoVersion(); v != nil {
			if v.GetDesiredEpoch() != testEpoch || v.GetRunInfoRevision() != testRevision {
				panic(fmt.Sprintf("start names run info %s@%d", v.GetDesiredEpoch(), v.GetRunInfoRevision()))
			}
			call = "start+version"
		}
		b.record(call)
		out.Results = append(out.Results, b.itemResult(refuse))
	}
	return out, nil
}

func (b *lifecycleBBS) GetDesiredLRP(_ context.Context, in *bbsv1.GetDesiredLRPRequest, _ ...grpc.CallOption) (*bbsv1.GetDesiredLRPResponse, error) {
	b.record("get-desired")
	return &bbsv1.GetDesiredLRPResponse{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: in.GetProcessGuid(), Domain: "d", RootFs: "preloaded:cflinuxfs4", Instances: 1,
		ModificationTag: &modelsv1.ModificationTag{Epoch: testEpoch},
		Action:          &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "app"}}},
		// Running once the process passes its check: after sim.Options.StartDelay.
		Ports: []uint32{8080},
		CheckDefinition: &modelsv1.CheckDefinition{Checks: []*modelsv1.Check{
			{Check: &modelsv1.Check_TcpCheck{TcpCheck: &modelsv1.TCPCheck{Port: 8080}}},
		}},
	}, RunInfoRevision: testRevision}, nil
}

func (b *lifecycleBBS) CrashActualLRP(context.Context, *bbsv1.CrashActualLRPRequest, ...grpc.CallOption) (*bbsv1.CrashActualLRPResponse, error) {
	b.record("crash")
	return &bbsv1.CrashActualLRPResponse{}, nil
}

func (b *lifecycleBBS) RemoveActualLRP(context.Context, *bbsv1.RemoveActualLRPRequest, ...grpc.CallOption) (*bbsv1.RemoveActualLRPResponse, error) {
	b.record("remove")
	return &bbsv1.RemoveActualLRPResponse{}, nil
}

func (b *lifecycleBBS) BatchEvacuateActualLRPs(_ context.Context, in *bbsv1.BatchEvacuateActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.BatchEvacuateActualLRPsResponse, error) {
	out := &bbsv1.BatchEvacuateActualLRPsResponse{}
	for _, r := range in.GetReports() {
		switch r.GetReport().(type) {
		case *bbsv1.EvacuationReport_Claimed:
			b.record("evacuate-claimed")
		default:
			b.record("evacuate-other")
		}
		out.Results = append(out.Results, &bbsv1.EvacuationResult{})
	}
	return out, nil
}

func (b *lifecycleBBS) ListActualLRPs(context.Context, *bbsv1.ListActualLRPsRequest, ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return &bbsv1.ListActualLRPsResponse{ActualLrps: b.listed}, nil
}

func (b *lifecycleBBS) ListTasks(context.Context, *bbsv1.ListTasksRequest, ...grpc.CallOption) (*bbsv1.ListTasksResponse, error) {
	return &bbsv1.ListTasksResponse{}, nil
}

// runDelayedClaims runs a harmonizer with claimDelay over a simulated
// backend; after the one its start runs, a bulk sync runs only when the test
// calls Sync.
func runDelayedClaims(t *testing.T, simOpts sim.Options, bbs BBS, claimDelay time.Duration) (*executor.Executor, *Harmonizer) {
	t.Helper()
	return runDelayedClaimsEvacuating(t, simOpts, bbs, claimDelay, &rep.Evacuation{})
}

// runDelayedClaimsEvacuating is runDelayedClaims with the cell's evacuation flag.
func runDelayedClaimsEvacuating(t *testing.T, simOpts sim.Options, bbs BBS, claimDelay time.Duration, evac *rep.Evacuation) (*executor.Executor, *Harmonizer) {
	t.Helper()
	exec := newSimExecutor(t, simOpts)
	h, stop := startHarmonizer(t, exec, bbs, claimDelay, evac)
	t.Cleanup(stop)
	return exec, h
}

// newSimExecutor is an executor of cell-1 over a simulated backend, closed
// at the test's end.
func newSimExecutor(t *testing.T, simOpts sim.Options) *executor.Executor {
	t.Helper()
	return newCellExecutor(t, "cell-1", simOpts)
}

// newCellExecutor is an executor of cellID over a simulated backend, closed
// at the test's end.
func newCellExecutor(t *testing.T, cellID string, simOpts sim.Options) *executor.Executor {
	t.Helper()
	exec, err := executor.New(context.Background(), executor.Options{
		Backend: sim.New(simOpts), CellID: cellID, Logger: lager.NewLogger("executor"),
		TotalResources:       executor.Resources{MemoryMB: 1024, DiskMB: 1024, Containers: 10},
		StartupCheckInterval: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(exec.Close)
	return exec
}

// startHarmonizer runs a harmonizer over exec until stop.
func startHarmonizer(t *testing.T, exec *executor.Executor, bbs BBS, claimDelay time.Duration, evac *rep.Evacuation) (*Harmonizer, func()) {
	t.Helper()
	h := New(Options{CellID: "cell-1", Executor: exec, BBS: bbs, BulkSyncInterval: time.Hour, Logger: lager.NewLogger("harmonizer"), ClaimDelay: claimDelay,
		Evacuation: evac, EvacuationPollInterval: 20 * time.Millisecond})
	proc := ifrit.Background(h)
	<-proc.Ready()
	// The bulk sync a start runs lists the BBS's rows, which this fake does
	// not keep: one racing the test's first reservation would take the
	// claimed container for an orphan and remove it.
	require.Eventually(t, func() bool { return h.Syncs() >= 1 }, 10*time.Second, time.Millisecond, "the start's bulk sync")
	var once sync.Once
	return h, func() { once.Do(func() { proc.Signal(os.Interrupt); <-proc.Wait() }) }
}

// reserveVersioned reserves index 0 of processGuid as Perform does for an
// auction that named the run info version (versioned false: one that named
// none, as from a BBS that does not say).
func reserveVersioned(t *testing.T, exec *executor.Executor, processGuid, instanceGuid string, versioned bool) {
	t.Helper()
	lrp := &repv1.LRP{
		Key:                 &modelsv1.ActualLRPKey{ProcessGuid: processGuid, Index: 0, Domain: "d"},
		Resource:            &auctioneerv1.Resource{MemoryMb: 64, DiskMb: 64},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
	}
	if versioned {
		lrp.DesiredEpoch, lrp.RunInfoRevision = testEpoch, testRevision
	}
	require.Empty(t, exec.Allocate([]executor.AllocationRequest{{Guid: instanceGuid, LRP: true, Resource: executor.Resource{MemoryMB: 64, DiskMB: 64}, Tags: rep.LRPTags(lrp, instanceGuid)}}))
}

func waitForCalls(t *testing.T, bbs *lifecycleBBS, want []string, why string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, want, bbs.snapshot())
	}, 10*time.Second, 10*time.Millisecond, why)
}

// runBeforeClaimCounts reads gavel_rep_run_before_claim_total by outcome,
// leaving out the outcomes never counted.
func runBeforeClaimCounts(h *Harmonizer) map[string]float64 {
	out := map[string]float64{}
	for _, o := range []string{runBeforeClaimStarted, runBeforeClaimClaimed, runBeforeClaimRefused} {
		if n := testutil.ToFloat64(h.opts.Metrics.RunBeforeClaim.WithLabelValues(o)); n > 0 {
			out[o] = n
		}
	}
	return out
}

func containerGone(exec *executor.Executor, guid string) func() bool {
	return func() bool { _, err := exec.Get(guid); return err != nil }
}

func TestAnInstanceRunningWithinTheClaimDelayIsStartedWithoutAClaim(t *testing.T) {
	bbs := &lifecycleBBS{}
	exec, h := runDelayedClaims(t, sim.Options{}, bbs, 2*time.Second)
	reserveVersioned(t, exec, "pg", "ig-1", true)

	waitForCalls(t, bbs, []string{"get-desired", "start+version"}, "a fast instance's first write is its start, naming the run info it runs")
	require.Equal(t, map[string]float64{"started": 1}, runBeforeClaimCounts(h))
	c, err := exec.Get("ig-1")
	require.NoError(t, err)
	require.Equal(t, executor.StateRunning, c.State)
	time.Sleep(2500 * time.Millisecond) // past the delay: no claim follows an accepted start
	require.Equal(t, []string{"get-desired", "start+version"}, bbs.snapshot())
}

// A start still in flight when the claim delay ends is neither claimed
// nor sent again.
func TestAStartInFlightAtTheClaimDelayIsNotRepeated(t *testing.T) {
	bbs := &lifecycleBBS{startLatency: 2 * time.Second}
	exec, _ := runDelayedClaims(t, sim.Options{}, bbs, time.Second)
	reserveVersioned(t, exec, "pg", "ig-1", true)

	waitForCalls(t, bbs, []string{"get-desired", "start+version"}, "one start")
	time.Sleep(3 * time.Second) // past a second start, had the timer sent one
	require.Equal(t, []string{"get-desired", "start+version"}, bbs.snapshot(), "no second start, no claim")
}

// A bulk sync while such a start is in flight does not report it again.
func TestABulkSyncDuringAStartInFlightDoesNotRepeatIt(t *testing.T) {
	bbs := &lifecycleBBS{startLatency: time.Second}
	exec, h := runDelayedClaims(t, sim.Options{}, bbs, time.Hour)
	reserveVersioned(t, exec, "pg", "ig-1", true)
	// Once the start is in flight (for a second), a bulk sync.
	require.Eventually(t, func() bool { return bbs.startsBegun.Load() == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, h.Sync(context.Background()))

	waitForCalls(t, bbs, []string{"get-desired", "start+version"}, "one start")
	time.Sleep(1500 * time.Millisecond) // past a second start, had the sync sent one
	require.Equal(t, []string{"get-desired", "start+version"}, bbs.snapshot(), "no second start")
}

func TestAnInstanceSlowerThanTheClaimDelayIsClaimedThenStarted(t *testing.T) {
	bbs := &lifecycleBBS{}
	exec, h := runDelayedClaims(t, sim.Options{StartDelay: 3 * time.Second}, bbs, 300*time.Millisecond)
	reserveVersioned(t, exec, "pg", "ig-1", true)

	waitForCalls(t, bbs, []string{"get-desired", "claim"}, "an instance still starting after the delay is claimed")
	require.Eventually(t, func() bool { return runBeforeClaimCounts(h)["claimed"] == 1 }, 5*time.Second, 10*time.Millisecond)
	c, err := exec.Get("ig-1")
	require.NoError(t, err)
	require.NotEqual(t, executor.StateRunning, c.State, "claimed while it was still starting")
	waitForCalls(t, bbs, []string{"get-desired", "claim", "start"}, "once claimed, its start is an ordinary one")
}

func TestWithoutAClaimDelayOrARunInfoVersionTheCellClaimsFirst(t *testing.T) {
	for _, tc := range []struct {
		name      string
		delay     time.Duration
		versioned bool
	}{
		{"no claim delay (Diego's order)", 0, true},
		{"an auction that named no run info version", time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bbs := &lifecycleBBS{}
			exec, _ := runDelayedClaims(t, sim.Options{}, bbs, tc.delay)
			reserveVersioned(t, exec, "pg", "ig-1", tc.versioned)
			waitForCalls(t, bbs, []string{"claim", "get-desired", "start"}, "claim, fetch, run, start")
		})
	}
}

func TestARefusedStartWithoutAClaimStopsTheContainerAndRemovesNothing(t *testing.T) {
	bbs := &lifecycleBBS{refuseStarts: true}
	exec, h := runDelayedClaims(t, sim.Options{}, bbs, 2*time.Second)
	reserveVersioned(t, exec, "pg", "ig-1", true)

	require.Eventually(t, containerGone(exec, "ig-1"), 10*time.Second, 10*time.Millisecond,
		"the instance is another cell's (or runs an outdated run info): the container goes")
	require.Equal(t, map[string]float64{"refused": 1}, runBeforeClaimCounts(h))
	time.Sleep(2500 * time.Millisecond) // past the delay
	require.Equal(t, []string{"get-desired", "start+version"}, bbs.snapshot(),
		"no claim after the refusal, and no RemoveActualLRP of a row this cell never held")
}

func TestARefusedDelayedClaimStopsTheContainer(t *testing.T) {
	bbs := &lifecycleBBS{refuseClaims: true}
	exec, _ := runDelayedClaims(t, sim.Options{StartDelay: time.Hour}, bbs, 200*time.Millisecond)
	reserveVersioned(t, exec, "pg", "ig-1", true)

	require.Eventually(t, containerGone(exec, "ig-1"), 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"get-desired", "claim"}, bbs.snapshot(), "nothing is removed or started after the refused claim")
}

// A claim accepted for an instance whose run info changed since the
// auction stops the container, and the instance (now this cell's) is
// removed for the converger to place again with the current run info.
func TestADelayedClaimOfAnOutdatedRunStopsItAndRemovesTheInstance(t *testing.T) {
	bbs := &lifecycleBBS{claimRevision: testRevision + 1}
	exec, h := runDelayedClaims(t, sim.Options{StartDelay: time.Hour}, bbs, 200*time.Millisecond)
	reserveVersioned(t, exec, "pg", "ig-1", true)

	waitForCalls(t, bbs, []string{"get-desired", "claim", "remove"}, "claimed, stopped, removed")
	require.Eventually(t, containerGone(exec, "ig-1"), 10*time.Second, 10*time.Millisecond)
	require.Equal(t, map[string]float64{"refused": 1}, runBeforeClaimCounts(h))
}

func TestACrashBeforeTheFirstReportIsClaimedThenRecorded(t *testing.T) {
	bbs := &lifecycleBBS{}
	// The process exits at once, before it passes its first health probe.
	exec, _ := runDelayedClaims(t, sim.Options{StartDelay: time.Hour, RunDuration: 20 * time.Millisecond}, bbs, time.Hour)
	reserveVersioned(t, exec, "pg", "ig-1", true)

	waitForCalls(t, bbs, []string{"get-desired", "claim", "crash"}, "the crash is recorded on a row the cell claimed, so it counts")
	require.Eventually(t, containerGone(exec, "ig-1"), 10*time.Second, 10*time.Millisecond)
}

func TestBulkSyncKeepsAContainerRunBeforeItsClaim(t *testing.T) {
	bbs := &lifecycleBBS{}
	exec, h := runDelayedClaims(t, sim.Options{StartDelay: time.Hour}, bbs, time.Hour)
	reserveVersioned(t, exec, "pg", "ig-1", true)
	waitForCalls(t, bbs, []string{"get-desired"}, "run at once")
	require.Eventually(t, func() bool { c, err := exec.Get("ig-1"); return err == nil && c.State != executor.StateReserved }, 10*time.Second, 10*time.Millisecond)

	// The BBS lists no row of this cell for it (its row is UNCLAIMED), which
	// for any other container means it is unwanted.
	require.NoError(t, h.Sync(context.Background()))
	time.Sleep(200 * time.Millisecond)
	_, err := exec.Get("ig-1")
	require.NoError(t, err, "a bulk sync does not delete a container whose claim is deferred")
	require.Equal(t, []string{"get-desired"}, bbs.snapshot())
}

func TestEvacuatingClaimsAContainerRunBeforeItsClaimFirst(t *testing.T) {
	bbs := &lifecycleBBS{}
	evac := &rep.Evacuation{}
	exec, _ := runDelayedClaimsEvacuating(t, sim.Options{StartDelay: time.Hour}, bbs, time.Hour, evac)
	reserveVersioned(t, exec, "pg", "ig-1", true)
	waitForCalls(t, bbs, []string{"get-desired"}, "run at once")

	// The BBS row is UNCLAIMED: evacuating it as claimed would unclaim a row
	// this cell never held, so the cell claims it, then evacuates it.
	evac.Evacuate()
	waitForCalls(t, bbs, []string{"get-desired", "claim", "evacuate-claimed"}, "claimed, then evacuated")
}

// A rep restarted after running an instance and before its claim or start
// forgot that the container is its own to report: its bulk sync, which
// finds no row of this cell for it, takes it back instead of deleting it,
// and its start names the run info it runs.
func TestARestartedHarmonizerTakesBackAContainerRunBeforeItsClaim(t *testing.T) {
	bbs := &lifecycleBBS{}
	exec := newSimExecutor(t, sim.Options{StartDelay: 500 * time.Millisecond})
	_, stopFirst := startHarmonizer(t, exec, bbs, time.Hour, &rep.Evacuation{})
	reserveVersioned(t, exec, "pg", "ig-1", true)
	waitForCalls(t, bbs, []string{"get-desired"}, "run at once")
	stopFirst()

	require.Eventually(t, func() bool { c, err := exec.Get("ig-1"); return err == nil && c.State == executor.StateRunning },
		10*time.Second, 10*time.Millisecond, "the container runs on while no harmonizer watches")
	_, stop := startHarmonizer(t, exec, bbs, time.Hour, &rep.Evacuation{}) // its first bulk sync runs at once
	t.Cleanup(stop)
	waitForCalls(t, bbs, []string{"get-desired", "start+version"}, "the restarted cell starts it from UNCLAIMED")
	c, err := exec.Get("ig-1")
	require.NoError(t, err, "not deleted as unwanted")
	require.Equal(t, executor.StateRunning, c.State)
}
