package auctionrunner_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/auctionrunner"
)

func woken(b *auctionrunner.Batch) bool {
	select {
	case <-b.Wake():
		return true
	default:
		return false
	}
}

func TestBatchDeduplicatesKeepingTheFirst(t *testing.T) {
	b := auctionrunner.NewBatch()
	first := lrpStart("pg", 0, 10)
	again := lrpStart("pg", 0, 99) // same identity, different size: dropped
	require.Equal(t, 2, b.AddLRPs(first, lrpStart("pg", 1, 10), again))
	require.Equal(t, 1, b.AddLRPs(again, lrpStart("other", 0, 10)))
	require.Equal(t, 1, b.AddTasks(taskStart("t", 10), taskStart("t", 99)))
	require.Equal(t, 0, b.AddTasks(taskStart("t", 50)))

	lrps, tasks := b.Drain()
	require.Equal(t, []auctioneer.LRPStart{first, lrpStart("pg", 1, 10), lrpStart("other", 0, 10)}, lrps)
	require.Equal(t, []auctioneer.TaskStart{taskStart("t", 10)}, tasks)

	// After a drain the same identities form the next batch.
	require.Equal(t, 1, b.AddLRPs(again))
	lrps, _ = b.Drain()
	require.Equal(t, []auctioneer.LRPStart{again}, lrps)
}

func TestBatchWakesOnceForManyAdds(t *testing.T) {
	b := auctionrunner.NewBatch()
	require.False(t, woken(b))
	b.AddLRPs(lrpStart("a", 0, 1))
	b.AddTasks(taskStart("t", 1))
	b.AddLRPs(lrpStart("b", 0, 1))
	require.True(t, woken(b))
	require.False(t, woken(b), "many adds give one wake-up")

	// A duplicate adds nothing and does not wake.
	b.AddLRPs(lrpStart("a", 0, 1))
	require.False(t, woken(b))

	// Drain clears a pending wake-up: the work it took needs no other auction.
	b.AddLRPs(lrpStart("c", 0, 1))
	b.Drain()
	require.False(t, woken(b))
	l, tk := b.Len()
	require.Zero(t, l+tk)
}
