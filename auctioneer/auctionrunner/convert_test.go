package auctionrunner

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/auctioneer"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// A cell's LRP instances read the same from its summaries as from its full
// entries (what a cell that predates summaries answers).
func TestCellStateReadsSummariesOrFullEntries(t *testing.T) {
	want := []auctioneer.RunningLRP{{ProcessGUID: "web", Index: 2, MemoryMB: 256, DiskMB: 1024}, {ProcessGUID: "api", Index: 0, MemoryMB: 64, DiskMB: 128}}
	full := &repv1.StateResponse{CellId: "cell-1"}
	summaries := &repv1.StateResponse{CellId: "cell-1"}
	for _, l := range want {
		full.Lrps = append(full.Lrps, &repv1.LRP{
			Key:                 &modelsv1.ActualLRPKey{ProcessGuid: l.ProcessGUID, Index: int32(l.Index), Domain: "d"},
			InstanceGuid:        "ig-" + l.ProcessGUID,
			Resource:            &auctioneerv1.Resource{MemoryMb: int32(l.MemoryMB), DiskMb: int32(l.DiskMB)},
			PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"},
		})
		summaries.LrpSummaries = append(summaries.LrpSummaries, &repv1.LRPSummary{
			ProcessGuid: l.ProcessGUID, Index: int32(l.Index), MemoryMb: int32(l.MemoryMB), DiskMb: int32(l.DiskMB),
		})
	}
	presence := &modelsv1.CellPresence{CellId: "cell-1", Zone: "z1"}
	for name, st := range map[string]*repv1.StateResponse{"full entries": full, "summaries": summaries} {
		t.Run(name, func(t *testing.T) {
			cs := CellState(presence, st)
			require.Equal(t, want, cs.LRPs)
			require.Equal(t, "z1", cs.Zone)
		})
	}
}
