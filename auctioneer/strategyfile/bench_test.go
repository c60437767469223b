package strategyfile_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/strategyfile"
)

// benchAuction is 200 cells in 3 zones and 2,000 LRP instances of 100 apps.
func benchAuction() auctioneer.Auction {
	var a auctioneer.Auction
	for i := range 200 {
		total := auctioneer.Resources{MemoryMB: 32768, DiskMB: 65536, Containers: 250}
		a.Cells = append(a.Cells, auctioneer.CellState{
			CellID: fmt.Sprintf("cell-%d", i), Zone: fmt.Sprintf("z%d", i%3), Index: i, Total: total, Available: total,
			RootFSProviders: map[string][]string{"preloaded": {"cflinuxfs4"}},
		})
	}
	for app := range 100 {
		for idx := range 20 {
			a.LRPs = append(a.LRPs, auctioneer.LRPStart{ProcessGUID: fmt.Sprintf("app-%d", app), Index: idx,
				MemoryMB: 128 << (app % 4), DiskMB: 256, RootFS: "preloaded:cflinuxfs4"})
		}
	}
	return a
}

// BenchmarkPlacement compares a compiled strategy with the same score in
// CEL; ns/score is the cost of one Strategy.Score call including the
// engine's fit check around it.
func BenchmarkPlacement(b *testing.B) {
	a := benchAuction()
	for _, bc := range []struct{ name, compiled, file string }{
		{"binpack/compiled", "binpack", ""},
		{"binpack/cel", "", binpackCEL},
		{"binpack/cel-usage_after", "", "score: -usage_after"},
		{"diego/compiled", "diego", ""},
		{"diego/cel", "", diegoCEL},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := auctioneer.DefaultOptions()
			opts.Strategy = bc.compiled
			if bc.file != "" {
				f, err := strategyfile.Parse([]byte(bc.file))
				require.NoError(b, err)
				reg := auctioneer.NewRegistry()
				require.NoError(b, f.Register(reg))
				opts.Strategy, opts.Registry = f.Name(), reg
			}
			var scored int64
			b.ReportAllocs()
			for b.Loop() {
				res, err := auctioneer.Run(a, opts)
				if err != nil {
					b.Fatal(err)
				}
				scored += res.Metrics.CellsScored
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(scored), "ns/score")
			b.ReportMetric(float64(len(a.LRPs)*b.N)/b.Elapsed().Seconds(), "placements/s")
		})
	}
}
