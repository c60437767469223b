package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	auctioneerapp "github.com/gavelhq/gavel/auctioneer/app"
	"github.com/gavelhq/gavel/bench"
	repapp "github.com/gavelhq/gavel/rep/app"
)

// logWriter sends progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestSmallRun is the smoke test `make test` runs: the real daemons as
// separate processes (etcd too: --etcd process), 500 instances on 20 cells,
// and a recovery from losing 10% of the cells. It asserts only that everything reached RUNNING
// and the final check is clean, never how fast.
func TestSmallRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real daemons: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pacing := 500 * time.Millisecond
	res, err := bench.Run(ctx, bench.Options{
		Cells: 20, Instances: 500, InstancesPerLRP: 10, CellsPerProcess: 10, KillShare: 0.1, EtcdMode: bench.EtcdProcess,
		RawDuration: time.Second, PresenceTTL: 3 * time.Second, MinAuctionInterval: &pacing,
		Timeout: 2 * time.Minute, RecoveryTimeout: time.Minute,
		Progress: logWriter{t}, ProgressInterval: 2 * time.Second,
	})
	require.NoError(t, err)

	var summary bytes.Buffer
	require.NoError(t, res.WriteSummary(&summary))
	t.Log("\n" + summary.String())

	assert.True(t, res.Placement.AllRunning, "every instance RUNNING")
	assert.Equal(t, 500, res.Placement.Placed)
	// Each claim looked its desired LRP up once; each of the 50 LRPs was
	// fetched at least once and at most once per rep process (the cells to
	// kill run in a process of their own: 3 in all).
	ri := res.Placement.RunInfo
	assert.GreaterOrEqual(t, ri.Hits+ri.Misses, 500.0, "run-info lookups: %+v", ri)
	assert.GreaterOrEqual(t, ri.Fetches, 50.0, "run-info fetches: %+v", ri)
	require.Equal(t, 3, res.Setup.CellProcesses)
	assert.LessOrEqual(t, ri.Fetches, 50.0*3, "one fetch per LRP and rep process: %+v", ri)
	assert.LessOrEqual(t, ri.Fetches, ri.Misses, "run-info fetches: %+v", ri)
	// Every instance was claimed and started through the cells' batched
	// calls, counted by the reps' metrics.
	for _, call := range []string{"BatchClaimActualLRPs", "BatchStartActualLRPs"} {
		b := res.Placement.CellBatches[call]
		assert.GreaterOrEqual(t, b.Items, 500.0, "%s: %+v", call, b)
		assert.Positive(t, b.Calls, call)
		assert.LessOrEqual(t, b.Calls, b.Items, call)
		// The BBS timed each of those calls (its gRPC server's histogram).
		timed := res.Placement.BBSCalls["/gavel.bbs.v1.BBSService/"+call]
		assert.Positive(t, timed.Count, "%s timed by the BBS: %+v", call, timed)
		assert.Positive(t, timed.P50, call)
	}
	require.NotNil(t, res.Setup.MinAuctionIntervalSec)
	assert.Equal(t, 0.5, *res.Setup.MinAuctionIntervalSec)
	require.NotNil(t, res.Recovery)
	assert.Equal(t, 2, res.Recovery.KilledCells)
	assert.True(t, res.Recovery.AllRunning, "every displaced instance RUNNING again")
	// When the killed cells' presences went is reported, and what followed.
	assert.Positive(t, res.Recovery.FirstPresenceGoneSec)
	assert.LessOrEqual(t, res.Recovery.FirstPresenceGoneSec, res.Recovery.LastPresenceGoneSec)
	assert.InDelta(t, res.Recovery.Seconds-res.Recovery.LastPresenceGoneSec, res.Recovery.AfterLastPresenceSec, 1e-9)
	assert.Equal(t, 500, res.Check.Indices)
	assert.True(t, res.AllRunning(), "one ORDINARY RUNNING row per index: %+v then %+v", res.Check, res.SettledCheck)

	var js bytes.Buffer
	require.NoError(t, res.WriteJSON(&js))
	var back bench.Result
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	assert.Equal(t, res.Placement.Placed, back.Placement.Placed)
	var svg bytes.Buffer
	require.NoError(t, res.WriteSVG(&svg))
	assert.Contains(t, svg.String(), "<polyline")
	assert.Positive(t, res.Placement.BBS.CPUMicrosPerPlaced, "CPU per placed instance is reported")
	assert.InDelta(t, res.Placement.BBS.CPUMicrosPerPlaced/res.BatchedEtcd.Server.MicrosPerWrite, res.Placement.BBS.CPUPerPlacedInEtcdKeys, 1e-9,
		"and in etcd keys, over the batched measurement's CPU per key")
	assert.Nil(t, res.Failure)

	// etcd ran as its own process and its CPU is reported
	// apart from the BBS's, in the JSON too.
	assert.Equal(t, bench.EtcdProcess, res.Setup.EtcdMode)
	require.NotNil(t, res.Placement.EtcdProcess, "the etcd process's use is reported")
	assert.Positive(t, res.Placement.EtcdProcess.CPUMicrosPerPlaced, "etcd's CPU per placed instance")
	assert.Positive(t, res.Placement.EtcdProcess.PeakRSSBytes)
	assert.Positive(t, res.Placement.Etcd.Puts, "etcd's counters come from the etcd process")
	var raw struct {
		Placement struct {
			EtcdProcess struct {
				CPUMicros float64 `json:"cpu_us_per_placed"`
			} `json:"etcd_process"`
		} `json:"placement"`
	}
	require.NoError(t, json.Unmarshal(js.Bytes(), &raw))
	assert.Positive(t, raw.Placement.EtcdProcess.CPUMicros, "the JSON carries etcd's CPU per placed instance")
	require.NotNil(t, res.Recovery.EtcdProcess)
	assert.Contains(t, summary.String(), "etcd ")

	// The etcd process's own CPU over each ceiling measurement is
	// reported, per write, and with the writes per instance it bounds
	// etcd's least share of a placement.
	assert.Positive(t, res.RawEtcd.Server.MicrosPerWrite, "etcd server CPU per raw txn")
	assert.Positive(t, res.BatchedEtcd.Server.MicrosPerWrite, "etcd server CPU per batched key")
	assert.InDelta(t, res.BatchedEtcd.Server.MicrosPerWrite*res.Placement.Etcd.WritesPerInstance, res.Placement.EtcdLeastMicros, 1e-9)
	assert.Contains(t, summary.String(), "its least:")
}

// With --claim-delay the cells run each placed instance at once and its
// start is its first write: every instance RUNNING, far fewer claims than
// instances, about two writes per instance instead of three.
func TestClaimDelayRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real daemons: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pacing := 500 * time.Millisecond
	res, err := bench.Run(ctx, bench.Options{
		Cells: 10, Instances: 300, InstancesPerLRP: 10, CellsPerProcess: 10,
		RawDuration: time.Second, PresenceTTL: 3 * time.Second, MinAuctionInterval: &pacing, ClaimDelay: 5 * time.Second,
		Timeout: 2 * time.Minute, Progress: logWriter{t}, ProgressInterval: 2 * time.Second,
	})
	require.NoError(t, err)
	var summary bytes.Buffer
	require.NoError(t, res.WriteSummary(&summary))
	t.Log("\n" + summary.String())

	assert.True(t, res.AllRunning(), "one ORDINARY RUNNING row per index: %+v", res.Check)
	assert.Equal(t, 300, res.Placement.Placed)
	assert.Equal(t, 5.0, res.Setup.ClaimDelaySec)
	assert.Contains(t, summary.String(), "cells run first and claim after 5s (claim_delay)")
	claims, starts := res.Placement.CellBatches["BatchClaimActualLRPs"], res.Placement.CellBatches["BatchStartActualLRPs"]
	assert.GreaterOrEqual(t, starts.Items, 300.0, "every instance started: %+v", starts)
	assert.Less(t, claims.Items, 30.0, "an instance running within the delay is not claimed: %+v", claims)
	assert.Less(t, res.Placement.Etcd.WritesPerInstance, 2.5, "create and start, no claim")
}

// A run that cannot start still returns a result that says why, which
// serialises to JSON and draws as an SVG.
func TestFailedRunReturnsItsReason(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := bench.Run(ctx, bench.Options{
		Cells: 2, Instances: 10, InstancesPerLRP: 10, BinDir: t.TempDir(), WorkDir: t.TempDir(),
		RawDuration: time.Second, Timeout: 10 * time.Second,
	})
	require.Error(t, err, "no daemons in the bin dir")
	require.NotNil(t, res)
	require.NotNil(t, res.Failure)
	assert.Equal(t, err.Error(), res.Failure.Reason)
	var js bytes.Buffer
	require.NoError(t, res.WriteJSON(&js))
	assert.Contains(t, js.String(), `"failure"`)
	var svg bytes.Buffer
	require.NoError(t, res.WriteSVG(&svg))
}

func TestParseSizes(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []bench.Size
		err      string
	}{
		{name: "mix", in: "64:4,128:3", want: []bench.Size{{64, 4}, {128, 3}}},
		{name: "weight defaults to 1", in: "256", want: []bench.Size{{256, 1}}},
		{name: "bad memory", in: "x:1", err: "memory"},
		{name: "bad weight", in: "64:0", err: "weight"},
		{name: "empty", in: " , ", err: "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bench.ParseSizes(tc.in)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseShare(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  bool
	}{
		{in: "10%", want: 0.1}, {in: "0.25", want: 0.25}, {in: "", want: 0},
		{in: "100%", err: true}, {in: "-1", err: true}, {in: "ten", err: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := bench.ParseShare(tc.in)
			if tc.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-9)
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	assert.NoError(t, bench.Options{}.Validate(), "the defaults are valid")
	err := bench.Options{Cells: 2, Instances: 1000, CellContainers: 10}.Validate()
	assert.ErrorContains(t, err, "exceed")
	err = bench.Options{Cells: 1, KillShare: 0.5}.Validate()
	assert.ErrorContains(t, err, "every cell")
	err = bench.Options{BatchedKeysPerTxn: bench.MaxBatchedKeysPerTxn + 1}.Validate()
	assert.ErrorContains(t, err, "batched-keys-per-txn: must be at most 16384")
	err = bench.Options{Sizes: []bench.Size{{MemoryMB: 1 << 20, Weight: 1}}}.Validate()
	assert.ErrorContains(t, err, "fit a cell")
	for _, iv := range []time.Duration{-time.Second, 11 * time.Second} {
		err = bench.Options{MinAuctionInterval: &iv}.Validate()
		assert.ErrorContains(t, err, "min-auction-interval: must be between 0s and 10s (got "+iv.String()+")")
	}
	zero := time.Duration(0)
	assert.NoError(t, bench.Options{MinAuctionInterval: &zero}.Validate(), "0s (Diego's back-to-back auctions) is valid")
	for _, iv := range []time.Duration{-time.Second, 31 * time.Second} {
		err = bench.Options{MaxAuctionInterval: &iv}.Validate()
		assert.ErrorContains(t, err, "max-auction-interval: must be between 0s and 30s (got "+iv.String()+")")
	}
	assert.NoError(t, bench.Options{MaxAuctionInterval: &zero}.Validate(), "0s (never hold) is valid")
	for _, d := range []time.Duration{-time.Second, 11 * time.Second} {
		err = bench.Options{ClaimDelay: d}.Validate()
		assert.ErrorContains(t, err, "claim-delay: must be between 0s and 10s (got "+d.String()+")")
	}
}

// The bench's flag shows the auctioneer's own default and bound.
func TestMinAuctionIntervalMatchesTheAuctioneer(t *testing.T) {
	assert.Equal(t, auctioneerapp.DefaultMinAuctionInterval, bench.DefaultMinAuctionInterval)
	assert.Equal(t, auctioneerapp.MaxMinAuctionInterval, bench.MaxMinAuctionInterval)
	assert.Equal(t, auctioneerapp.DefaultMinAuctionInterval, auctioneerapp.DefaultConfig().MinAuctionInterval.D())
	assert.Equal(t, auctioneerapp.DefaultMaxAuctionInterval, bench.DefaultMaxAuctionInterval)
	assert.Equal(t, auctioneerapp.MaxMaxAuctionInterval, bench.MaxMaxAuctionInterval)
	assert.Equal(t, auctioneerapp.DefaultMaxAuctionInterval, auctioneerapp.DefaultConfig().MaxAuctionInterval.D())
	assert.Equal(t, repapp.MaxClaimDelay, bench.MaxClaimDelay, "the bench bounds --claim-delay as the rep bounds claim_delay")
}
