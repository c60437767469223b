package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// collect reads events until n arrived or the deadline passed.
func collect(t *testing.T, ch <-chan *modelsv1.Event, n int) []*modelsv1.Event {
	t.Helper()
	var out []*modelsv1.Event
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("stream closed after %d of %d events", len(out), n)
			}
			out = append(out, e)
		case <-timeout:
			t.Fatalf("got %d of %d events: %v", len(out), n, out)
		}
	}
	return out
}

func kindOf(e *modelsv1.Event) string {
	switch e.GetEvent().(type) {
	case *modelsv1.Event_DesiredLrpCreated:
		return "desired_created"
	case *modelsv1.Event_DesiredLrpChanged:
		return "desired_changed"
	case *modelsv1.Event_DesiredLrpRemoved:
		return "desired_removed"
	case *modelsv1.Event_ActualLrpInstanceCreated:
		return "actual_created"
	case *modelsv1.Event_ActualLrpInstanceChanged:
		return "actual_changed"
	case *modelsv1.Event_ActualLrpInstanceRemoved:
		return "actual_removed"
	case *modelsv1.Event_ActualLrpCrashed:
		return "actual_crashed"
	case *modelsv1.Event_TaskCreated:
		return "task_created"
	case *modelsv1.Event_TaskChanged:
		return "task_changed"
	case *modelsv1.Event_TaskRemoved:
		return "task_removed"
	}
	return "other"
}

func TestEventsInRevisionOrderWithBeforeAndAfter(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	events, _ := f.store.Subscribe(ctx, f.store.Cache().Revision(), EventFilter{Kinds: AllEventKinds()})

	key := &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"}
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 1))
	require.NoError(t, err)
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("c1")))
	require.NoError(t, f.store.StartActualLRP(f.ctx, key, models.StartInfo{InstanceKey: ik("c1"), NetInfo: netInfo(1)}))
	_, err = f.store.CrashActualLRP(f.ctx, key, ik("c1"), "boom")
	require.NoError(t, err)
	_, err = f.store.UpdateDesiredLRP(f.ctx, "pg", &modelsv1.DesiredLRPUpdate{Instances: new(int32)})
	require.NoError(t, err)

	got := collect(t, events, 8)
	var kinds []string
	for i, e := range got {
		kinds = append(kinds, kindOf(e))
		if i > 0 {
			require.GreaterOrEqual(t, e.GetRevision(), got[i-1].GetRevision(), "revision order")
		}
	}
	require.Equal(t, []string{
		"desired_created", "actual_created", // desire: one transaction
		"actual_changed",                                     // claim
		"actual_changed",                                     // start
		"actual_crashed", "actual_removed", "actual_created", // crash: restart at once, the instance is gone
		"desired_changed", // scale to 0 (the unclaimed row's delete follows)
	}, kinds)
	changed := got[3].GetActualLrpInstanceChanged()
	require.Equal(t, models.Claimed, changed.GetBefore().GetState())
	require.Equal(t, models.Running, changed.GetAfter().GetState())
	crashed := got[4].GetActualLrpCrashed()
	require.Equal(t, "c1", crashed.GetInstanceKey().GetCellId())
	require.Equal(t, int32(1), crashed.GetCrashCount())
	require.Equal(t, "boom", crashed.GetCrashReason())
	desiredChange := got[7].GetDesiredLrpChanged()
	require.Equal(t, int32(1), desiredChange.GetBefore().GetInstances())
	require.Equal(t, int32(0), desiredChange.GetAfter().GetInstances())
}

func TestResumeSinceRevisionMissesNothing(t *testing.T) {
	f := newFixture(t)
	start := f.store.Cache().Revision()
	full, _ := f.store.Subscribe(f.ctx, start, EventFilter{Kinds: AllEventKinds()})

	def := &modelsv1.TaskDefinition{RootFs: "docker:///x", Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/x"}}}}
	first, cancelFirst := context.WithCancel(f.ctx)
	partial, _ := f.store.Subscribe(first, start, EventFilter{Kinds: AllEventKinds()})
	for _, g := range []string{"a", "b", "c"} {
		_, err := f.store.DesireTask(f.ctx, g, "d", def)
		require.NoError(t, err)
	}
	seen := collect(t, partial, 3)
	cancelFirst() // the subscriber disconnects
	for _, g := range []string{"d", "e"} {
		_, err := f.store.DesireTask(f.ctx, g, "d", def)
		require.NoError(t, err)
	}
	_, err := f.store.StartTask(f.ctx, "a", "c1")
	require.NoError(t, err)
	resumed, _ := f.store.Subscribe(f.ctx, seen[len(seen)-1].GetRevision(), EventFilter{Kinds: AllEventKinds()})
	rest := collect(t, resumed, 3)

	want := collect(t, full, 6)
	got := append(seen, rest...)
	for i := range want {
		require.Equal(t, want[i].GetRevision(), got[i].GetRevision())
		require.Equal(t, kindOf(want[i]), kindOf(got[i]))
	}
	require.Equal(t, "task_changed", kindOf(got[5]))
}

func TestCellFilter(t *testing.T) {
	f := newFixture(t)
	events, _ := f.store.Subscribe(f.ctx, f.store.Cache().Revision(), EventFilter{Kinds: AllEventKinds(), CellID: "c2"})
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 2))
	require.NoError(t, err)
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("c1")))
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 1, ik("c2")))
	got := collect(t, events, 2)
	require.Equal(t, "desired_created", kindOf(got[0]), "desired LRP events are never filtered")
	require.Equal(t, "actual_changed", kindOf(got[1]))
	require.Equal(t, int32(1), got[1].GetActualLrpInstanceChanged().GetAfter().GetKey().GetIndex())
}

func TestSlowSubscriberIsDisconnected(t *testing.T) {
	f := newFixture(t)
	events, errs := f.store.Subscribe(f.ctx, f.store.Cache().Revision(), EventFilter{Kinds: AllEventKinds()})
	_, err := f.store.DesireLRP(f.ctx, desired("pg", SubscriberBuffer+50))
	require.NoError(t, err)
	select {
	case err := <-errs:
		require.ErrorIs(t, err, models.ErrResourceExhausted)
	case <-time.After(10 * time.Second):
		t.Fatal("slow subscriber was not disconnected")
	}
	n := 0
	for range events {
		n++
	}
	require.Equal(t, SubscriberBuffer, n, "it got what its buffer held")
}

func TestBurstBeyondBufferReachesASubscriberThatCatchesUp(t *testing.T) {
	f := newFixture(t)
	events, errs := f.store.Subscribe(f.ctx, f.store.Cache().Revision(), EventFilter{Kinds: AllEventKinds()})
	// One transaction: 1 desired + 3×SubscriberBuffer actual events at one revision.
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 3*SubscriberBuffer))
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond) // behind for a moment, well within the grace
	got := collect(t, events, 3*SubscriberBuffer+1)
	require.Len(t, got, 3*SubscriberBuffer+1)
	select {
	case err := <-errs:
		t.Fatalf("a subscriber that catches up was disconnected: %v", err)
	default:
	}
}

func TestResumeAfterCompactionFails(t *testing.T) {
	f := newFixture(t)
	old := f.store.Cache().Revision()
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 1))
	require.NoError(t, err)
	_, err = f.store.DesireLRP(f.ctx, desired("pg2", 1))
	require.NoError(t, err)
	_, err = f.client.Compact(f.ctx, f.store.Cache().Revision())
	require.NoError(t, err)
	_, errs := f.store.Subscribe(f.ctx, old, EventFilter{Kinds: AllEventKinds()})
	select {
	case err := <-errs:
		require.ErrorIs(t, err, models.ErrCompacted)
	case <-time.After(10 * time.Second):
		t.Fatal("no compaction error")
	}
}
