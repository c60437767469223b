package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
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
// subscriber reads the cache's events (or its etcd watch) on its own, so the
// wait never holds up the others.
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
//
// A subscriber reads the changes the cache applied from its own watch (the
// last EventLogSize of them) and makes its events from the records before
// and after, so it costs etcd nothing. One that asks for older events, or
// whose events the cache no longer holds (it listed again, or the
// subscriber fell that far behind), is served by an etcd watch of its own
// from where it was, with nothing missed or sent twice.
func (s *Store) Subscribe(ctx context.Context, sinceRevision int64, f EventFilter) (<-chan *modelsv1.Event, <-chan error) {
	out := make(chan *modelsv1.Event, SubscriberBuffer)
	errc := make(chan error, 1)
	sub := &subscription{store: s, filter: f, out: out, errc: errc, since: sinceRevision}
	// The start is found before Subscribe returns: "from now" means after
	// what the cache held when it was called.
	cur, since, fromLog := s.cache.logStart(sinceRevision)
	go func() {
		defer close(out)
		if fromLog {
			s.subscriptions.fromCache.Add(1)
			sub.since = since
			if !sub.readLog(ctx, cur) {
				return
			}
			s.subscriptions.fellBack.Add(1)
			s.logger.Info("subscriber-moved-to-etcd-watch", lager.Data{"after_revision": sub.last, "cache_revision": s.cache.Revision()})
		} else {
			s.subscriptions.fromEtcd.Add(1)
		}
		sub.watchEtcd(ctx)
	}()
	return out, errc
}

// SubscriptionStats counts event subscriptions by where they started, and
// those served from the cache that moved to an etcd watch. Safe for
// concurrent use.
type SubscriptionStats struct {
	fromCache, fromEtcd, fellBack atomic.Int64
}

// FromCache is how many subscriptions started reading the cache's events.
func (st *SubscriptionStats) FromCache() int64 { return st.fromCache.Load() }

// FromEtcd is how many subscriptions started with an etcd watch of their own
// (they asked for events older than the cache holds).
func (st *SubscriptionStats) FromEtcd() int64 { return st.fromEtcd.Load() }

// FellBack is how many subscriptions moved from the cache's events to an
// etcd watch, after the cache listed again or overwrote events they had not read.
func (st *SubscriptionStats) FellBack() int64 { return st.fellBack.Load() }

// Subscriptions returns the store's subscription counts.
func (s *Store) Subscriptions() *SubscriptionStats { return &s.subscriptions }

// subscription is one subscriber's stream.
type subscription struct {
	store  *Store
	filter EventFilter
	out    chan<- *modelsv1.Event
	errc   chan<- error
	// since is the revision after which events are sent.
	since int64
	// last is the revision of the last event sent, atLast how many events
	// of that revision were sent.
	last   int64
	atLast int
}

// readLog sends the cache's events from cur on. It returns true when the
// cache no longer holds the next ones (the stream goes on from etcd), false
// when the stream ended.
func (sub *subscription) readLog(ctx context.Context, cur logCursor) bool {
	buf := make([]change, 0, 256)
	for {
		chs, wake, ok := sub.store.cache.readLog(&cur, buf[:0])
		if !ok {
			return true
		}
		for _, ch := range chs {
			if ch.rev <= sub.since || !sub.filter.mayMatch(ch) {
				continue
			}
			for _, e := range recordEvents(ch.before, ch.after, ch.rev) {
				if sub.filter.match(e) && !sub.send(ctx, e) {
					return false
				}
			}
		}
		clear(chs) // the buffer must not keep records alive
		if len(chs) > 0 {
			continue
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return false
		}
	}
}

// send sends e, or reports a subscriber that stayed behind; false when the stream ended.
func (sub *subscription) send(ctx context.Context, e *modelsv1.Event) bool {
	if !send(ctx, sub.out, e) {
		if ctx.Err() == nil {
			sub.errc <- fmt.Errorf("%w: subscriber stayed more than %d events behind for %s and was disconnected; resubscribe with since_revision", models.ErrResourceExhausted, SubscriberBuffer, SubscriberGrace)
		}
		return false
	}
	if e.GetRevision() == sub.last {
		sub.atLast++
	} else {
		sub.last, sub.atLast = e.GetRevision(), 1
	}
	return true
}

// watchEtcd sends the events of an etcd watch, from where the subscription is.
func (sub *subscription) watchEtcd(ctx context.Context) {
	s := sub.store
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// After events were sent, the watch starts at the revision of the last
	// one and skips those of it already sent.
	from, skip := sub.since, 0
	if sub.last > 0 {
		from, skip = sub.last-1, sub.atLast
	}
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
	if from > 0 {
		opts = append(opts, clientv3.WithRev(from+1))
	}
	for wr := range s.client.Watch(wctx, s.keys.Prefix(), opts...) {
		if err := wr.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) || wr.CompactRevision != 0 {
				sub.errc <- fmt.Errorf("%w: etcd compacted past revision %d (now at %d): list again and subscribe from the list's revision", models.ErrCompacted, from, wr.CompactRevision)
			} else {
				sub.errc <- fmt.Errorf("%w: watch: %v", models.ErrUnavailable, err)
			}
			return
		}
		for _, ev := range wr.Events {
			for _, e := range s.convert(ev) {
				if !sub.filter.match(e) {
					continue
				}
				if skip > 0 && e.GetRevision() == sub.last {
					skip--
					continue
				}
				if !sub.send(wctx, e) {
					return
				}
			}
		}
	}
	if ctx.Err() == nil {
		sub.errc <- fmt.Errorf("%w: watch closed", models.ErrUnavailable)
	}
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
	if !hasEvents(pk.kind) {
		return nil
	}
	deleted := ev.Type == clientv3.EventTypeDelete
	if !deleted && s.reencrypted(ev) {
		return nil
	}
	decode := func(kv *mvccpb.KeyValue) proto.Message {
		if kv == nil || len(kv.Value) == 0 {
			return nil
		}
		m := newRecord(pk.kind)
		if err := s.cache.decode(kv, m); err != nil {
			s.logger.Error("undecodable-event", err, map[string]any{"key": string(kv.Key)})
			return nil
		}
		return m
	}
	before := decode(ev.PrevKv)
	var after proto.Message
	if !deleted {
		if after = decode(ev.Kv); after == nil {
			return nil
		}
	}
	return recordEvents(before, after, ev.Kv.ModRevision)
}

// newRecord returns an empty model of a record of kind k (one with events).
func newRecord(k kind) proto.Message {
	switch k {
	case kindSchedule:
		return &modelsv1.DesiredLRPSchedulingInfo{}
	case kindActual:
		return &modelsv1.ActualLRP{}
	case kindTask:
		return &modelsv1.Task{}
	default:
		return &modelsv1.CellPresence{}
	}
}

// recordEvents returns the Gavel events of one change at rev of a record:
// before is nil for a record that did not exist (or could not be read),
// after is nil for one deleted. Both are models of the record's kind (a
// schedule, an actual LRP, a task or a cell presence).
func recordEvents(before, after proto.Message, rev int64) []*modelsv1.Event {
	one := func(e *modelsv1.Event) []*modelsv1.Event { e.Revision = rev; return []*modelsv1.Event{e} }
	if after == nil {
		if before == nil {
			return nil
		}
		switch b := before.(type) {
		case *modelsv1.DesiredLRPSchedulingInfo:
			return one(&modelsv1.Event{Event: &modelsv1.Event_DesiredLrpRemoved{DesiredLrpRemoved: &modelsv1.DesiredLRPRemovedEvent{DesiredLrp: b}}})
		case *modelsv1.ActualLRP:
			return one(actualRemoved(b))
		case *modelsv1.Task:
			return one(&modelsv1.Event{Event: &modelsv1.Event_TaskRemoved{TaskRemoved: &modelsv1.TaskRemovedEvent{Task: b}}})
		case *modelsv1.CellPresence:
			return one(&modelsv1.Event{Event: &modelsv1.Event_CellDisappeared{CellDisappeared: &modelsv1.CellDisappearedEvent{Cell: b}}})
		}
		return nil
	}
	switch a := after.(type) {
	case *modelsv1.DesiredLRPSchedulingInfo:
		if b, ok := before.(*modelsv1.DesiredLRPSchedulingInfo); ok {
			return one(&modelsv1.Event{Event: &modelsv1.Event_DesiredLrpChanged{DesiredLrpChanged: &modelsv1.DesiredLRPChangedEvent{Before: b, After: a}}})
		}
		return one(&modelsv1.Event{Event: &modelsv1.Event_DesiredLrpCreated{DesiredLrpCreated: &modelsv1.DesiredLRPCreatedEvent{DesiredLrp: a}}})
	case *modelsv1.ActualLRP:
		if b, ok := before.(*modelsv1.ActualLRP); ok {
			return wrapAll(rev, actualChanges(b, a))
		}
		return one(actualCreated(a))
	case *modelsv1.Task:
		if b, ok := before.(*modelsv1.Task); ok {
			return one(&modelsv1.Event{Event: &modelsv1.Event_TaskChanged{TaskChanged: &modelsv1.TaskChangedEvent{Before: b, After: a}}})
		}
		return one(&modelsv1.Event{Event: &modelsv1.Event_TaskCreated{TaskCreated: &modelsv1.TaskCreatedEvent{Task: a}}})
	case *modelsv1.CellPresence:
		if before == nil {
			return one(&modelsv1.Event{Event: &modelsv1.Event_CellAppeared{CellAppeared: &modelsv1.CellAppearedEvent{Cell: a}}})
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
