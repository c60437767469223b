package store

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// TestApplyChangesInChunksReportsEachChunkOnceTheCacheHasIt commits ten
// creations, one of which loses its guard, in chunks of four: each chunk is
// reported once, in order, with its own outcomes, and the rows it committed
// are readable from the cache when it is reported.
func TestApplyChangesInChunksReportsEachChunkOnceTheCacheHasIt(t *testing.T) {
	f := newFixture(t)
	keys := f.store.Keys()
	const taken = 5
	_, err := f.client.Put(f.ctx, keys.Actual("pg", taken, models.Ordinary), "already there")
	require.NoError(t, err)

	changes := make([]Change, 10)
	for i := range changes {
		k := keys.Actual("pg", int32(i), models.Ordinary)
		row := models.NewUnclaimed(&modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: int32(i), Domain: "d"}, time.Unix(1, 0))
		changes[i] = Change{Guards: []Guard{{Key: k}}, Writes: []Write{{Key: k, Value: row}}}
	}
	type report struct{ from, to int }
	var reports []report
	res, err := f.store.ApplyChangesInChunks(f.ctx, changes, 4, func(from, to int, applied []bool) {
		reports = append(reports, report{from, to})
		for i := from; i < to; i++ {
			require.Equal(t, i != taken, applied[i], "change %d", i)
			if i == taken {
				continue
			}
			row, err := f.store.GetActualLRP("pg", int32(i), models.Ordinary)
			require.NoError(t, err, "change %d is in the cache when its chunk is reported", i)
			require.Equal(t, models.Unclaimed, row.GetState())
		}
		for i := to; i < len(applied); i++ {
			require.False(t, applied[i], "change %d is not reported before its chunk", i)
		}
	})
	require.NoError(t, err)
	require.Equal(t, []report{{0, 4}, {4, 8}, {8, 10}}, reports)
	require.Equal(t, 1, res.Conflicts)
	require.Zero(t, res.Failed)
}

// TestChunkedChangesLetOtherWritesThrough: a write made while a long chunked
// apply is under way waits behind a couple of its chunks, not behind all of
// them (a lost cell's suspects must not hold up the claims and starts of
// their replacements).
func TestChunkedChangesLetOtherWritesThrough(t *testing.T) {
	f := newFixtureWith(t, CommitterOptions{MaxOps: 8, Workers: 1})
	s, ctx := f.store, f.ctx

	const n, chunk = 800, 8 // 100 chunks, one transaction each
	changes := make([]Change, n)
	for i := range changes {
		k := s.Keys().Actual("pg", int32(i), models.Ordinary)
		row := models.NewUnclaimed(&modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: int32(i), Domain: "d"}, time.Unix(1, 0))
		changes[i] = Change{Guards: []Guard{{Key: k}}, Writes: []Write{{Key: k, Value: row}}}
	}
	var reported atomic.Int32
	chunksBeforeOther := make(chan int32, 1)
	_, err := s.ApplyChangesInChunks(ctx, changes, chunk, func(from, to int, _ []bool) {
		if reported.Add(1) != 1 {
			return
		}
		go func() {
			k := s.Keys().Actual("other", 0, models.Ordinary)
			m := &mutation{}
			m.guard(k, 0)
			if err := s.putProto(m, k, models.NewUnclaimed(&modelsv1.ActualLRPKey{ProcessGuid: "other", Domain: "d"}, time.Unix(1, 0))); err != nil {
				t.Error(err)
			}
			r := s.committer.Commit(ctx, m)
			if r.err != nil || !r.ok {
				t.Errorf("the other write: %+v", r)
			}
			chunksBeforeOther <- reported.Load()
		}()
	})
	require.NoError(t, err)
	require.EqualValues(t, n/chunk, reported.Load())
	got := <-chunksBeforeOther
	require.Less(t, got, int32(n/chunk/2), "the other write committed after %d of %d chunks had been reported", got, n/chunk)
}
