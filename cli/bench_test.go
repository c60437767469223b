package cli

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bench"
)

func TestNumberedInsertsTheRunBeforeTheExtension(t *testing.T) {
	for in, want := range map[string]string{"r.json": "r-run2.json", "out/r": "out/r-run2", "": ""} {
		if got := numbered(in, 2); got != want {
			t.Errorf("numbered(%q, 2) = %q, want %q", in, got, want)
		}
	}
}

// The auctioneer's max_auction_interval goes into the daemons' config only
// when the flag is given (daemons older than the setting refuse it, and
// --bin-dir runs them); min_auction_interval always goes.
func TestBenchPassesMaxAuctionIntervalOnlyWhenGiven(t *testing.T) {
	stop := errors.New("options seen")
	for _, tc := range []struct {
		args    []string
		wantMax *time.Duration
		wantMin time.Duration
	}{
		{args: nil, wantMax: nil, wantMin: bench.DefaultMinAuctionInterval},
		{args: []string{"--max-auction-interval", "5s"}, wantMax: ptr(5 * time.Second), wantMin: bench.DefaultMinAuctionInterval},
		{args: []string{"--max-auction-interval", "0s", "--min-auction-interval", "2s"}, wantMax: ptr(time.Duration(0)), wantMin: 2 * time.Second},
	} {
		var seen *bench.Options
		cmd := newBenchCommandWith(func(_ context.Context, _ io.Writer, o bench.Options, _, _ string) (*bench.Result, error) {
			seen = &o
			return nil, stop
		})
		cmd.SetArgs(append([]string{"--cells", "2", "--instances", "4"}, tc.args...))
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		require.ErrorIs(t, cmd.Execute(), stop, "%v", tc.args)
		require.NotNil(t, seen, "%v", tc.args)
		require.Equal(t, tc.wantMax, seen.MaxAuctionInterval, "%v", tc.args)
		require.NotNil(t, seen.MinAuctionInterval, "%v", tc.args)
		require.Equal(t, tc.wantMin, *seen.MinAuctionInterval, "%v", tc.args)
	}
}

func ptr[T any](v T) *T { return &v }
