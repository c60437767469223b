package watcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/route-emitter/emitter"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
)

// Defaults of the watcher.
const (
	DefaultSyncInterval         = 60 * time.Second
	DefaultCommunicationTimeout = 30 * time.Second
	// eventBuffer is how many events may wait for the table goroutine.
	eventBuffer   = 4096
	maxRetryDelay = 5 * time.Second
)

// BBS is what the watcher calls on the BBS; bbsv1.BBSServiceClient is one.
type BBS interface {
	ListDesiredLRPRoutingInfos(ctx context.Context, in *bbsv1.ListDesiredLRPRoutingInfosRequest, opts ...grpc.CallOption) (*bbsv1.ListDesiredLRPRoutingInfosResponse, error)
	ListActualLRPs(ctx context.Context, in *bbsv1.ListActualLRPsRequest, opts ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error)
	SubscribeEvents(ctx context.Context, in *bbsv1.SubscribeEventsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[bbsv1.SubscribeEventsResponse], error)
}

// Emitter publishes the table's messages; *emitter.Emitter is one.
type Emitter interface {
	Emit(msgs routingtable.Messages) error
	Broadcast(regs []routingtable.RegistryMessage) error
}

// Options configure a [Watcher].
type Options struct {
	// BBS is the BBS client; required.
	BBS BBS
	// Emitter publishes messages; required.
	Emitter Emitter
	// CellID, when set, runs cell-local: only that cell's instances.
	CellID string
	// SyncInterval is the time between full resyncs (default 60 s).
	SyncInterval time.Duration
	// CommunicationTimeout bounds each BBS list (default 30 s).
	CommunicationTimeout time.Duration
	// Table shapes the registry messages.
	Table routingtable.Options
	// Metrics; default unregistered metrics.
	Metrics *emitter.Metrics
	// Clock; default the real clock.
	Clock clock.Clock
	// Logger; default a logger with no sinks.
	Logger lager.Logger
}

// Watcher is an ifrit runner; see the package doc.
type Watcher struct {
	opts      Options
	logger    lager.Logger
	broadcast chan struct{}
	synced    chan struct{}
}

var _ ifrit.Runner = (*Watcher)(nil)

// New returns a watcher.
func New(opts Options) *Watcher {
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.CommunicationTimeout <= 0 {
		opts.CommunicationTimeout = DefaultCommunicationTimeout
	}
	if opts.Metrics == nil {
		opts.Metrics = emitter.NewMetrics(nil)
	}
	if opts.Clock == nil {
		opts.Clock = clock.NewClock()
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("watcher")
	}
	return &Watcher{
		opts: opts, logger: opts.Logger.Session("watcher"),
		broadcast: make(chan struct{}, 1), synced: make(chan struct{}),
	}
}

// Broadcast asks for a re-broadcast of the whole table. It never blocks;
// requests made while one is pending are merged. Before the first sync it
// is a no-op (the sync emits everything).
func (w *Watcher) Broadcast() {
	select {
	case w.broadcast <- struct{}{}:
	default:
	}
}

// Synced is closed once the first sync has been emitted.
func (w *Watcher) Synced() <-chan struct{} { return w.synced }

type syncResult struct {
	table    *routingtable.Table
	revision int64
	started  time.Time
	err      error
}

// loop is the state of the table goroutine.
type loop struct {
	w        *Watcher
	table    *routingtable.Table
	revision int64 // the last sync's list revision: events at or before it are in the table
	syncing  bool
	cached   []*modelsv1.Event
}

// Run closes ready at once, then syncs and follows events until signalled.
func (w *Watcher) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if w.opts.BBS == nil || w.opts.Emitter == nil {
		return errors.New("watcher: needs a BBS client and an emitter")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	close(ready)

	events := make(chan *modelsv1.Event, eventBuffer)
	resync := make(chan struct{}, 1)
	results := make(chan syncResult, 1)
	l := &loop{w: w}
	subscribed := false
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	startSync := func() {
		l.syncing = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- w.sync(ctx)
		}()
	}
	startSync()
	ticker := w.opts.Clock.NewTicker(w.opts.SyncInterval)
	defer ticker.Stop()
	var retry <-chan time.Time
	retryDelay := 100 * time.Millisecond

	for {
		select {
		case <-signals:
			return nil
		case <-ticker.C():
			if !l.syncing {
				startSync()
			}
		case <-retry:
			retry = nil
			if !l.syncing {
				startSync()
			}
		case <-resync:
			if !l.syncing {
				startSync()
			}
		case res := <-results:
			l.syncing = false
			if res.err != nil {
				w.logger.Error("sync-failed", res.err)
				l.replayCachedOnCurrent(ctx)
				if l.table == nil {
					retry = w.opts.Clock.After(retryDelay)
					retryDelay = min(2*retryDelay, maxRetryDelay)
				}
				continue
			}
			retryDelay = 100 * time.Millisecond
			l.swap(ctx, res)
			if !subscribed {
				subscribed = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					w.subscribe(ctx, res.revision, events, resync)
				}()
				close(w.synced)
			}
		case ev := <-events:
			for ev != nil {
				if ev.GetRevision() <= l.revision {
					break
				}
				if l.syncing {
					l.cached = append(l.cached, ev)
					break
				}
				// The events of one revision (an evacuation's start removes
				// an ordinary row and creates its evacuating twin) are
				// diffed as one change, not one by one.
				var batch []*modelsv1.Event
				batch, ev = gatherRevision(ev, events)
				var msgs []routingtable.Messages
				for _, e := range batch {
					msgs = append(msgs, l.handle(ctx, l.table, e, true))
				}
				l.emit(routingtable.Net(msgs...))
			}
		case <-w.broadcast:
			if l.table == nil {
				continue
			}
			regs := l.table.Registrations()
			w.opts.Metrics.RoutesTotal.Set(float64(len(regs)))
			if err := w.opts.Emitter.Broadcast(regs); err != nil {
				w.logger.Error("broadcast-failed", err, lager.Data{"registrations": len(regs)})
			}
		}
	}
}

// revisionGather is how long the loop waits for more events of the revision
// it holds: the BBS sends a revision's events back to back.
const revisionGather = 2 * time.Millisecond

// gatherRevision returns first and the events of its revision that follow
// it, and the first event of a later revision if it read one.
func gatherRevision(first *modelsv1.Event, events <-chan *modelsv1.Event) (batch []*modelsv1.Event, next *modelsv1.Event) {
	batch = []*modelsv1.Event{first}
	timer := time.NewTimer(revisionGather)
	defer timer.Stop()
	for {
		select {
		case ev := <-events:
			if ev.GetRevision() != first.GetRevision() {
				return batch, ev
			}
			batch = append(batch, ev)
		case <-timer.C:
			return batch, nil
		}
	}
}

// swap installs a fetched table: cached events newer than its lists are
// replayed on it, then the difference from the current table is emitted.
func (l *loop) swap(ctx context.Context, res syncResult) {
	next := res.table
	for _, ev := range l.cached {
		if ev.GetRevision() > res.revision {
			l.handle(ctx, next, ev, false)
		}
	}
	replayed := len(l.cached)
	l.cached = nil
	old := l.table
	if old == nil {
		old = routingtable.New(l.w.opts.Table)
	}
	msgs := routingtable.Diff(old, next)
	l.table = next
	l.revision = res.revision
	l.emit(msgs)
	l.w.opts.Metrics.SyncDuration.Observe(l.w.opts.Clock.Since(res.started).Seconds())
	l.w.logger.Info("synced", lager.Data{
		"revision": res.revision, "routes": next.RouteCount(), "replayed_events": replayed,
		"registered": len(msgs.Registrations), "unregistered": len(msgs.Unregistrations),
		"duration": l.w.opts.Clock.Since(res.started).String(),
	})
}

// replayCachedOnCurrent applies events cached during a failed sync.
func (l *loop) replayCachedOnCurrent(ctx context.Context) {
	if l.table != nil {
		for _, ev := range l.cached {
			l.emit(l.handle(ctx, l.table, ev, true))
		}
	}
	l.cached = nil
}

func (l *loop) emit(msgs routingtable.Messages) {
	if l.table != nil {
		l.w.opts.Metrics.RoutesTotal.Set(float64(l.table.RouteCount()))
	}
	if msgs.Empty() {
		return
	}
	if err := l.w.opts.Emitter.Emit(msgs); err != nil {
		l.w.logger.Error("emit-failed", err, lager.Data{
			"registrations": len(msgs.Registrations), "unregistrations": len(msgs.Unregistrations),
		})
	}
}

// handle applies one event to t and returns the messages it implies. With
// fetch, a routable instance of an unknown desired LRP makes it fetch that
// desired LRP first.
func (l *loop) handle(ctx context.Context, t *routingtable.Table, ev *modelsv1.Event, fetch bool) routingtable.Messages {
	var out routingtable.Messages
	switch e := ev.GetEvent().(type) {
	case *modelsv1.Event_DesiredLrpCreated:
		out.Merge(l.setDesired(t, e.DesiredLrpCreated.GetDesiredLrp()))
	case *modelsv1.Event_DesiredLrpChanged:
		out.Merge(l.setDesired(t, e.DesiredLrpChanged.GetAfter()))
	case *modelsv1.Event_DesiredLrpRemoved:
		si := e.DesiredLrpRemoved.GetDesiredLrp()
		out.Merge(t.RemoveDesired(si.GetKey().GetProcessGuid(), routingtable.TagOf(si.GetModificationTag())))
	case *modelsv1.Event_ActualLrpInstanceCreated:
		if a, ok := routingtable.ActualFrom(e.ActualLrpInstanceCreated.GetActualLrp()); ok {
			out.Merge(l.ensureDesired(ctx, t, a.ProcessGUID, fetch))
			out.Merge(t.UpsertActual(a))
		}
	case *modelsv1.Event_ActualLrpInstanceChanged:
		before, _ := routingtable.ActualFrom(e.ActualLrpInstanceChanged.GetBefore())
		after, ok := routingtable.ActualFrom(e.ActualLrpInstanceChanged.GetAfter())
		if before.InstanceGUID != "" && before.Key() != after.Key() {
			out.Merge(t.RemoveActual(before.ProcessGUID, before.Key(), after.Tag))
		}
		if ok {
			out.Merge(l.ensureDesired(ctx, t, after.ProcessGUID, fetch))
			out.Merge(t.UpsertActual(after))
		} else if after.InstanceGUID != "" || before.InstanceGUID != "" {
			key := after.Key()
			if after.InstanceGUID == "" {
				key = routingtable.EndpointKey{InstanceGUID: before.InstanceGUID, Evacuating: after.Evacuating}
			}
			out.Merge(t.RemoveActual(after.ProcessGUID, key, after.Tag))
		}
	case *modelsv1.Event_ActualLrpInstanceRemoved:
		a, _ := routingtable.ActualFrom(e.ActualLrpInstanceRemoved.GetActualLrp())
		if a.InstanceGUID != "" {
			out.Merge(t.RemoveActual(a.ProcessGUID, a.Key(), a.Tag))
		}
	}
	return out
}

func (l *loop) setDesired(t *routingtable.Table, si *modelsv1.DesiredLRPSchedulingInfo) routingtable.Messages {
	d, err := routingtable.DesiredFromSchedulingInfo(si)
	if err != nil {
		l.w.logger.Error("bad-routes", err)
	}
	return t.SetDesired(d)
}

// ensureDesired fetches the desired LRP of guid when the table lacks it.
func (l *loop) ensureDesired(ctx context.Context, t *routingtable.Table, guid string, fetch bool) routingtable.Messages {
	if !fetch || t.HasDesired(guid) {
		return routingtable.Messages{}
	}
	ctx, cancel := context.WithTimeout(ctx, l.w.opts.CommunicationTimeout)
	defer cancel()
	resp, err := l.w.opts.BBS.ListDesiredLRPRoutingInfos(ctx, &bbsv1.ListDesiredLRPRoutingInfosRequest{
		Filter: &bbsv1.DesiredLRPFilter{ProcessGuids: []string{guid}},
	})
	if err != nil {
		l.w.logger.Error("fetching-missing-desired", err, lager.Data{"process_guid": guid})
		return routingtable.Messages{}
	}
	var out routingtable.Messages
	for _, ri := range resp.GetRoutingInfos() {
		d, err := routingtable.DesiredFromRoutingInfo(ri)
		if err != nil {
			l.w.logger.Error("bad-routes", err)
		}
		out.Merge(t.SetDesired(d))
	}
	return out
}

// sync lists the BBS and builds a table.
func (w *Watcher) sync(ctx context.Context) syncResult {
	res := syncResult{started: w.opts.Clock.Now()}
	ctx, cancel := context.WithTimeout(ctx, w.opts.CommunicationTimeout)
	defer cancel()
	var (
		actuals *bbsv1.ListActualLRPsResponse
		desired *bbsv1.ListDesiredLRPRoutingInfosResponse
	)
	if w.opts.CellID != "" {
		var err error
		actuals, err = w.opts.BBS.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{CellId: w.opts.CellID})
		if err != nil {
			res.err = fmt.Errorf("listing the actual LRPs of cell %s: %w", w.opts.CellID, err)
			return res
		}
		guids := make(map[string]struct{})
		var list []string
		for _, a := range actuals.GetActualLrps() {
			g := a.GetKey().GetProcessGuid()
			if _, ok := guids[g]; !ok {
				guids[g] = struct{}{}
				list = append(list, g)
			}
		}
		desired = &bbsv1.ListDesiredLRPRoutingInfosResponse{Revision: actuals.GetRevision()}
		if len(list) > 0 {
			desired, err = w.opts.BBS.ListDesiredLRPRoutingInfos(ctx, &bbsv1.ListDesiredLRPRoutingInfosRequest{
				Filter: &bbsv1.DesiredLRPFilter{ProcessGuids: list},
			})
			if err != nil {
				res.err = fmt.Errorf("listing desired LRP routing infos: %w", err)
				return res
			}
		}
	} else {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			var err error
			actuals, err = w.opts.BBS.ListActualLRPs(gctx, &bbsv1.ListActualLRPsRequest{})
			if err != nil {
				return fmt.Errorf("listing actual LRPs: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			var err error
			desired, err = w.opts.BBS.ListDesiredLRPRoutingInfos(gctx, &bbsv1.ListDesiredLRPRoutingInfosRequest{})
			if err != nil {
				return fmt.Errorf("listing desired LRP routing infos: %w", err)
			}
			return nil
		})
		if err := g.Wait(); err != nil {
			res.err = err
			return res
		}
	}
	res.table, res.revision = BuildTable(w.opts.Table, desired, actuals, w.logger)
	return res
}

// BuildTable builds a table from BBS lists and returns it with the lowest
// of the lists' revisions (events after it may be missing from the table,
// events before it are in it). Undecodable routes are logged and skipped.
func BuildTable(opts routingtable.Options, desired *bbsv1.ListDesiredLRPRoutingInfosResponse, actuals *bbsv1.ListActualLRPsResponse, logger lager.Logger) (*routingtable.Table, int64) {
	ds := make([]routingtable.Desired, 0, len(desired.GetRoutingInfos()))
	for _, ri := range desired.GetRoutingInfos() {
		d, err := routingtable.DesiredFromRoutingInfo(ri)
		if err != nil && logger != nil {
			logger.Error("bad-routes", err)
		}
		ds = append(ds, d)
	}
	as := make([]routingtable.Actual, 0, len(actuals.GetActualLrps()))
	for _, a := range actuals.GetActualLrps() {
		if ra, ok := routingtable.ActualFrom(a); ok {
			as = append(as, ra)
		}
	}
	return routingtable.Build(opts, ds, as), min(desired.GetRevision(), actuals.GetRevision())
}

// subscribe streams events into events until ctx ends, resuming after the
// last revision it delivered. When the BBS compacted past it, it reopens the
// stream at the current revision and asks for a resync.
func (w *Watcher) subscribe(ctx context.Context, since int64, events chan<- *modelsv1.Event, resync chan<- struct{}) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		stream, err := w.opts.BBS.SubscribeEvents(ctx, &bbsv1.SubscribeEventsRequest{
			SinceRevision: since, CellId: w.opts.CellID,
			Kinds: []bbsv1.EventKind{bbsv1.EventKind_EVENT_KIND_DESIRED_LRP, bbsv1.EventKind_EVENT_KIND_ACTUAL_LRP},
		})
		for err == nil {
			var resp *bbsv1.SubscribeEventsResponse
			resp, err = stream.Recv()
			if err != nil {
				break
			}
			delay = 100 * time.Millisecond
			ev := resp.GetEvent()
			since = max(since, ev.GetRevision())
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, models.ErrCompacted) {
			w.logger.Info("event-stream-compacted", lager.Data{"since_revision": since})
			since = 0
			select {
			case resync <- struct{}{}:
			default:
			}
		} else {
			w.logger.Error("event-stream-broken", err, lager.Data{"since_revision": since})
		}
		select {
		case <-ctx.Done():
			return
		case <-w.opts.Clock.After(delay):
		}
		delay = min(2*delay, maxRetryDelay)
	}
}
