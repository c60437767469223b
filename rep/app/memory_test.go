package app_test

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
)

// BenchmarkSimCellMemory measures the memory of farms of 200 and 1,000
// simulated cells: heap (after GC), RSS and goroutines per cell, each over
// the process before the farm started (the BBS runs in the same process and
// is part of the baseline), reported as benchmark metrics:
//
//	go test -run '^$' -bench SimCellMemory -benchtime 1x ./rep/app
func BenchmarkSimCellMemory(b *testing.B) {
	for _, n := range []int{200, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				prefix := etcdtest.Prefix(b)
				bbs, _ := startBBS(b, prefix)
				heap0, rss0, g0 := measure()
				start := time.Now()
				r, stop := startRep(b, simConfig(b, prefix, bbs.Addr(), n))
				took := time.Since(start)
				time.Sleep(2 * time.Second) // let the first bulk syncs settle
				require.Len(b, r.Cells(), n)
				heap1, rss1, g1 := measure()
				stop()
				b.ReportMetric(took.Seconds(), "s-to-ready")
				b.ReportMetric(float64(heap1-heap0)/1024/float64(n), "heap-KB/cell")
				b.ReportMetric(float64(rss1-rss0)/1024/float64(n), "RSS-KB/cell")
				b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/cell")
			}
		})
	}
}

func measure() (heap, rss uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	data, _ := os.ReadFile("/proc/self/statm")
	fields := strings.Fields(string(data))
	if len(fields) > 1 {
		pages, _ := strconv.ParseUint(fields[1], 10, 64)
		rss = pages * uint64(os.Getpagesize())
	}
	return ms.HeapAlloc, rss, runtime.NumGoroutine()
}

// A simulated cell costs about a dozen goroutines, none per call it may
// serve and none parked per member of its group: every cell's gRPC server
// once kept 64 parked stream workers (108 goroutines per cell), ifrit's
// grouper parked ~25 per cell on its members' Wait (48 per cell, where
// internal/rungroup now costs one per member), and clientv3's KeepAlive ran
// three goroutines for a presence's lease (locket's keep-alive runs one). Counted over the process
// before the farm (the BBS in it serves each cell's connections, so their
// server-side goroutines count too).
func TestSimCellsKeepFewGoroutines(t *testing.T) {
	const cells = 50
	prefix := etcdtest.Prefix(t)
	bbs, _ := startBBS(t, prefix)
	_, _, g0 := measure()
	r, stop := startRep(t, simConfig(t, prefix, bbs.Addr(), cells))
	defer stop()
	require.Len(t, r.Cells(), cells)
	time.Sleep(time.Second) // the first bulk syncs
	_, _, g1 := measure()
	perCell := float64(g1-g0) / cells
	t.Logf("%.1f goroutines per simulated cell", perCell)
	require.Less(t, perCell, 18.0, "goroutines per simulated cell")
}
