package tps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/bbs/models"
	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Watcher defaults.
const (
	// DefaultDomain is the only domain whose instances the watcher reports.
	DefaultDomain = "cf-apps"
	// DefaultWorkers is how many callbacks run at once.
	DefaultWorkers = 50
	// DefaultQueueSize bounds the callbacks waiting for a worker; when it is
	// full the event stream waits (back-pressure), it never drops.
	DefaultQueueSize = 10000
	// DefaultAttempts is how often a callback is tried (Diego's watcher tries once).
	DefaultAttempts = 3
	// DefaultRetryDelay is the first wait between attempts, doubling.
	DefaultRetryDelay = 500 * time.Millisecond
	// DefaultCallbackTimeout bounds one callback (Diego's 5 s).
	DefaultCallbackTimeout = 5 * time.Second
	maxResubscribeDelay    = 5 * time.Second
)

// EventSource is what the watcher reads from the BBS.
type EventSource interface {
	SubscribeEvents(ctx context.Context, in *bbsv1.SubscribeEventsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[bbsv1.SubscribeEventsResponse], error)
	ListActualLRPs(ctx context.Context, in *bbsv1.ListActualLRPsRequest, opts ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error)
}

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	// BBS is the event source; required.
	BBS EventSource
	// CCBaseURL is the controller's internal URL; callbacks go to
	// <CCBaseURL>/internal/v4/apps/<process_guid>/{crashed,rescheduling,readiness_changed}.
	CCBaseURL string
	// CCClient posts the callbacks (default a plain client; each call is bounded by CallbackTimeout).
	CCClient *http.Client
	// CCUsername and CCPassword are basic-auth credentials (optional).
	CCUsername, CCPassword string
	// Domain selects the instances reported (default cf-apps).
	Domain string
	// Workers, QueueSize, Attempts, RetryDelay and CallbackTimeout shape delivery (see the defaults).
	Workers, QueueSize, Attempts int
	RetryDelay, CallbackTimeout  time.Duration
	// Registry receives the watcher's metrics (optional).
	Registry prometheus.Registerer
	// Logger; default a logger with no sinks.
	Logger lager.Logger
}

// Watcher turns BBS instance events into controller callbacks. It is an
// ifrit runner: ready once subscribed, it stops on a signal after the
// callbacks already queued are tried.
type Watcher struct {
	opts      WatcherOptions
	queue     chan Callback
	callbacks *prometheus.CounterVec
}

// Callback is one controller callback an event asks for.
type Callback struct {
	// Kind is the last path element: crashed, rescheduling or readiness_changed.
	Kind string
	// ProcessGUID names the app process.
	ProcessGUID string
	// Body is the JSON body (a bridgemessages request).
	Body any
}

// NewWatcher returns a watcher.
func NewWatcher(opts WatcherOptions) *Watcher {
	if opts.CCClient == nil {
		opts.CCClient = &http.Client{}
	}
	if opts.Domain == "" {
		opts.Domain = DefaultDomain
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = DefaultRetryDelay
	}
	if opts.CallbackTimeout <= 0 {
		opts.CallbackTimeout = DefaultCallbackTimeout
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("tps-watcher")
	}
	w := &Watcher{
		opts: opts, queue: make(chan Callback, opts.QueueSize),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_tps_watcher_callbacks_total", Help: "Controller callbacks, by kind (crashed, rescheduling, readiness_changed) and outcome.",
		}, []string{"kind", "outcome"}),
	}
	if opts.Registry != nil {
		opts.Registry.MustRegister(w.callbacks)
	}
	return w
}

// Run subscribes to instance events from the current revision, closes
// ready, and posts callbacks until a signal.
func (w *Watcher) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	since, ok := w.waitRevision(ctx)
	if !ok {
		return nil // signalled before the BBS answered
	}
	var workers sync.WaitGroup
	for i := 0; i < w.opts.Workers; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for cb := range w.queue {
				// Not ctx: the callbacks queued before a signal are still tried.
				w.deliver(context.Background(), cb)
			}
		}()
	}
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		w.stream(ctx, since)
	}()
	w.opts.Logger.Info("watching", lager.Data{"domain": w.opts.Domain, "since_revision": since})
	close(ready)
	<-ctx.Done()
	<-streamDone
	close(w.queue)
	workers.Wait()
	return nil
}

// waitRevision reads the BBS's current revision, retrying until it answers
// or ctx ends (ok false).
func (w *Watcher) waitRevision(ctx context.Context) (rev int64, ok bool) {
	delay := 100 * time.Millisecond
	for {
		rev, err := w.currentRevision(ctx)
		if err == nil {
			return rev, true
		}
		if ctx.Err() != nil {
			return 0, false
		}
		w.opts.Logger.Error("bbs-not-answering", err)
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(delay):
		}
		delay = min(2*delay, maxResubscribeDelay)
	}
}

func (w *Watcher) currentRevision(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultBBSTimeout)
	defer cancel()
	resp, err := w.opts.BBS.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{Domain: w.opts.Domain})
	if err != nil {
		return 0, fmt.Errorf("tps-watcher: reading the BBS's revision: %w", err)
	}
	return resp.GetRevision(), nil
}

// stream reads events after since until ctx ends, resubscribing after the
// last revision seen when the stream breaks (from now when the BBS has
// compacted past it).
func (w *Watcher) stream(ctx context.Context, since int64) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		stream, err := w.opts.BBS.SubscribeEvents(ctx, &bbsv1.SubscribeEventsRequest{
			SinceRevision: since, Kinds: []bbsv1.EventKind{bbsv1.EventKind_EVENT_KIND_ACTUAL_LRP},
		})
		for err == nil {
			var resp *bbsv1.SubscribeEventsResponse
			if resp, err = stream.Recv(); err != nil {
				break
			}
			delay = 100 * time.Millisecond
			since = max(since, resp.GetEvent().GetRevision())
			for _, cb := range w.Callbacks(resp.GetEvent()) {
				select {
				case w.queue <- cb:
				case <-ctx.Done():
					return
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, models.ErrCompacted) {
			w.opts.Logger.Info("event-stream-compacted", lager.Data{"since_revision": since})
			since = 0
		} else {
			w.opts.Logger.Error("event-stream-broken", err, lager.Data{"since_revision": since})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, maxResubscribeDelay)
	}
}

// Callbacks returns the controller callbacks one event asks for (none for
// events of other domains).
func (w *Watcher) Callbacks(ev *modelsv1.Event) []Callback {
	switch e := ev.GetEvent().(type) {
	case *modelsv1.Event_ActualLrpCrashed:
		c := e.ActualLrpCrashed
		if c.GetKey().GetDomain() != w.opts.Domain {
			return nil
		}
		return []Callback{{Kind: "crashed", ProcessGUID: c.GetKey().GetProcessGuid(), Body: bm.CrashedRequest{
			Instance: c.GetInstanceKey().GetInstanceGuid(), Index: c.GetKey().GetIndex(), CellID: c.GetInstanceKey().GetCellId(),
			Reason: bm.ReasonCrashed, ExitDescription: c.GetCrashReason(), CrashCount: c.GetCrashCount(),
			CrashTimestamp: c.GetSince(),
		}}}
	case *modelsv1.Event_ActualLrpInstanceRemoved:
		a := e.ActualLrpInstanceRemoved.GetActualLrp()
		if a.GetKey().GetDomain() != w.opts.Domain || a.GetPresence() != models.Evacuating {
			return nil
		}
		return []Callback{{Kind: "rescheduling", ProcessGUID: a.GetKey().GetProcessGuid(), Body: bm.ReschedulingRequest{
			Instance: a.GetInstanceKey().GetInstanceGuid(), Index: a.GetKey().GetIndex(), CellID: a.GetInstanceKey().GetCellId(),
			Reason: bm.ReasonEvacuating,
		}}}
	case *modelsv1.Event_ActualLrpInstanceChanged:
		before, after := e.ActualLrpInstanceChanged.GetBefore(), e.ActualLrpInstanceChanged.GetAfter()
		if after.GetKey().GetDomain() != w.opts.Domain {
			return nil
		}
		ready, ok := ReadinessChange(before, after)
		if !ok {
			return nil
		}
		return []Callback{{Kind: "readiness_changed", ProcessGUID: after.GetKey().GetProcessGuid(), Body: bm.ReadinessChangedRequest{
			Instance: after.GetInstanceKey().GetInstanceGuid(), Index: after.GetKey().GetIndex(), CellID: after.GetInstanceKey().GetCellId(),
			Ready: ready,
		}}}
	}
	return nil
}

// ReadinessChange applies Diego's watcher rules to an instance change: unset
// → set reports the new value; set false → unset reports ready; a flip
// reports the new value; anything else reports nothing.
func ReadinessChange(before, after *modelsv1.ActualLRP) (ready, changed bool) {
	switch {
	case before.Routable == nil && after.Routable != nil:
		return after.GetRoutable(), true
	case before.Routable != nil && !before.GetRoutable() && after.Routable == nil:
		return true, true
	case before.Routable != nil && after.Routable != nil && before.GetRoutable() != after.GetRoutable():
		return after.GetRoutable(), true
	}
	return false, false
}

// deliver posts one callback, retrying transport errors and 5xx answers
// with doubling waits; a 4xx answer is not retried.
func (w *Watcher) deliver(ctx context.Context, cb Callback) {
	target := strings.TrimRight(w.opts.CCBaseURL, "/") + "/internal/v4/apps/" + url.PathEscape(cb.ProcessGUID) + "/" + cb.Kind
	logger := w.opts.Logger.Session("callback", lager.Data{"kind": cb.Kind, "process_guid": cb.ProcessGUID})
	body, err := json.Marshal(cb.Body)
	if err != nil {
		logger.Error("encode-failed", err)
		return
	}
	delay := w.opts.RetryDelay
	for attempt := 1; ; attempt++ {
		retry, err := w.post(ctx, target, body)
		if err == nil {
			w.callbacks.WithLabelValues(cb.Kind, "delivered").Inc()
			logger.Info("delivered", lager.Data{"attempt": attempt})
			return
		}
		if !retry || attempt >= w.opts.Attempts || ctx.Err() != nil {
			w.callbacks.WithLabelValues(cb.Kind, "failed").Inc()
			logger.Error("failed", err, lager.Data{"attempts": attempt})
			return
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		delay *= 2
	}
}

func (w *Watcher) post(ctx context.Context, target string, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.CallbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	if w.opts.CCUsername != "" {
		req.SetBasicAuth(w.opts.CCUsername, w.opts.CCPassword)
	}
	resp, err := w.opts.CCClient.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return false, nil
	case resp.StatusCode >= 500:
		return true, fmt.Errorf("controller answered %s", resp.Status)
	default:
		return false, fmt.Errorf("controller answered %s", resp.Status)
	}
}
