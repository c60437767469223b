package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// instanceKey names one index of a desired LRP.
type instanceKey struct {
	guid  string
	index int32
}

// rowKey names one actual LRP row: an index and a presence.
type rowKey struct {
	instanceKey
	presence modelsv1.ActualLRPPresence
}

// row is what the tracker keeps of an actual LRP row.
type row struct {
	state modelsv1.ActualLRPState
	cell  string
}

// tracker follows the BBS's actual LRP events and keeps, for every index,
// whether its ORDINARY row is RUNNING, and when each index first ran.
type tracker struct {
	mu          sync.Mutex
	rows        map[rowKey]row
	running     int // indices whose ORDINARY row is RUNNING
	desiredAt   map[string]time.Time
	firstRun    map[instanceKey]time.Time
	firstRunSeq []time.Time // firstRun times in arrival order
	lastRev     int64
	resubscribe int // times the stream was opened again
	events      int64
}

func newTracker() *tracker {
	return &tracker{
		rows:      map[rowKey]row{},
		desiredAt: map[string]time.Time{},
		firstRun:  map[instanceKey]time.Time{},
	}
}

// desired records when an LRP's DesireLRP call was sent.
func (t *tracker) desired(guid string, at time.Time) {
	t.mu.Lock()
	t.desiredAt[guid] = at
	t.mu.Unlock()
}

// follow subscribes to actual LRP events from sinceRevision and applies
// them until ctx ends. A stream that ends early (a slow-subscriber
// disconnect, a BBS hiccup) is opened again from the last revision seen,
// replaying that revision: applying an event sets a row to an absolute
// value, so a replay is harmless. It returns ctx's error, or the error that
// made it give up.
func (t *tracker) follow(ctx context.Context, bbs bbsv1.BBSServiceClient, sinceRevision int64) error {
	t.mu.Lock()
	t.lastRev = sinceRevision
	t.mu.Unlock()
	failures := 0
	for ctx.Err() == nil {
		t.mu.Lock()
		since := max(t.lastRev-1, sinceRevision)
		t.mu.Unlock()
		err := t.stream(ctx, bbs, since)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, models.ErrCompacted) {
			return fmt.Errorf("event stream: %w", err)
		}
		t.mu.Lock()
		t.resubscribe++
		t.mu.Unlock()
		failures++
		if failures > 50 {
			return fmt.Errorf("event stream keeps failing: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return ctx.Err()
}

// stream reads one event stream until it fails.
func (t *tracker) stream(ctx context.Context, bbs bbsv1.BBSServiceClient, since int64) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := bbs.SubscribeEvents(sctx, &bbsv1.SubscribeEventsRequest{
		SinceRevision: since, Kinds: []bbsv1.EventKind{bbsv1.EventKind_EVENT_KIND_ACTUAL_LRP},
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return fmt.Errorf("receive event: %w", err)
		}
		t.apply(resp.GetEvent(), time.Now())
	}
}

// apply updates the rows from one event received at now.
func (t *tracker) apply(e *modelsv1.Event, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events++
	if e.GetRevision() > t.lastRev {
		t.lastRev = e.GetRevision()
	}
	switch ev := e.GetEvent().(type) {
	case *modelsv1.Event_ActualLrpInstanceCreated:
		t.set(ev.ActualLrpInstanceCreated.GetActualLrp(), now)
	case *modelsv1.Event_ActualLrpInstanceChanged:
		t.set(ev.ActualLrpInstanceChanged.GetAfter(), now)
	case *modelsv1.Event_ActualLrpInstanceRemoved:
		a := ev.ActualLrpInstanceRemoved.GetActualLrp()
		k := keyOf(a)
		if old, ok := t.rows[k]; ok {
			delete(t.rows, k)
			if isOrdinaryRunning(k, old) {
				t.running--
			}
		}
	}
}

// set records a row's new value; t.mu is held.
func (t *tracker) set(a *modelsv1.ActualLRP, now time.Time) {
	k := keyOf(a)
	r := row{state: a.GetState(), cell: a.GetInstanceKey().GetCellId()}
	old, had := t.rows[k]
	t.rows[k] = r
	was, is := had && isOrdinaryRunning(k, old), isOrdinaryRunning(k, r)
	switch {
	case is && !was:
		t.running++
		if _, seen := t.firstRun[k.instanceKey]; !seen {
			t.firstRun[k.instanceKey] = now
			t.firstRunSeq = append(t.firstRunSeq, now)
		}
	case was && !is:
		t.running--
	}
}

func keyOf(a *modelsv1.ActualLRP) rowKey {
	return rowKey{instanceKey{a.GetKey().GetProcessGuid(), a.GetKey().GetIndex()}, a.GetPresence()}
}

func isOrdinaryRunning(k rowKey, r row) bool {
	return k.presence == modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY &&
		r.state == modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING
}

// runningCount is the number of indices whose ORDINARY row is RUNNING.
func (t *tracker) runningCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.running
}

// placedCount is the number of indices that have run at least once.
func (t *tracker) placedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.firstRun)
}

// onCells returns the indices whose ORDINARY row runs on one of cells.
func (t *tracker) onCells(cells map[string]bool) []instanceKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []instanceKey
	for k, r := range t.rows {
		if k.presence == modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY && cells[r.cell] {
			out = append(out, k.instanceKey)
		}
	}
	return out
}

// displacedLeft counts the keys whose ORDINARY row is not RUNNING on a
// cell outside dead.
func (t *tracker) displacedLeft(keys []instanceKey, dead map[string]bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, k := range keys {
		r, ok := t.rows[rowKey{k, modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY}]
		if !ok || r.state != modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING || dead[r.cell] {
			n++
		}
	}
	return n
}

// latencies returns, for every index that ran, the time from its LRP's
// DesireLRP call to its first RUNNING event.
func (t *tracker) latencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Duration, 0, len(t.firstRun))
	for k, at := range t.firstRun {
		if d, ok := t.desiredAt[k.guid]; ok {
			out = append(out, at.Sub(d))
		}
	}
	return out
}

// runTimes returns the first-RUNNING times in the order they arrived.
func (t *tracker) runTimes() []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]time.Time(nil), t.firstRunSeq...)
}

// streamStats returns the events applied and the number of re-subscriptions.
func (t *tracker) streamStats() (events int64, resubscribes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.events, t.resubscribe
}
