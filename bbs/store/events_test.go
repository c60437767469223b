package store

import (
	"context"
	"fmt"
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

// relist makes the cache list its prefix again, as after a broken watch, and
// waits until it has.
func relist(t *testing.T, c *Cache) {
	t.Helper()
	n := c.Relists()
	c.mu.Lock()
	cancel := c.cancelWatch
	c.mu.Unlock()
	require.NotNil(t, cancel, "the cache is watching")
	cancel()
	require.Eventually(t, func() bool { return c.Relists() > n }, 10*time.Second, 10*time.Millisecond)
}

func TestSubscribersReadTheCachesEvents(t *testing.T) {
	f := newFixture(t)
	stats := f.store.Subscriptions()
	fromCache, fromEtcd := stats.FromCache(), stats.FromEtcd()
	a, _ := f.store.Subscribe(f.ctx, 0, EventFilter{Kinds: AllEventKinds()})
	b, _ := f.store.Subscribe(f.ctx, f.store.Cache().Revision(), EventFilter{Kinds: AllEventKinds()})
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 2))
	require.NoError(t, err)
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 1, ik("c1")))
	for _, ch := range []<-chan *modelsv1.Event{a, b} {
		got := collect(t, ch, 4)
		require.Equal(t, []string{"desired_created", "actual_created", "actual_created", "actual_changed"},
			[]string{kindOf(got[0]), kindOf(got[1]), kindOf(got[2]), kindOf(got[3])})
		changed := got[3].GetActualLrpInstanceChanged()
		require.Equal(t, models.Unclaimed, changed.GetBefore().GetState())
		require.Equal(t, models.Claimed, changed.GetAfter().GetState())
		require.Equal(t, "c1", changed.GetAfter().GetInstanceKey().GetCellId())
	}
	require.Equal(t, fromCache+2, stats.FromCache(), "both read the cache's events")
	require.Equal(t, fromEtcd, stats.FromEtcd(), "neither opened an etcd watch")
}

// The cache holds events etcd has compacted away: a subscriber resumes from
// them. Once the cache lists again it no longer does, and the resume fails
// as etcd's would.
func TestResumeAfterCompaction(t *testing.T) {
	f := newFixture(t)
	old := f.store.Cache().Revision()
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 1))
	require.NoError(t, err)
	_, err = f.store.DesireLRP(f.ctx, desired("pg2", 1))
	require.NoError(t, err)
	_, err = f.client.Compact(f.ctx, f.store.Cache().Revision())
	require.NoError(t, err)
	events, _ := f.store.Subscribe(f.ctx, old, EventFilter{Kinds: AllEventKinds()})
	got := collect(t, events, 4)
	require.Equal(t, "pg", got[0].GetDesiredLrpCreated().GetDesiredLrp().GetKey().GetProcessGuid())
	require.Equal(t, "pg2", got[2].GetDesiredLrpCreated().GetDesiredLrp().GetKey().GetProcessGuid())

	relist(t, f.store.Cache())
	fromEtcd := f.store.Subscriptions().FromEtcd()
	_, errs := f.store.Subscribe(f.ctx, old, EventFilter{Kinds: AllEventKinds()})
	select {
	case err := <-errs:
		require.ErrorIs(t, err, models.ErrCompacted)
	case <-time.After(10 * time.Second):
		t.Fatal("no compaction error")
	}
	require.Equal(t, fromEtcd+1, f.store.Subscriptions().FromEtcd())
}

// A subscriber reading the cache's events when the cache lists again goes on
// from an etcd watch, even in the middle of one transaction's events, with
// none missed or sent twice.
func TestSubscriberMovesToEtcdWhenTheCacheListsAgain(t *testing.T) {
	f := newFixture(t)
	const instances = 2 * SubscriberBuffer
	events, errs := f.store.Subscribe(f.ctx, f.store.Cache().Revision(), EventFilter{Kinds: AllEventKinds()})
	_, err := f.store.DesireLRP(f.ctx, desired("pg", instances))
	require.NoError(t, err)
	seen := map[int32]int{}
	read := func(n int) {
		for _, e := range collect(t, events, n) {
			if c := e.GetActualLrpInstanceCreated(); c != nil {
				seen[c.GetActualLrp().GetKey().GetIndex()]++
			}
		}
	}
	read(100) // the rest of the transaction's events are not sent yet
	fellBack := f.store.Subscriptions().FellBack()
	relist(t, f.store.Cache())
	read(instances + 1 - 100)
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("c1")))
	after := collect(t, events, 1)
	require.Equal(t, "actual_changed", kindOf(after[0]), "the next event, none repeated before it")
	require.Len(t, seen, instances)
	for i, n := range seen {
		require.Equal(t, 1, n, "index %d", i)
	}
	require.Equal(t, fellBack+1, f.store.Subscriptions().FellBack(), "it moved to an etcd watch")
	select {
	case err := <-errs:
		t.Fatalf("stream ended: %v", err)
	default:
	}
}

// A subscriber that falls further behind than the cache holds is not cut
// off while within its grace: it goes on from an etcd watch.
func TestSubscriberBehindTheCachesEventsGoesOnFromEtcd(t *testing.T) {
	f := newFixture(t)
	c := f.store.Cache()
	const logSize = 256
	c.mu.Lock()
	c.events = newEventLog(logSize) // a short log, so a little falls behind it
	c.events.restart(c.state.rev)
	c.mu.Unlock()
	events, _ := f.store.Subscribe(f.ctx, c.Revision(), EventFilter{Kinds: AllEventKinds()})
	fellBack := f.store.Subscriptions().FellBack()
	total := 0
	for i := 0; total < SubscriberBuffer+2*logSize; i++ {
		_, err := f.store.DesireLRP(f.ctx, desired(fmt.Sprintf("pg-%d", i), 500))
		require.NoError(t, err)
		total += 501
	}
	got := collect(t, events, total)
	seen := map[string]bool{}
	for i, e := range got {
		if i > 0 {
			require.GreaterOrEqual(t, e.GetRevision(), got[i-1].GetRevision(), "revision order")
		}
		id := kindOf(e)
		if a := e.GetActualLrpInstanceCreated().GetActualLrp(); a != nil {
			id = fmt.Sprintf("%s/%d", a.GetKey().GetProcessGuid(), a.GetKey().GetIndex())
		} else if d := e.GetDesiredLrpCreated().GetDesiredLrp(); d != nil {
			id = d.GetKey().GetProcessGuid()
		}
		require.False(t, seen[id], "%s sent twice", id)
		seen[id] = true
	}
	require.Equal(t, fellBack+1, f.store.Subscriptions().FellBack())
}
