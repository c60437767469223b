package harmonizer

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/workers"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
)

// flakyStartBBS is a BBS that accepts claims, serves one desired LRP, and
// answers the first start report Unavailable, as an overloaded BBS does.
// Calls the test does not expect panic through the nil embedded interface.
type flakyStartBBS struct {
	BBS
	mu       sync.Mutex
	attempts int
	started  []*bbsv1.StartActualLRPRequest
}

func (f *flakyStartBBS) BatchClaimActualLRPs(_ context.Context, in *bbsv1.BatchClaimActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.BatchClaimActualLRPsResponse, error) {
	out := &bbsv1.BatchClaimActualLRPsResponse{}
	for range in.GetClaims() {
		out.Results = append(out.Results, &bbsv1.BatchItemResult{})
	}
	return out, nil
}

func (f *flakyStartBBS) GetDesiredLRP(_ context.Context, in *bbsv1.GetDesiredLRPRequest, _ ...grpc.CallOption) (*bbsv1.GetDesiredLRPResponse, error) {
	return &bbsv1.GetDesiredLRPResponse{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: in.GetProcessGuid(), Domain: "d", RootFs: "preloaded:cflinuxfs4", Instances: 1,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "app"}}},
	}}, nil
}

func (f *flakyStartBBS) BatchStartActualLRPs(_ context.Context, in *bbsv1.BatchStartActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.BatchStartActualLRPsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	out := &bbsv1.BatchStartActualLRPsResponse{}
	for _, s := range in.GetStarts() {
		if f.attempts == 1 {
			out.Results = append(out.Results, &bbsv1.BatchItemResult{Code: int32(codes.Unavailable), Message: "overloaded"})
			continue
		}
		f.started = append(f.started, s)
		out.Results = append(out.Results, &bbsv1.BatchItemResult{})
	}
	return out, nil
}

func (f *flakyStartBBS) ListActualLRPs(context.Context, *bbsv1.ListActualLRPsRequest, ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error) {
	return nil, models.ErrUnavailable // the bulk sync skips a pass it cannot list
}

func (f *flakyStartBBS) ListTasks(context.Context, *bbsv1.ListTasksRequest, ...grpc.CallOption) (*bbsv1.ListTasksResponse, error) {
	return nil, models.ErrUnavailable
}

func (f *flakyStartBBS) snapshot() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts, len(f.started)
}

func TestStartReportRetriedAfterATransientFailure(t *testing.T) {
	bbs := &flakyStartBBS{}
	exec, _ := runHarmonizer(t, sim.Options{}, bbs)

	reserveLRP(t, exec, "pg", "ig-1")

	require.Eventually(t, func() bool { _, started := bbs.snapshot(); return started == 1 }, 10*time.Second, 20*time.Millisecond,
		"the start refused Unavailable is reported again without waiting for a bulk sync")
	attempts, _ := bbs.snapshot()
	require.GreaterOrEqual(t, attempts, 2)
}

// downBBS is a BBS that starts a task and answers its first completion
// Unavailable, as a BBS that is down or failing over does; the calls the
// test does not expect panic through the nil embedded interface.
type downBBS struct {
	BBS
	mu        sync.Mutex
	started   bool
	attempts  int
	completed []*bbsv1.CompleteTaskRequest
}

func (d *downBBS) StartTask(context.Context, *bbsv1.StartTaskRequest, ...grpc.CallOption) (*bbsv1.StartTaskResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.started = true
	return &bbsv1.StartTaskResponse{ShouldStart: true}, nil
}

func (d *downBBS) GetTask(_ context.Context, in *bbsv1.GetTaskRequest, _ ...grpc.CallOption) (*bbsv1.GetTaskResponse, error) {
	return &bbsv1.GetTaskResponse{Task: &modelsv1.Task{TaskGuid: in.GetTaskGuid(), State: models.TaskRunning, CellId: "cell-1",
		Definition: &modelsv1.TaskDefinition{RootFs: "preloaded:cflinuxfs4", Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "job"}}}}}}, nil
}

func (d *downBBS) CompleteTask(_ context.Context, in *bbsv1.CompleteTaskRequest, _ ...grpc.CallOption) (*bbsv1.CompleteTaskResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attempts++
	if d.attempts == 1 {
		return nil, models.ErrUnavailable
	}
	d.completed = append(d.completed, in)
	return &bbsv1.CompleteTaskResponse{}, nil
}

func (d *downBBS) ListActualLRPs(context.Context, *bbsv1.ListActualLRPsRequest, ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error) {
	return &bbsv1.ListActualLRPsResponse{}, nil
}

func (d *downBBS) ListTasks(context.Context, *bbsv1.ListTasksRequest, ...grpc.CallOption) (*bbsv1.ListTasksResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started || len(d.completed) > 0 {
		return &bbsv1.ListTasksResponse{}, nil
	}
	return &bbsv1.ListTasksResponse{Tasks: []*modelsv1.Task{{TaskGuid: "job-1", State: models.TaskRunning, CellId: "cell-1"}}}, nil
}

func (d *downBBS) snapshot() (int, []*bbsv1.CompleteTaskRequest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attempts, append([]*bbsv1.CompleteTaskRequest(nil), d.completed...)
}

// A task's outcome that the BBS could not take is kept in its completed
// container and reported by the next bulk sync, instead of being deleted
// with the container (the BBS then failed the task as lost).
func TestTaskOutcomeKeptUntilTheBBSTakesIt(t *testing.T) {
	ctx := context.Background()
	bbs := &downBBS{}
	exec, h := runHarmonizer(t, sim.Options{RunDuration: 10 * time.Millisecond}, bbs)

	task := &repv1.Task{TaskGuid: "job-1", Domain: "d", Resource: &auctioneerv1.Resource{MemoryMb: 64, DiskMb: 64},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"}}
	require.Empty(t, exec.Allocate([]executor.AllocationRequest{{Guid: "job-1", Resource: executor.Resource{MemoryMB: 64, DiskMB: 64}, Tags: rep.TaskTags(task)}}))

	require.Eventually(t, func() bool { attempts, _ := bbs.snapshot(); return attempts == 1 }, 10*time.Second, 10*time.Millisecond, "the completion is reported")
	c, err := exec.Get("job-1")
	require.NoError(t, err, "the container outlives the refused report")
	require.Equal(t, executor.StateCompleted, c.State)

	require.NoError(t, h.Sync(ctx))
	require.Eventually(t, func() bool { _, done := bbs.snapshot(); return len(done) == 1 }, 10*time.Second, 10*time.Millisecond, "the bulk sync reports it again")
	_, done := bbs.snapshot()
	require.False(t, done[0].GetFailed(), done[0].GetFailureReason())
	require.Eventually(t, func() bool { _, err := exec.Get("job-1"); return err != nil }, 10*time.Second, 10*time.Millisecond, "then the container goes")
}

// crashDownBBS runs an LRP instance and answers its first crash report
// Unavailable.
type crashDownBBS struct {
	flakyStartBBS
	crashes []*bbsv1.CrashActualLRPRequest
	refused int
}

func (c *crashDownBBS) CrashActualLRP(_ context.Context, in *bbsv1.CrashActualLRPRequest, _ ...grpc.CallOption) (*bbsv1.CrashActualLRPResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused == 0 {
		c.refused++
		return nil, models.ErrUnavailable
	}
	c.crashes = append(c.crashes, in)
	return &bbsv1.CrashActualLRPResponse{}, nil
}

func (c *crashDownBBS) ListActualLRPs(context.Context, *bbsv1.ListActualLRPsRequest, ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.started) == 0 || len(c.crashes) > 0 {
		return &bbsv1.ListActualLRPsResponse{}, nil // not running here yet, or crashed
	}
	return &bbsv1.ListActualLRPsResponse{ActualLrps: []*modelsv1.ActualLRP{{
		Key: &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"}, State: models.Running,
		InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-1", CellId: "cell-1"},
	}}}, nil
}

func (c *crashDownBBS) ListTasks(context.Context, *bbsv1.ListTasksRequest, ...grpc.CallOption) (*bbsv1.ListTasksResponse, error) {
	return &bbsv1.ListTasksResponse{}, nil
}

func (c *crashDownBBS) state() (refused, crashes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused, len(c.crashes)
}

// A crash the BBS could not take is reported again by the next bulk sync
// (the crash count paces restarts), not dropped with the container.
func TestCrashKeptUntilTheBBSTakesIt(t *testing.T) {
	ctx := context.Background()
	bbs := &crashDownBBS{}
	exec, h := runHarmonizer(t, sim.Options{RunDuration: 50 * time.Millisecond}, bbs)

	reserveLRP(t, exec, "pg", "ig-1")
	require.Eventually(t, func() bool { refused, _ := bbs.state(); return refused == 1 }, 10*time.Second, 10*time.Millisecond, "the crash is reported")
	_, err := exec.Get("ig-1")
	require.NoError(t, err, "the container outlives the refused report")

	require.NoError(t, h.Sync(ctx))
	require.Eventually(t, func() bool { _, crashes := bbs.state(); return crashes == 1 }, 10*time.Second, 10*time.Millisecond, "the bulk sync reports it again")
	require.Eventually(t, func() bool { _, err := exec.Get("ig-1"); return err != nil }, 10*time.Second, 10*time.Millisecond, "then the container goes")
}

// runHarmonizer runs a harmonizer of cell-1 over a sim-backend executor and
// bbs until the test ends; bulk syncs happen only when the test calls Sync.
func runHarmonizer(t *testing.T, simOpts sim.Options, bbs BBS) (*executor.Executor, *Harmonizer) {
	t.Helper()
	exec, err := executor.New(context.Background(), executor.Options{
		Backend: sim.New(simOpts), CellID: "cell-1", Logger: lager.NewLogger("executor"),
		TotalResources: executor.Resources{MemoryMB: 1024, DiskMB: 1024, Containers: 10},
	})
	require.NoError(t, err)
	t.Cleanup(exec.Close)
	h := New(Options{CellID: "cell-1", Executor: exec, BBS: bbs, BulkSyncInterval: time.Hour, Logger: lager.NewLogger("harmonizer")})
	proc := ifrit.Background(h)
	t.Cleanup(func() { proc.Signal(os.Interrupt); <-proc.Wait() })
	<-proc.Ready()
	return exec, h
}

// reserveLRP reserves a container for index 0 of processGuid, as Perform does.
func reserveLRP(t *testing.T, exec *executor.Executor, processGuid, instanceGuid string) {
	t.Helper()
	lrp := &repv1.LRP{
		Key:                 &modelsv1.ActualLRPKey{ProcessGuid: processGuid, Index: 0, Domain: "d"},
		Resource:            &auctioneerv1.Resource{MemoryMb: 64, DiskMb: 64},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
	}
	require.Empty(t, exec.Allocate([]executor.AllocationRequest{{Guid: instanceGuid, LRP: true, Resource: executor.Resource{MemoryMB: 64, DiskMB: 64}, Tags: rep.LRPTags(lrp, instanceGuid)}}))
}

// slowClaimBBS times out the first claim after committing it and answers
// the first desired-LRP fetch Unavailable, as a BBS saturated by a large
// placement does; it records starts and removals.
type slowClaimBBS struct {
	flakyStartBBS
	claimCalls, desiredCalls, removed int
}

// first counts a call in *calls and says whether it was the first.
func (f *slowClaimBBS) first(calls *int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	*calls++
	return *calls == 1
}

func (f *slowClaimBBS) BatchClaimActualLRPs(ctx context.Context, in *bbsv1.BatchClaimActualLRPsRequest, opts ...grpc.CallOption) (*bbsv1.BatchClaimActualLRPsResponse, error) {
	if f.first(&f.claimCalls) {
		return nil, status.Error(codes.DeadlineExceeded, "context deadline exceeded")
	}
	return f.flakyStartBBS.BatchClaimActualLRPs(ctx, in, opts...)
}

func (f *slowClaimBBS) GetDesiredLRP(ctx context.Context, in *bbsv1.GetDesiredLRPRequest, opts ...grpc.CallOption) (*bbsv1.GetDesiredLRPResponse, error) {
	if f.first(&f.desiredCalls) {
		return nil, models.ErrUnavailable
	}
	return f.flakyStartBBS.GetDesiredLRP(ctx, in, opts...)
}

func (f *slowClaimBBS) RemoveActualLRP(context.Context, *bbsv1.RemoveActualLRPRequest, ...grpc.CallOption) (*bbsv1.RemoveActualLRPResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed++
	return &bbsv1.RemoveActualLRPResponse{}, nil
}

// A claim whose outcome is unknown (timed out) and a run-info fetch that
// met an overloaded BBS are retried: the instance runs on the cell that
// reserved it instead of being deleted, removed and auctioned again.
func TestClaimAndRunInfoRetriedAfterATransientFailure(t *testing.T) {
	bbs := &slowClaimBBS{flakyStartBBS: flakyStartBBS{attempts: 1}} // starts succeed at once
	exec, h := runHarmonizer(t, sim.Options{}, bbs)

	reserveLRP(t, exec, "pg", "ig-1")

	require.Eventually(t, func() bool { _, started := bbs.snapshot(); return started == 1 }, 15*time.Second, 20*time.Millisecond,
		"the instance is started after its claim and its run info were retried")
	count := func(call, code string) float64 {
		var m dto.Metric
		require.NoError(t, h.opts.Metrics.BBSErrors.WithLabelValues(call, code).Write(&m))
		return m.GetCounter().GetValue()
	}
	require.Equal(t, 1.0, count("ClaimActualLRP", "DeadlineExceeded"), "the failed attempt is counted by call and code")
	require.Equal(t, 1.0, count("GetDesiredLRP", "Unavailable"))
	c, err := exec.Get("ig-1")
	require.NoError(t, err, "the container was kept")
	require.Equal(t, executor.StateRunning, c.State)
	bbs.mu.Lock()
	defer bbs.mu.Unlock()
	require.Equal(t, 2, bbs.claimCalls)
	require.Equal(t, 2, bbs.desiredCalls)
	require.Zero(t, bbs.removed, "no RemoveActualLRP for an instance that runs")
}

// gatedClaimBBS holds every claim call until release is closed and counts
// the claims the calls carried.
type gatedClaimBBS struct {
	flakyStartBBS
	release chan struct{}
	claims  atomic.Int64
}

func (g *gatedClaimBBS) BatchClaimActualLRPs(ctx context.Context, in *bbsv1.BatchClaimActualLRPsRequest, opts ...grpc.CallOption) (*bbsv1.BatchClaimActualLRPsResponse, error) {
	g.claims.Add(int64(len(in.GetClaims())))
	<-g.release
	return g.flakyStartBBS.BatchClaimActualLRPs(ctx, in, opts...)
}

// Claims waiting for their batched call hold no goroutine each: with the
// BBS holding the claims of 200 reserved containers, the harmonizer's
// goroutines grow by far fewer than 200; released, every container runs and
// is reported started.
func TestWaitingClaimsHoldNoGoroutine(t *testing.T) {
	const n = 200                                                                                  // the simulated backend holds 250
	bbs := &gatedClaimBBS{flakyStartBBS: flakyStartBBS{attempts: 1}, release: make(chan struct{})} // starts succeed at once
	exec, err := executor.New(context.Background(), executor.Options{
		Backend: sim.New(sim.Options{}), CellID: "cell-1", Logger: lager.NewLogger("executor"),
		TotalResources: executor.Resources{MemoryMB: 64 * n, DiskMB: 64 * n, Containers: n},
	})
	require.NoError(t, err)
	t.Cleanup(exec.Close)
	// Idle workers exit soon, so that only goroutines held by waiting
	// operations stay.
	h := New(Options{CellID: "cell-1", Executor: exec, BBS: bbs, BulkSyncInterval: time.Hour, Logger: lager.NewLogger("harmonizer"),
		Workers: workers.New(10 * time.Millisecond)})
	proc := ifrit.Background(h)
	t.Cleanup(func() { proc.Signal(os.Interrupt); <-proc.Wait() })
	<-proc.Ready()
	released := false
	t.Cleanup(func() {
		if !released {
			close(bbs.release)
		}
	})

	before := runtime.NumGoroutine()
	for i := range n {
		reserveLRP(t, exec, fmt.Sprintf("pg-%d", i), fmt.Sprintf("ig-%d", i))
	}
	pending := func() int {
		h.claims.mu.Lock()
		defer h.claims.mu.Unlock()
		return len(h.claims.pending)
	}
	require.Eventually(t, func() bool { return int(bbs.claims.Load())+pending() == n }, 10*time.Second, time.Millisecond, "every claim waits on the gated call or in the batch queue")
	var grown int
	require.Eventually(t, func() bool { grown = runtime.NumGoroutine() - before; return grown < n/4 }, 5*time.Second, 10*time.Millisecond,
		"goroutines grew by %d while %d claims waited", grown, n)

	close(bbs.release)
	released = true
	require.Eventually(t, func() bool { _, started := bbs.snapshot(); return started == n }, 20*time.Second, 10*time.Millisecond, "every container is reported started")
	for i := range n {
		c, err := exec.Get(fmt.Sprintf("ig-%d", i))
		require.NoError(t, err)
		require.Equal(t, executor.StateRunning, c.State)
	}
}

// A retry waiting out its back-off ends with ctx's error as soon as ctx
// ends, without another attempt.
func TestRetryTransientAsyncStopsWhenItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var attempts atomic.Int64
	result := make(chan error, 1)
	retryTransientAsync(ctx, func(done func(error)) {
		if attempts.Add(1) == 2 {
			cancel()
		}
		done(models.ErrUnavailable)
	}, func(err error) { result <- err })
	select {
	case err := <-result:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("the retry did not end with its context")
	}
	require.EqualValues(t, 2, attempts.Load(), "no attempt after the context ended")
}
