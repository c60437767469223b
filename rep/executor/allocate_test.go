package executor_test

import (
	"fmt"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
)

func newSimExecutor(t testing.TB, clk *fakeclock.FakeClock, simOpts sim.Options, total executor.Resources) (*executor.Executor, *executor.Subscription) {
	if clk != nil {
		simOpts.Clock = clk
	}
	opts := executor.Options{
		Backend:              sim.New(simOpts),
		TotalResources:       total,
		ProxyMemoryMB:        32,
		StartupCheckInterval: 10 * time.Millisecond,
	}
	if clk != nil {
		opts.Clock = clk
	}
	e, err := executor.New(ctx, opts)
	require.NoError(t, err)
	sub := e.Subscribe()
	t.Cleanup(func() { sub.Close(); e.Close() })
	return e, sub
}

func TestAllocate(t *testing.T) {
	e, sub := newSimExecutor(t, nil, sim.Options{}, executor.Resources{MemoryMB: 1000, DiskMB: 1000, Containers: 3})
	failures := e.Allocate([]executor.AllocationRequest{
		{Guid: "a", LRP: true, Resource: executor.Resource{MemoryMB: 400, DiskMB: 100}},  // 432 with the proxy
		{Guid: "b", LRP: false, Resource: executor.Resource{MemoryMB: 500, DiskMB: 100}}, // fits: 932
		{Guid: "c", LRP: true, Resource: executor.Resource{MemoryMB: 40, DiskMB: 100}},   // 72 > 68 left
		{Guid: "a", Resource: executor.Resource{MemoryMB: 1}},                            // duplicate
		{Guid: "d", Resource: executor.Resource{MemoryMB: 68, DiskMB: 2000}},             // disk
		{Guid: "e", Resource: executor.Resource{MemoryMB: 68, DiskMB: 800}},              // fits exactly
		{Guid: "f", Resource: executor.Resource{}},                                       // no container slot left
	})
	require.Len(t, failures, 4)
	require.Equal(t, "c", failures[0].Request.Guid)
	require.ErrorIs(t, failures[0].Err, executor.ErrInsufficientResources)
	require.ErrorContains(t, failures[0].Err, "memory")
	require.Equal(t, "a", failures[1].Request.Guid)
	require.ErrorIs(t, failures[1].Err, executor.ErrGuidNotAvailable)
	require.ErrorContains(t, failures[2].Err, "disk")
	require.ErrorContains(t, failures[3].Err, "containers")
	require.Equal(t, executor.Resources{MemoryMB: 0, DiskMB: 0, Containers: 0}, e.RemainingResources())
	require.Equal(t, executor.Resources{MemoryMB: 1000, DiskMB: 1000, Containers: 3}, e.TotalResources())

	for _, guid := range []string{"a", "b", "e"} {
		ev := <-sub.Events()
		require.IsType(t, executor.ContainerReserved{}, ev)
		require.Equal(t, guid, ev.Snapshot().Guid)
		require.Equal(t, executor.StateReserved, ev.Snapshot().State)
	}
	a, err := e.Get("a")
	require.NoError(t, err)
	require.Equal(t, 432, a.AllocatedMemoryMB)

	// Run is only legal from reserved; Stop of a reserved container completes it.
	require.ErrorIs(t, e.Run(ctx, "missing", executor.RunRequest{}), executor.ErrContainerNotFound)
	require.NoError(t, e.Stop("b"))
	b, err := e.Get("b")
	require.NoError(t, err)
	require.Equal(t, executor.StateCompleted, b.State)
	require.True(t, b.RunResult.Stopped)
	require.ErrorIs(t, e.Run(ctx, "b", executor.RunRequest{}), executor.ErrInvalidTransition)
	require.NoError(t, e.Delete(ctx, "b"))
	require.Equal(t, executor.Resources{MemoryMB: 500, DiskMB: 100, Containers: 1}, e.RemainingResources())
	require.Len(t, e.List(), 2)
	seen := map[string]executor.State{}
	e.Visit(func(c *executor.Container) { seen[c.Guid] = c.State })
	require.Equal(t, map[string]executor.State{"a": executor.StateReserved, "e": executor.StateReserved}, seen, "Visit sees every container as it is")
	require.NoError(t, e.Healthy(ctx))
}

func TestReservationExpires(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	e, sub := newSimExecutor(t, clk, sim.Options{}, executor.Resources{MemoryMB: 1000, DiskMB: 1000, Containers: 10})
	require.Empty(t, e.Allocate([]executor.AllocationRequest{{Guid: "old", Resource: executor.Resource{MemoryMB: 100}}}))
	<-sub.Events() // reserved
	clk.WaitForWatcherAndIncrement(30 * time.Second)
	require.Empty(t, e.Allocate([]executor.AllocationRequest{{Guid: "young", Resource: executor.Resource{MemoryMB: 100}}}))
	<-sub.Events() // reserved
	require.Empty(t, e.Allocate([]executor.AllocationRequest{{Guid: "ran", Resource: executor.Resource{MemoryMB: 100}}}))
	<-sub.Events() // reserved
	require.NoError(t, e.Run(ctx, "ran", executor.RunRequest{Action: runA("app")}))

	clk.Increment(30 * time.Second) // "old" is 60 s old now
	var ev executor.Event
	for ev = range sub.Events() {
		if _, ok := ev.(executor.ContainerReservationExpired); ok {
			break
		}
	}
	require.Equal(t, "old", ev.Snapshot().Guid)
	require.Equal(t, executor.ReasonExpired, ev.Snapshot().RunResult.FailureReason)
	_, err := e.Get("old")
	require.ErrorIs(t, err, executor.ErrContainerNotFound)
	_, err = e.Get("young")
	require.NoError(t, err, "a younger reservation stays")
	require.Equal(t, 800, e.RemainingResources().MemoryMB)
}

// Through the sim backend, an LRP becomes running once its start delay has
// passed, and a crashing one completes as failed.
func TestSimBackendThroughExecutor(t *testing.T) {
	e, sub := newSimExecutor(t, nil, sim.Options{StartDelay: 200 * time.Millisecond}, executor.Resources{MemoryMB: 1000, DiskMB: 1000, Containers: 10})
	require.Empty(t, e.Allocate([]executor.AllocationRequest{{Guid: "sim", LRP: true, Resource: executor.Resource{MemoryMB: 100}}}))
	start := time.Now()
	req := lrpRequest(runA("app"), []*modelsv1.Check{tcpCheck(8080)}, nil)
	require.NoError(t, e.Run(ctx, "sim", req))
	for ev := range sub.Events() {
		if _, ok := ev.(executor.ContainerRunning); ok {
			require.Len(t, ev.Snapshot().NetInfo.Ports, 1)
			break
		}
	}
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "running before the start delay")

	crashy, crashSub := newSimExecutor(t, nil, sim.Options{CrashRate: 1, CrashWindow: 50 * time.Millisecond}, executor.Resources{MemoryMB: 1000, DiskMB: 1000, Containers: 10})
	require.Empty(t, crashy.Allocate([]executor.AllocationRequest{{Guid: "crash", Resource: executor.Resource{MemoryMB: 100}}}))
	require.NoError(t, crashy.Run(ctx, "crash", executor.RunRequest{Action: runA("app")}))
	for ev := range crashSub.Events() {
		if c, ok := ev.(executor.ContainerCompleted); ok {
			require.True(t, c.Container.RunResult.Failed)
			require.Equal(t, 1, c.Container.RunResult.ExitStatus)
			require.Equal(t, "Exited with status 1", c.Container.RunResult.FailureReason)
			break
		}
	}
}

func TestRunRequestBuilders(t *testing.T) {
	run := &modelsv1.DesiredLRPRunInfo{
		Key:            &modelsv1.DesiredLRPKey{ProcessGuid: "pg", LogGuid: "lg"},
		Action:         runA("app"),
		Ports:          []uint32{8080},
		StartTimeoutMs: 5000,
		LogSource:      "APP",
		LogRateLimit:   &modelsv1.LogRateLimit{BytesPerSecond: 10},
	}
	req := executor.RunRequestForLRP(run, 3, "ig")
	require.Equal(t, 5*time.Second, req.StartTimeout)
	require.Equal(t, executor.LogConfig{Guid: "lg", Index: 3, SourceName: "APP"}, req.LogConfig)
	require.Equal(t, "ig", req.InstanceGuid)
	require.Equal(t, int64(10), req.LogRateLimitBytesPerSecond)

	task := executor.RunRequestForTask(&modelsv1.TaskDefinition{Action: runA("x"), ResultFile: "/r", LogGuid: "tl"})
	require.Equal(t, "/r", task.ResultFile)
	require.Equal(t, "tl", task.LogConfig.Guid)
}

// BenchmarkAllocate100LRPs reserves 100 LRPs in one Allocate call.
func BenchmarkAllocate100LRPs(b *testing.B) {
	reqs := make([]executor.AllocationRequest, 100)
	for i := range reqs {
		reqs[i] = executor.AllocationRequest{
			Guid: fmt.Sprintf("instance-%03d", i), LRP: true,
			Resource: executor.Resource{MemoryMB: 256, DiskMB: 1024},
			Tags:     executor.Tags{"lifecycle": "lrp", "domain": "cf-apps", "process-guid": "pg"},
		}
	}
	total := executor.Resources{MemoryMB: 1 << 20, DiskMB: 1 << 22, Containers: 1000}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e, err := executor.New(ctx, executor.Options{Backend: sim.New(sim.Options{}), TotalResources: total})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if failures := e.Allocate(reqs); len(failures) != 0 {
			b.Fatal(failures)
		}
		b.StopTimer()
		e.Close()
		b.StartTimer()
	}
}
