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

// TestSimCellMemory measures the memory of simulated cells: set
// GAVEL_REP_FARM_MEMORY to a list of farm sizes ("200,1000"). It reports
// heap (after GC), RSS and goroutines per cell, each over the process before
// the farm started (the BBS runs in the same process and is part of the
// baseline). Nothing is asserted about the figures.
func TestSimCellMemory(t *testing.T) {
	sizes := os.Getenv("GAVEL_REP_FARM_MEMORY")
	if sizes == "" {
		t.Skip("set GAVEL_REP_FARM_MEMORY=200,1000 to measure")
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		t.Run(s, func(t *testing.T) {
			prefix := etcdtest.Prefix(t)
			b, _ := startBBS(t, prefix)
			heap0, rss0, g0 := measure()
			start := time.Now()
			r, stop := startRep(t, simConfig(t, prefix, b.Addr(), n))
			took := time.Since(start)
			time.Sleep(2 * time.Second) // let the first bulk syncs settle
			require.Len(t, r.Cells(), n)
			heap1, rss1, g1 := measure()
			t.Logf("%d cells ready in %s: heap %.1f KB/cell, RSS %.1f KB/cell, %.1f goroutines/cell",
				n, took.Round(time.Millisecond), float64(heap1-heap0)/1024/float64(n), float64(rss1-rss0)/1024/float64(n), float64(g1-g0)/float64(n))
			stop()
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
