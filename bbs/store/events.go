package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/encryption"
	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// SubscriberBuffer is how many events a subscriber may fall behind before it is disconnected.
const SubscriberBuffer = 1024

// SubscriberGrace is how long a subscriber's full buffer waits for room
// before the subscriber is disconnected. One group commit can change more
// records than the buffer holds, so a subscriber that keeps up on average
// still sees bursts beyond it; only one that stays behind is cut off. Each
// subscriber has its own watch, so the wait never holds up the others.
const SubscriberGrace = 5 * time.Second

// EventKinds selects families of events.
type EventKinds struct {
	DesiredLRP, ActualLRP, Task, Cell bool
}

// AllEventKinds selects every family.
func AllEventKinds() EventKinds { return EventKinds{true, true, true, true} }

// EventFilter selects the events a subscriber receives.
type EventFilter struct {
	Kinds EventKinds
	// CellID keeps only actual LRP, task and cell events of that cell; desired LRP events always pass.
	CellID string
}

// Subscribe streams events after sinceRevision (0: from now) in revision
// order until ctx ends. The error channel receives one error when the stream
// ends for another reason: models.ErrCompacted when etcd no longer holds the
// revision, models.ErrResourceExhausted when the subscriber stayed more than
// SubscriberBuffer events behind for SubscriberGrace.
func (s *Store) Subscribe(ctx context.Context, sinceRevision int64, f EventFilter) (<-chan *modelsv1.Event, <-chan error) {
	out := make(chan *modelsv1.Event, SubscriberBuffer)
	errc := make(chan error, 1)
	go func() {
		defer close(out)
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		defer cancel()
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
		if sinceRevision > 0 {
			opts = append(opts, clientv3.WithRev(sinceRevision+1))
		}
		for wr := range s.client.Watch(wctx, s.keys.Prefix(), opts...) {
			if err := wr.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) || wr.CompactRevision != 0 {
					errc <- fmt.Errorf("%w: etcd compacted past revision %d (now at %d): list again and subscribe from the list's revision", models.ErrCompacted, sinceRevision, wr.CompactRevision)
				} else {
					errc <- fmt.Errorf("%w: watch: %v", models.ErrUnavailable, err)
				}
				return
			}
			for _, ev := range wr.Events {
				for _, e := range s.convert(ev) {
					if !f.match(e) {
						continue
					}
					if !send(wctx, out, e) {
						if wctx.Err() == nil {
							errc <- fmt.Errorf("%w: subscriber stayed more than %d events behind for %s and was disconnected; resubscribe with since_revision", models.ErrResourceExhausted, SubscriberBuffer, SubscriberGrace)
						}
						return
					}
				}
			}
		}
		if ctx.Err() == nil {
			errc <- fmt.Errorf("%w: watch closed", models.ErrUnavailable)
		}
	}()
	return out, errc
}

// send puts e in out, waiting up to SubscriberGrace for room; false when
// there was none or ctx ended.
func send(ctx context.Context, out chan<- *modelsv1.Event, e *modelsv1.Event) bool {
	select {
	case out <- e:
		return true
	default:
	}
	grace := time.NewTimer(SubscriberGrace)
	defer grace.Stop()
	select {
	case out <- e:
		return true
	case <-grace.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// convert turns one etcd event into Gavel events (several for an instance that changed identity).
func (s *Store) convert(ev *clientv3.Event) []*modelsv1.Event {
	pk := s.keys.parse(string(ev.Kv.Key))
	rev := ev.Kv.ModRevision
	deleted := ev.Type == clientv3.EventTypeDelete
	decode := func(kv *mvccpb.KeyValue, m proto.Message) bool {
		if kv == nil || len(kv.Value) == 0 {
			return false
		}
		if err := s.cache.decode(kv, m); err != nil {
			s.logger.Error("undecodable-event", err, map[string]any{"key": string(kv.Key)})
			return false
		}
		return true
	}
	if !deleted && s.reencrypted(ev) {
		return nil
	}
	wrap := func(e *modelsv1.Event) *modelsv1.Event { e.Revision = rev; return e }
	switch pk.kind {
	case kindSchedule:
		before, after := &modelsv1.DesiredLRPSchedulingInfo{}, &modelsv1.DesiredLRPSchedulingInfo{}
		hasBefore := decode(ev.PrevKv, before)
		switch {
		case deleted && hasBefore:
			return []*modelsv1.Event{wrap(&modelsv1.Event{Event: &modelsv1.Event_DesiredLrpRemoved{DesiredLrpRemoved: &modelsv1.DesiredLRPRemovedEvent{DesiredLrp: before}}})}
		case !deleted && decode(ev.Kv, after):
			if hasBefore {
				return []*modelsv1.Event{wrap(&modelsv1.Event{Event: &modelsv1.Event_DesiredLrpChanged{DesiredLrpChanged: &modelsv1.DesiredLRPChangedEvent{Before: before, After: after}}})}
			}
			return []*modelsv1.Event{wrap(&modelsv1.Event{Event: &modelsv1.Event_DesiredLrpCreated{DesiredLrpCreated: &modelsv1.DesiredLRPCreatedEvent{DesiredLrp: after}}})}
		}
	case kindActual:
		before, after := &modelsv1.ActualLRP{}, &modelsv1.ActualLRP{}
		hasBefore := decode(ev.PrevKv, before)
		if deleted {
			if hasBefore {
				return []*modelsv1.Event{wrap(actualRemoved(before))}
			}
			return nil
		}
		if !decode(ev.Kv, after) {
			return nil
		}
		if !hasBefore {
			return []*modelsv1.Event{wrap(actualCreated(after))}
		}
		return wrapAll(rev, actualChanges(before, after))
	case kindTask:
		before, after := &modelsv1.Task{}, &modelsv1.Task{}
		hasBefore := decode(ev.PrevKv, before)
		switch {
		case deleted && hasBefore:
			return []*modelsv1.Event{wrap(&modelsv1.Event{Event: &modelsv1.Event_TaskRemoved{TaskRemoved: &modelsv1.TaskRemovedEvent{Task: before}}})}
		case !deleted && decode(ev.Kv, after):
			if hasBefore {
				return []*modelsv1.Event{wrap(&modelsv1.Event{Event: &modelsv1.Event_TaskChanged{TaskChanged: &modelsv1.TaskChangedEvent{Before: before, After: after}}})}
			}
			return []*modelsv1.Event{wrap(&modelsv1.Event{Event: &modelsv1.Event_TaskCreated{TaskCreated: &modelsv1.TaskCreatedEvent{Task: after}}})}
		}
	case kindCell:
		before, after := &modelsv1.CellPresence{}, &modelsv1.CellPresence{}
		hasBefore := decode(ev.PrevKv, before)
		switch {
		case deleted && hasBefore:
			return []*modelsv1.Event{wrap(&modelsv1.Event{Event: &modelsv1.Event_CellDisappeared{CellDisappeared: &modelsv1.CellDisappearedEvent{Cell: before}}})}
		case !deleted && !hasBefore && decode(ev.Kv, after):
			return []*modelsv1.Event{wrap(&modelsv1.Event{Event: &modelsv1.Event_CellAppeared{CellAppeared: &modelsv1.CellAppearedEvent{Cell: after}}})}
		}
	}
	return nil
}

func wrapAll(rev int64, evs []*modelsv1.Event) []*modelsv1.Event {
	for _, e := range evs {
		e.Revision = rev
	}
	return evs
}

func actualCreated(a *modelsv1.ActualLRP) *modelsv1.Event {
	return &modelsv1.Event{Event: &modelsv1.Event_ActualLrpInstanceCreated{ActualLrpInstanceCreated: &modelsv1.ActualLRPInstanceCreatedEvent{ActualLrp: a}}}
}

func actualRemoved(a *modelsv1.ActualLRP) *modelsv1.Event {
	return &modelsv1.Event{Event: &modelsv1.Event_ActualLrpInstanceRemoved{ActualLrpInstanceRemoved: &modelsv1.ActualLRPInstanceRemovedEvent{ActualLrp: a}}}
}

// actualChanges applies Diego's rules: a change that keeps the instance (or
// gives an UNCLAIMED row its first one) is "changed"; losing or replacing the
// instance key is "removed" then "created"; a crash comes first as "crashed".
func actualChanges(before, after *modelsv1.ActualLRP) []*modelsv1.Event {
	var out []*modelsv1.Event
	wasUp := before.GetState() == models.Claimed || before.GetState() == models.Running
	crashed := wasUp && (after.GetState() == models.Crashed || after.GetState() == models.Unclaimed) && after.GetCrashCount() != before.GetCrashCount()
	if crashed {
		out = append(out, &modelsv1.Event{Event: &modelsv1.Event_ActualLrpCrashed{ActualLrpCrashed: &modelsv1.ActualLRPCrashedEvent{
			Key: after.GetKey(), InstanceKey: before.GetInstanceKey(), CrashCount: after.GetCrashCount(),
			CrashReason: after.GetCrashReason(), Since: after.GetSince(),
		}}})
	}
	hadInstance := before.GetInstanceKey().GetInstanceGuid() != ""
	if hadInstance && !models.SameInstance(before.GetInstanceKey(), after.GetInstanceKey()) {
		return append(out, actualRemoved(before), actualCreated(after))
	}
	return append(out, &modelsv1.Event{Event: &modelsv1.Event_ActualLrpInstanceChanged{ActualLrpInstanceChanged: &modelsv1.ActualLRPInstanceChangedEvent{Before: before, After: after}}})
}

// match says whether the filter lets an event through.
func (f EventFilter) match(e *modelsv1.Event) bool {
	cellOK := func(cells ...string) bool {
		if f.CellID == "" {
			return true
		}
		for _, c := range cells {
			if c == f.CellID {
				return true
			}
		}
		return false
	}
	switch x := e.GetEvent().(type) {
	case *modelsv1.Event_DesiredLrpCreated, *modelsv1.Event_DesiredLrpChanged, *modelsv1.Event_DesiredLrpRemoved:
		return f.Kinds.DesiredLRP
	case *modelsv1.Event_ActualLrpInstanceCreated:
		return f.Kinds.ActualLRP && cellOK(x.ActualLrpInstanceCreated.GetActualLrp().GetInstanceKey().GetCellId())
	case *modelsv1.Event_ActualLrpInstanceRemoved:
		return f.Kinds.ActualLRP && cellOK(x.ActualLrpInstanceRemoved.GetActualLrp().GetInstanceKey().GetCellId())
	case *modelsv1.Event_ActualLrpInstanceChanged:
		c := x.ActualLrpInstanceChanged
		return f.Kinds.ActualLRP && cellOK(c.GetAfter().GetInstanceKey().GetCellId(), c.GetBefore().GetInstanceKey().GetCellId())
	case *modelsv1.Event_ActualLrpCrashed:
		return f.Kinds.ActualLRP && cellOK(x.ActualLrpCrashed.GetInstanceKey().GetCellId())
	case *modelsv1.Event_TaskCreated:
		return f.Kinds.Task && cellOK(x.TaskCreated.GetTask().GetCellId())
	case *modelsv1.Event_TaskChanged:
		return f.Kinds.Task && cellOK(x.TaskChanged.GetBefore().GetCellId(), x.TaskChanged.GetAfter().GetCellId())
	case *modelsv1.Event_TaskRemoved:
		return f.Kinds.Task && cellOK(x.TaskRemoved.GetTask().GetCellId())
	case *modelsv1.Event_CellAppeared:
		return f.Kinds.Cell && cellOK(x.CellAppeared.GetCell().GetCellId())
	case *modelsv1.Event_CellDisappeared:
		return f.Kinds.Cell && cellOK(x.CellDisappeared.GetCell().GetCellId())
	}
	return false
}

// reencrypted says whether ev only rewrote a record under another key (its
// plaintext is unchanged), which is no change to tell subscribers about.
func (s *Store) reencrypted(ev *clientv3.Event) bool {
	if ev.PrevKv == nil || ev.Kv == nil {
		return false
	}
	before, _, _ := encryption.Label(ev.PrevKv.Value)
	after, _, _ := encryption.Label(ev.Kv.Value)
	if before == after {
		return false
	}
	a, _, errA := s.keyring.Open(ev.PrevKv.Key, ev.PrevKv.Value)
	b, _, errB := s.keyring.Open(ev.Kv.Key, ev.Kv.Value)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}
