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

// TestMeasure prints create→running latency for 1 and 50 concurrent
// containers, destroy time and the memory of idle containers. It runs only
// with GAVEL_RUNC_MEASURE=1 (it is a measurement, not a check):
//
//	GAVEL_RUNC_MEASURE=1 go test -run TestMeasure -v ./rep/backend/runc
func TestMeasure(t *testing.T) {
	if os.Getenv("GAVEL_RUNC_MEASURE") != "1" {
		t.Skip("set GAVEL_RUNC_MEASURE=1 to measure")
	}
	e := newEnv(t)
	e.opts.MaxContainers = 100
	b := e.newBackend(t)
	ctx := context.Background()
	for _, n := range []int{1, 50} {
		var mu sync.Mutex
		var creates, runs, destroys []time.Duration
		var wg sync.WaitGroup
		handles := make([]string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := fmt.Sprintf("m%d-%d-%s", n, i, e.suffix)
				handles[i] = h
				t0 := time.Now()
				c, err := b.Create(ctx, backend.ContainerSpec{Handle: h, Image: "preloaded:busybox", NetIn: []backend.NetIn{{ContainerPort: 8080}}})
				if err != nil {
					t.Error(err)
					return
				}
				t1 := time.Now()
				var out syncBuffer
				if _, err := c.Run(ctx, backend.ProcessSpec{Path: "sh", Args: []string{"-c", "echo up; exec sleep 600"}}, backend.ProcessIO{Stdout: &out}); err != nil {
					t.Error(err)
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
		if n == 50 {
			time.Sleep(2 * time.Second)
			var total uint64
			for _, h := range handles {
				c, _ := b.Lookup(ctx, h)
				m, _ := c.(backend.MetricsReporter).Metrics(ctx)
				total += m.MemoryUsageInBytes
			}
			t.Logf("idle containers (init + sleep): cgroup memory %d KiB per container; keeper (on the host, one per process) PSS %d KiB",
				total/uint64(n)/1024, keeperPSS(e.opts.Root)/uint64(n)/1024)
		}
		for _, h := range handles {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				if err := b.Destroy(ctx, h); err != nil {
					t.Error(err)
				}
				mu.Lock()
				destroys = append(destroys, time.Since(t0))
				mu.Unlock()
			}()
		}
		wg.Wait()
		t.Logf("%d concurrent: create p50 %v max %v; create→process output p50 %v max %v; destroy p50 %v max %v",
			n, pct(creates, 50), pct(creates, 100), pct(runs, 50), pct(runs, 100), pct(destroys, 50), pct(destroys, 100))
	}
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
