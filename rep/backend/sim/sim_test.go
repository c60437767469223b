package sim_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/sim"
)

var ctx = context.Background()

func TestStartDelayGatesProbes(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	b := sim.New(sim.Options{Clock: clk, StartDelay: 5 * time.Second})
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: "c", NetIn: []backend.NetIn{{ContainerPort: 8080}}})
	require.NoError(t, err)
	prober := c.(backend.Prober)
	require.Error(t, prober.Probe(ctx, backend.ProbeSpec{Port: 8080}), "no process yet")

	p, err := c.Run(ctx, backend.ProcessSpec{Path: "app"}, backend.ProcessIO{})
	require.NoError(t, err)
	clk.Increment(4 * time.Second)
	require.Error(t, prober.Probe(ctx, backend.ProbeSpec{Port: 8080}))
	clk.Increment(time.Second)
	require.NoError(t, prober.Probe(ctx, backend.ProbeSpec{Port: 8080}))

	info, err := c.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{p.ID()}, info.ProcessIDs)
	require.Len(t, info.MappedPorts, 1)

	require.NoError(t, b.Destroy(ctx, "c"))
	status, err := p.Wait()
	require.NoError(t, err)
	require.Equal(t, 137, status)
	require.ErrorIs(t, b.Destroy(ctx, "c"), backend.ErrContainerNotFound)
}

func TestRunDuration(t *testing.T) {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	b := sim.New(sim.Options{Clock: clk, RunDuration: time.Minute})
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: "c"})
	require.NoError(t, err)
	p, err := c.Run(ctx, backend.ProcessSpec{}, backend.ProcessIO{})
	require.NoError(t, err)
	exited := make(chan int, 1)
	go func() { s, _ := p.Wait(); exited <- s }()
	clk.WaitForWatcherAndIncrement(59 * time.Second)
	select {
	case <-exited:
		t.Fatal("exited before its run duration")
	case <-time.After(50 * time.Millisecond):
	}
	clk.Increment(time.Second)
	select {
	case s := <-exited:
		require.Equal(t, 0, s)
	case <-time.After(5 * time.Second):
		t.Fatal("did not exit after its run duration")
	}
}

// With a seeded crash rate of 30%, about 300 of 1000 processes crash, all
// within the crash window, with status 1; the others keep running; the same
// seed crashes the same processes.
func TestCrashRate(t *testing.T) {
	first := crashedIndices(t, 42)
	require.InDelta(t, 300, len(first), 60, "crashes: %d", len(first))
	require.Equal(t, first, crashedIndices(t, 42))
	require.NotEqual(t, first, crashedIndices(t, 7))
}

func crashedIndices(t *testing.T, seed uint64) []int {
	clk := fakeclock.NewFakeClock(time.Unix(1000, 0))
	b := sim.New(sim.Options{Clock: clk, CrashRate: 0.3, CrashWindow: 10 * time.Second, Seed: seed,
		Capacity: backend.Capacity{MaxContainers: 1000}})
	var procs []backend.Process
	for i := 0; i < 1000; i++ {
		c, err := b.Create(ctx, backend.ContainerSpec{Handle: fmt.Sprint(i)})
		require.NoError(t, err)
		p, err := c.Run(ctx, backend.ProcessSpec{}, backend.ProcessIO{})
		require.NoError(t, err)
		procs = append(procs, p)
	}
	clk.WaitForWatcherAndIncrement(10 * time.Second)
	// Crashed processes are the ones that no longer run.
	running := func() int {
		n := 0
		for i := 0; i < 1000; i++ {
			c, err := b.Lookup(ctx, fmt.Sprint(i))
			require.NoError(t, err)
			info, err := c.Info(ctx)
			require.NoError(t, err)
			n += len(info.ProcessIDs)
		}
		return n
	}
	// Every crash is due once the clock passed the window; wait until the
	// backend has fired them all.
	require.Eventually(t, b.Settled, 10*time.Second, 10*time.Millisecond)
	require.Less(t, running(), 1000, "some processes crashed")
	var crashed []int
	for i, p := range procs {
		c, err := b.Lookup(ctx, fmt.Sprint(i))
		require.NoError(t, err)
		info, err := c.Info(ctx)
		require.NoError(t, err)
		if len(info.ProcessIDs) == 0 {
			status, err := p.Wait() // it exited: Wait returns at once
			require.NoError(t, err)
			require.Equal(t, 1, status)
			crashed = append(crashed, i)
		}
	}
	return crashed
}

func TestCapacityAndFilter(t *testing.T) {
	b := sim.New(sim.Options{Capacity: backend.Capacity{MaxContainers: 2}})
	_, err := b.Create(ctx, backend.ContainerSpec{Handle: "a", Properties: backend.Properties{"k": "v"}})
	require.NoError(t, err)
	_, err = b.Create(ctx, backend.ContainerSpec{Handle: "a"})
	require.ErrorIs(t, err, backend.ErrHandleExists)
	_, err = b.Create(ctx, backend.ContainerSpec{Handle: "b"})
	require.NoError(t, err)
	_, err = b.Create(ctx, backend.ContainerSpec{Handle: "c"})
	require.Error(t, err)
	list, err := b.Containers(ctx, backend.Properties{"k": "v"})
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "a", list[0].Handle())
	capacity, err := b.Capacity(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(2), capacity.MaxContainers)
}

// BenchmarkMemoryPerContainer reports the heap bytes one simulated container
// with one running process costs.
func BenchmarkMemoryPerContainer(b *testing.B) {
	const n = 10000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		be := sim.New(sim.Options{Capacity: backend.Capacity{MaxContainers: n}})
		for j := 0; j < n; j++ {
			c, err := be.Create(ctx, backend.ContainerSpec{
				Handle:     fmt.Sprintf("instance-guid-%08d", j),
				Properties: backend.Properties{"executor:owner": "cell-1", "tag:lifecycle": "lrp"},
				NetIn:      []backend.NetIn{{ContainerPort: 8080}},
			})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Run(ctx, backend.ProcessSpec{Path: "app"}, backend.ProcessIO{}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/container")
		runtime.KeepAlive(be)
	}
}
