package store

import (
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/encryption"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// EventLogSize is how many of the most recent record changes the cache keeps
// for subscribers. A subscriber reads them from the cache instead of holding an
// etcd watch of its own; one that asks for older events, or falls this far
// behind, is served by an etcd watch instead (see Subscribe).
const EventLogSize = 1 << 15

// change is one record's change as the cache applied it: before is nil for
// a record that did not exist, after nil for one deleted. Subscribers turn
// it into events (recordEvents), off the cache's lock.
type change struct {
	kind          kind
	rev           int64
	before, after proto.Message
}

// eventLog is the recent history of the changes the cache applied from its
// watch to records with events, in revision order. The cache writes it while
// it applies a watch response and restarts it when it lists again; both
// under Cache.mu, which readers hold for reading. The changes share their
// records with the cache, which never mutates a record, so they are
// read-only too.
type eventLog struct {
	ring []change // EventLogSize long; the change of sequence s is at s % len
	next int64    // sequence of the next change appended
	// first is the sequence of the first change of this generation.
	first int64
	// floor is the revision after which the log holds every change: the
	// list's revision, or the revision of the last change overwritten.
	floor int64
	// gen counts the restarts: the changes of one generation follow each
	// other without a gap.
	gen    int64
	active bool          // false until the first list
	wake   chan struct{} // closed and replaced when changes are appended or the log restarts
}

// newEventLog returns a log of the last size changes, inactive until restarted.
func newEventLog(size int) eventLog {
	return eventLog{ring: make([]change, size), wake: make(chan struct{})}
}

// restart begins a generation after a list at rev: changes before it are
// not known any more.
func (l *eventLog) restart(rev int64) {
	l.gen++
	l.first = l.next
	l.floor = rev
	l.active = true
	l.signal()
}

// append adds a change after the others.
func (l *eventLog) append(ch change) {
	slot := l.next % int64(len(l.ring))
	if l.next-int64(len(l.ring)) >= l.first && l.ring[slot].rev > l.floor {
		l.floor = l.ring[slot].rev // overwritten: the log no longer holds all of its revision
	}
	l.ring[slot] = ch
	l.next++
}

func (l *eventLog) signal() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// oldest is the sequence of the oldest change still held.
func (l *eventLog) oldest() int64 {
	return max(l.first, l.next-int64(len(l.ring)))
}

// logCursor is where a subscriber reading the log is.
type logCursor struct {
	gen, pos int64
}

// logStart returns a cursor at the first change after sinceRevision (0:
// after everything applied so far) and the revision the subscriber's events
// start after, or false when the log does not hold every change after it.
func (c *Cache) logStart(sinceRevision int64) (logCursor, int64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	l := &c.events
	if !l.active {
		return logCursor{}, 0, false
	}
	if sinceRevision == 0 {
		return logCursor{gen: l.gen, pos: l.next}, c.state.rev, true
	}
	if sinceRevision < l.floor {
		return logCursor{}, 0, false
	}
	from := l.oldest()
	n := int(l.next - from)
	i := sort.Search(n, func(i int) bool {
		return l.ring[(from+int64(i))%int64(len(l.ring))].rev > sinceRevision
	})
	return logCursor{gen: l.gen, pos: from + int64(i)}, sinceRevision, true
}

// readLog appends to buf the changes from the cursor on (at most cap(buf))
// and moves the cursor past them. With nothing new it returns a channel
// closed when there is. ok is false when the log no longer holds the
// cursor's changes: it restarted, or overwrote them.
func (c *Cache) readLog(cur *logCursor, buf []change) (chs []change, wake <-chan struct{}, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	l := &c.events
	if cur.gen != l.gen || cur.pos < l.oldest() {
		return buf, nil, false
	}
	for cur.pos < l.next && len(buf) < cap(buf) {
		buf = append(buf, l.ring[cur.pos%int64(len(l.ring))])
		cur.pos++
	}
	return buf, l.wake, true
}

// record returns the cached model of a key of kind schedule, actual, task
// or cell, or nil when there is none.
func (st *cacheState) record(pk parsedKey) proto.Message {
	switch pk.kind {
	case kindSchedule:
		return recordIn(st.schedules, pk.name)
	case kindActual:
		return recordIn(st.actuals, pk.actual)
	case kindTask:
		return recordIn(st.tasks, pk.name)
	case kindCell:
		return recordIn(st.cells, pk.name)
	}
	return nil
}

// recordIn returns the model held at k, or nil (never a typed nil).
func recordIn[K comparable, T proto.Message](m map[K]item[T], k K) proto.Message {
	if it, ok := m[k]; ok {
		return it.val
	}
	return nil
}

// hasEvents says whether records of kind k produce events.
func hasEvents(k kind) bool {
	return k == kindSchedule || k == kindActual || k == kindTask || k == kindCell
}

// trackLabel remembers which key a sealed record of key was sealed with, so
// that a rewrite under another key with the same content (re-encryption)
// is told apart from a change. Plaintext records are not tracked.
func (st *cacheState) trackLabel(key string, kv *mvccpb.KeyValue) {
	label, sealed, _ := encryption.Label(kv.Value)
	switch {
	case sealed:
		if st.labels == nil {
			st.labels = map[string]string{}
		}
		st.labels[key] = label
	case len(st.labels) > 0:
		delete(st.labels, key)
	}
}

// mayMatch says whether any event of ch could pass the filter, so that a
// subscriber makes events only of the changes it may be sent.
func (f EventFilter) mayMatch(ch change) bool {
	switch ch.kind {
	case kindSchedule:
		return f.Kinds.DesiredLRP
	case kindActual:
		if !f.Kinds.ActualLRP {
			return false
		}
	case kindTask:
		if !f.Kinds.Task {
			return false
		}
	case kindCell:
		if !f.Kinds.Cell {
			return false
		}
	default:
		return false
	}
	if f.CellID == "" {
		return true
	}
	for _, m := range []proto.Message{ch.before, ch.after} {
		var cell string
		switch r := m.(type) {
		case *modelsv1.ActualLRP:
			cell = r.GetInstanceKey().GetCellId()
		case *modelsv1.Task:
			cell = r.GetCellId()
		case *modelsv1.CellPresence:
			cell = r.GetCellId()
		}
		if cell == f.CellID {
			return true
		}
	}
	return false
}
