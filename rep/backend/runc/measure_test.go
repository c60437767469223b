package runc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gavelhq/gavel/rep/backend"
)

// BenchmarkCreateToRunning measures, for 1 and for 50 concurrent
// containers, create latency, create→first process output, destroy time,
// and the memory of an idle container (init + a sleeping process) and of
// each process's keeper on the host:
//
//	go test -run '^$' -bench CreateToRunning -benchtime 3x ./rep/backend/runc
func BenchmarkCreateToRunning(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			e := newEnv(b)
			e.opts.MaxContainers = 100
			bk := e.newBackend(b)
			var creates, runs, destroys []time.Duration
			var idle, keepers uint64
			for iter := 0; iter < b.N; iter++ {
				c, r, d, mem, pss := measureRound(b, e, bk, n, iter)
				creates, runs, destroys = append(creates, c...), append(runs, r...), append(destroys, d...)
				idle, keepers = mem, pss
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(pct(creates, 50)), "create-p50-ms")
			b.ReportMetric(ms(pct(runs, 50)), "running-p50-ms")
			b.ReportMetric(ms(pct(runs, 99)), "running-p99-ms")
			b.ReportMetric(ms(pct(destroys, 50)), "destroy-p50-ms")
			b.ReportMetric(float64(idle)/1024, "idle-KiB/container")
			b.ReportMetric(float64(keepers)/1024, "keeper-PSS-KiB/process")
		})
	}
}

// measureRound creates n containers at once, runs a process in each and
// waits for its first output, reads their memory, then destroys them all.
func measureRound(b *testing.B, e *testEnv, bk *Backend, n, round int) (creates, runs, destroys []time.Duration, idle, keepers uint64) {
	ctx := context.Background()
	var mu sync.Mutex
	var wg sync.WaitGroup
	handles := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := fmt.Sprintf("m%d-%d-%d-%s", n, round, i, e.suffix)
			handles[i] = h
			t0 := time.Now()
			c, err := bk.Create(ctx, backend.ContainerSpec{Handle: h, Image: "preloaded:busybox", NetIn: []backend.NetIn{{ContainerPort: 8080}}})
			if err != nil {
				b.Error(err)
				return
			}
			t1 := time.Now()
			var out syncBuffer
			if _, err := c.Run(ctx, backend.ProcessSpec{Path: "sh", Args: []string{"-c", "echo up; exec sleep 600"}}, backend.ProcessIO{Stdout: &out}); err != nil {
				b.Error(err)
				return
			}
			for out.String() == "" {
				time.Sleep(time.Millisecond)
			}
			t2 := time.Now()
			mu.Lock()
			creates = append(creates, t1.Sub(t0))
			runs = append(runs, t2.Sub(t0))
			mu.Unlock()
		}()
	}
	wg.Wait()
	var total uint64
	for _, h := range handles {
		if c, err := bk.Lookup(ctx, h); err == nil {
			m, _ := c.(backend.MetricsReporter).Metrics(ctx)
			total += m.MemoryUsageInBytes
		}
	}
	idle, keepers = total/uint64(n), keeperPSS(e.opts.Root)/uint64(n)
	for _, h := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			if err := bk.Destroy(ctx, h); err != nil {
				b.Error(err)
			}
			mu.Lock()
			destroys = append(destroys, time.Since(t0))
			mu.Unlock()
		}()
	}
	wg.Wait()
	return creates, runs, destroys, idle, keepers
}

// keeperPSS sums the proportional set size of the keepers whose stdout
// is a file below root.
func keeperPSS(root string) uint64 {
	var total uint64
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		out, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", "1"))
		if err != nil || !strings.HasPrefix(out, root) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if !strings.HasPrefix(string(cmdline), "gavel-process-keeper") {
			continue
		}
		data, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "smaps_rollup"))
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				total += kb * 1024
			}
		}
	}
	return total
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := (len(d) - 1) * p / 100
	return d[i].Round(time.Millisecond)
}
