package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func TestWaitForRunningGetActualLRPAndEvents(t *testing.T) {
	addr, stop := exampleBBS()
	defer stop()
	bbs, err := client.New(client.Config{Addresses: []string{addr}})
	require.NoError(t, err)
	defer bbs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	require.ErrorIs(t, bbs.WaitForRunning(ctx, "nope", 1), models.ErrNotFound, "an LRP that is not desired fails at once")
	_, err = bbs.GetActualLRP(ctx, &bbsv1.GetActualLRPRequest{ProcessGuid: "nope"})
	require.ErrorIs(t, err, models.ErrNotFound)
	_, err = bbs.GetActualLRP(ctx, &bbsv1.GetActualLRPRequest{ProcessGuid: "web", Index: -1})
	var v *models.ValidationError
	require.ErrorAs(t, err, &v)
	require.Equal(t, "index", v.Errors[0].Field)

	_, err = bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: "web", Domain: "d", RootFs: "preloaded:cflinuxfs4", Instances: 2, MemoryMb: 64,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/web"}}},
	}})
	require.NoError(t, err)
	require.ErrorIs(t, bbs.WaitForRunning(ctx, "web", 3), models.ErrInvalid, "more than desired fails at once")

	// A cell's calls, by hand: index 0 and 1 run.
	ik := func(i int32) *modelsv1.ActualLRPInstanceKey {
		return &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("ig-%d", i), CellId: "cell-1"}
	}
	key := func(i int32) *modelsv1.ActualLRPKey {
		return &modelsv1.ActualLRPKey{ProcessGuid: "web", Index: i, Domain: "d"}
	}
	waited := make(chan error, 1)
	go func() { waited <- bbs.WaitForRunning(ctx, "web", 2) }()
	for i := range int32(2) {
		_, err = bbs.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "web", Index: i, InstanceKey: ik(i)})
		require.NoError(t, err)
		_, err = bbs.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: key(i), InstanceKey: ik(i), NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1"}})
		require.NoError(t, err)
	}
	require.NoError(t, <-waited)
	got, err := bbs.GetActualLRP(ctx, &bbsv1.GetActualLRPRequest{ProcessGuid: "web", Index: 1})
	require.NoError(t, err)
	require.Equal(t, models.Running, got.GetActualLrp().GetState())
	require.Nil(t, got.GetEvacuating())
	since := got.GetActualLrp().GetSince()

	// Evacuating index 1: the evacuating row beside the new ordinary one.
	_, err = bbs.EvacuateRunningActualLRP(ctx, &bbsv1.EvacuateRunningActualLRPRequest{ActualLrpKey: key(1), InstanceKey: ik(1), NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1"}})
	require.NoError(t, err)
	got, err = bbs.GetActualLRP(ctx, &bbsv1.GetActualLRPRequest{ProcessGuid: "web", Index: 1})
	require.NoError(t, err)
	require.Equal(t, models.Unclaimed, got.GetActualLrp().GetState())
	require.Equal(t, "ig-1", got.GetEvacuating().GetInstanceKey().GetInstanceGuid())
	require.Equal(t, since, got.GetEvacuating().GetSince(), "the evacuating row keeps the instance's since (the routes' endpoint_updated_at_ns)")

	// Index 0 crashes past the immediate restarts: WaitForRunning says so.
	for range 3 {
		_, err = bbs.CrashActualLRP(ctx, &bbsv1.CrashActualLRPRequest{ActualLrpKey: key(0), InstanceKey: ik(0), ErrorMessage: "exit status 3"})
		require.NoError(t, err)
		a, err := bbs.GetActualLRP(ctx, &bbsv1.GetActualLRPRequest{ProcessGuid: "web", Index: 0})
		require.NoError(t, err)
		if a.GetActualLrp().GetState() == models.Crashed {
			break
		}
		_, err = bbs.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "web", Index: 0, InstanceKey: ik(0)})
		require.NoError(t, err)
		_, err = bbs.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: key(0), InstanceKey: ik(0), NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1"}})
		require.NoError(t, err)
	}
	began := time.Now()
	err = bbs.WaitForRunning(ctx, "web", 2)
	var crashing *client.CrashingError
	require.ErrorAs(t, err, &crashing, "got %v", err)
	require.Contains(t, err.Error(), "index 0 CRASHED 3 times (exit status 3)")
	require.Less(t, time.Since(began), 5*time.Second)

	// The iterator ends without an error when its context does.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	n := 0
	for _, err := range bbs.Events(short, &bbsv1.SubscribeEventsRequest{}) {
		require.NoError(t, err)
		n++
	}
	require.Zero(t, n, "no event happened")
	require.Error(t, short.Err(), "the loop ended with its context")
}
