package auctioneer

import (
	"fmt"
	"testing"
)

// benchAuction builds cells of cellMB memory and disk and cellMB container
// slots in two interleaved zones (as Diego's simulation fixture), and
// instances one-MB LRP instances of 10-instance apps.
func benchAuction(instances, cells, cellMB int) Auction {
	a := Auction{}
	for i := range cells {
		a.Cells = append(a.Cells, CellState{
			CellID:          fmt.Sprintf("cell-%d", i),
			Zone:            fmt.Sprintf("z%d", i%2),
			Index:           i,
			Total:           Resources{MemoryMB: cellMB, DiskMB: cellMB, Containers: cellMB},
			Available:       Resources{MemoryMB: cellMB, DiskMB: cellMB, Containers: cellMB},
			RootFSProviders: map[string][]string{"preloaded": {"cflinuxfs4"}},
		})
	}
	for i := range instances {
		a.LRPs = append(a.LRPs, LRPStart{
			ProcessGUID: fmt.Sprintf("app-%d", i/10),
			Index:       i % 10,
			Domain:      "bench",
			MemoryMB:    1,
			DiskMB:      1,
			RootFS:      "preloaded:cflinuxfs4",
		})
	}
	return a
}

func benchmarkRun(b *testing.B, a Auction, strategy string) {
	b.Helper()
	benchmarkRunScan(b, a, strategy, scanAuto)
}

// benchmarkRunScan is benchmarkRun with the cell index (scanAuto) or with
// every fitting cell scored (scanFull), as the engine did before it.
func benchmarkRunScan(b *testing.B, a Auction, strategy string, mode scanMode) {
	b.Helper()
	opts := DefaultOptions()
	opts.Strategy = strategy
	opts.Seed = 1
	b.ReportAllocs()
	b.ResetTimer()
	var res Result
	for b.Loop() {
		var err error
		res, err = run1(a, opts, mode)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if len(res.Placements)+len(res.Failures) != len(a.LRPs)+len(a.Tasks) {
		b.Fatalf("lost work: %d placed, %d failed", len(res.Placements), len(res.Failures))
	}
	b.ReportMetric(float64(len(res.Failures)), "failed")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(a.LRPs)*len(a.Cells)), "ns/(work×cell)")
}

// BenchmarkDiego8200x100 is issue 4's first target: 8,200 one-MB
// instances over 100 cells of 100 MB, under 50 ms.
func BenchmarkDiego8200x100(b *testing.B) {
	benchmarkRun(b, benchAuction(8200, 100, 100), "diego")
}

// BenchmarkDiego100000x1000 is issue 4's second target: 100,000 instances
// over 1,000 cells, under 2 s.
func BenchmarkDiego100000x1000(b *testing.B) {
	benchmarkRun(b, benchAuction(100000, 1000, 128), "diego")
}

// BenchmarkScaling shows the cost per (work × cell) staying flat as work
// and cells grow.
func BenchmarkScaling(b *testing.B) {
	for _, strategy := range []string{"diego", "binpack", "spread"} {
		for _, size := range []struct{ work, cells int }{{10000, 100}, {10000, 1000}, {50000, 1000}} {
			name := fmt.Sprintf("%s/work=%d/cells=%d", strategy, size.work, size.cells)
			b.Run(name, func(b *testing.B) {
				benchmarkRun(b, benchAuction(size.work, size.cells, 128), strategy)
			})
		}
	}
}

// BenchmarkEngine compares the cell index with the full scan it replaced
// (same placements, tested in index_test.go). The full scan is not run at
// 1,000,000 × 10,000: it takes minutes.
func BenchmarkEngine(b *testing.B) {
	for _, size := range []struct{ work, cells, cellMB int }{{100000, 1000, 128}, {1000000, 10000, 128}} {
		for _, strategy := range []string{"diego", "binpack", "spread"} {
			for _, full := range []bool{false, true} {
				if full && size.cells > 1000 {
					continue
				}
				scan, mode := "index", scanAuto
				if full {
					scan, mode = "fullscan", scanFull
				}
				b.Run(fmt.Sprintf("%s/work=%d/cells=%d/%s", strategy, size.work, size.cells, scan), func(b *testing.B) {
					benchmarkRunScan(b, benchAuction(size.work, size.cells, size.cellMB), strategy, mode)
				})
			}
		}
	}
}
