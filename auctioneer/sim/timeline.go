package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gavelhq/gavel/bbs/models"
)

// Bounds of a timeline. Everything a dynamic run keeps grows with these.
const (
	// MaxTimelineBytes bounds a timeline file.
	MaxTimelineBytes = 256 << 20
	// MaxTimelineEvents bounds a timeline's events.
	MaxTimelineEvents = 1_000_000
	// MaxTimelineMS bounds simulated time (events and end_ms): 30 days.
	MaxTimelineMS = 30 * 24 * 3600 * 1000
	// MaxTimelineSamples bounds the time series: end over sample_interval_ms.
	MaxTimelineSamples = 100_000
	// MaxWaitSamples bounds the waits kept for exact percentiles; waits
	// beyond it are counted but not kept (TimelineReport.WaitsDropped).
	MaxWaitSamples = 5_000_000
)

// Defaults of TimelineOptions (see each field).
const (
	DefaultFetchMS               = 200
	DefaultPerformMS             = 200
	DefaultBatchWindowMS         = 0
	DefaultContainerStartMS      = 10_000
	DefaultConvergenceIntervalMS = 30_000
	DefaultStaleUnclaimedMS      = 30_000
	DefaultPresenceTTLMS         = 15_000
	DefaultEvacuationTimeoutMS   = 600_000
	DefaultDeployTickMS          = 5_000
	DefaultMaxTaskRetries        = 3
	DefaultPendingTaskExpiryMS   = 30 * 60 * 1000
	DefaultSampleIntervalMS      = 60_000
	DefaultSettleMS              = 3600 * 1000
)

// Event types of a timeline.
const (
	EventDesireLRP   = "desire_lrp"
	EventDesireTask  = "desire_task"
	EventScale       = "scale"
	EventRemoveLRP   = "remove_lrp"
	EventCrash       = "crash"
	EventCellFail    = "cell_fail"
	EventCellRecover = "cell_recover"
	EventCellDrain   = "cell_drain"
	EventDeploy      = "deploy"
)

// eventFields lists, per event type, the fields it requires and the ones it
// accepts besides at_ms and type.
var eventFields = map[string]struct{ required, optional []string }{
	EventDesireLRP:   {[]string{"process_guid", "instances", "memory_mb"}, []string{"disk_mb", "domain", "rootfs", "placement_tags", "volume_drivers"}},
	EventDesireTask:  {[]string{"task_guid", "memory_mb"}, []string{"disk_mb", "domain", "rootfs", "placement_tags", "volume_drivers", "run_ms"}},
	EventScale:       {[]string{"process_guid", "instances"}, nil},
	EventRemoveLRP:   {[]string{"process_guid"}, nil},
	EventCrash:       {[]string{"process_guid", "index"}, nil},
	EventCellFail:    {[]string{"cell_id"}, nil},
	EventCellRecover: {[]string{"cell_id"}, nil},
	EventCellDrain:   {[]string{"cell_id"}, nil},
	EventDeploy:      {[]string{"process_guid", "new_process_guid"}, []string{"max_in_flight", "memory_mb", "disk_mb"}},
}

// Timeline is the input of a dynamic run: when things happen to the
// cluster a scenario describes. See the package doc for its semantics.
type Timeline struct {
	// Options are the simulated durations and policies.
	Options TimelineOptions `json:"options"`
	// Events are sorted by AtMS; equal times keep file order.
	Events []TimelineEvent `json:"events"`
}

// TimelineOptions are the simulated durations (milliseconds of simulated
// time) and policies of a dynamic run. A field left out takes its default.
type TimelineOptions struct {
	// FetchMS is how long an auction's cell-state fetch takes; work that
	// arrives meanwhile joins the batch (default 200).
	FetchMS int64 `json:"fetch_ms"`
	// PerformMS is how long the cells' Perform and the write-back take
	// after the placement; the next auction starts after it (default 200).
	PerformMS int64 `json:"perform_ms"`
	// BatchWindowMS is an extra wait after a wake-up before the fetch; Diego
	// and Gavel's auctioneer have none (default 0).
	BatchWindowMS int64 `json:"batch_window_ms"`
	// ContainerStartMS is how long a placed container takes to run; until
	// then it counts as a starting container (default 10000).
	ContainerStartMS int64 `json:"container_start_ms"`
	// ConvergenceIntervalMS is the BBS convergence period (default 30000).
	ConvergenceIntervalMS int64 `json:"convergence_interval_ms"`
	// StaleUnclaimedMS is the age at which convergence re-auctions an
	// unplaced LRP instance (default 30000).
	StaleUnclaimedMS int64 `json:"stale_unclaimed_ms"`
	// PresenceTTLMS is how long a failed cell's presence outlives it; its
	// instances are replaced at the first convergence pass after (default 15000).
	PresenceTTLMS int64 `json:"presence_ttl_ms"`
	// EvacuationTimeoutMS is how long a draining cell waits for its work to
	// move before its containers are destroyed (default 600000).
	EvacuationTimeoutMS int64 `json:"evacuation_timeout_ms"`
	// DeployTickMS is the period at which rolling deploys advance, as Cloud
	// Controller's deployment updater does (default 5000).
	DeployTickMS int64 `json:"deploy_tick_ms"`
	// MaxTaskRetries is how many placement failures a task survives
	// (default 3; a pointer so that 0 can be given).
	MaxTaskRetries *int `json:"max_task_retries"`
	// PendingTaskExpiryMS is the age at which an unplaced task fails
	// (default 1800000).
	PendingTaskExpiryMS int64 `json:"pending_task_expiry_ms"`
	// SampleIntervalMS is the time-series period (default 60000).
	SampleIntervalMS int64 `json:"sample_interval_ms"`
	// EndMS ends the run; 0 runs until the last event has happened and the
	// cluster has settled, at most SettleMS after the last event.
	EndMS int64 `json:"end_ms"`
	// SettleMS bounds the run after the last event when EndMS is 0
	// (default 3600000).
	SettleMS int64 `json:"settle_ms"`
}

// TimelineEvent is one thing that happens at AtMS. Which fields an event
// takes depends on its Type (see the package doc); others are refused.
type TimelineEvent struct {
	// AtMS is the simulated time in milliseconds from the start (>= 0).
	AtMS int64 `json:"at_ms"`
	// Type is one of the Event* constants.
	Type string `json:"type"`
	// ProcessGUID names the app (desire_lrp, scale, remove_lrp, crash, deploy).
	ProcessGUID string `json:"process_guid,omitempty"`
	// NewProcessGUID names the app a deploy replaces ProcessGUID with.
	NewProcessGUID string `json:"new_process_guid,omitempty"`
	// TaskGUID names a task (desire_task).
	TaskGUID string `json:"task_guid,omitempty"`
	// CellID names a cell (cell_fail, cell_recover, cell_drain).
	CellID string `json:"cell_id,omitempty"`
	// Index is the crashing instance's index.
	Index *int `json:"index,omitempty"`
	// Instances is the app's instance count (desire_lrp, scale).
	Instances *int `json:"instances,omitempty"`
	// MaxInFlight is how many instances a deploy replaces at a time (default 1).
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// MemoryMB is the memory of each instance or of the task; for a deploy,
	// the new version's (default: the old version's).
	MemoryMB int `json:"memory_mb,omitempty"`
	// DiskMB is the disk (default: the memory, or the old version's).
	DiskMB int `json:"disk_mb,omitempty"`
	// RunMS is how long a task runs once started; 0 runs to the end.
	RunMS int64 `json:"run_ms,omitempty"`
	// Domain is the LRP's or task's domain.
	Domain string `json:"domain,omitempty"`
	// RootFS is the rootfs URL (default DefaultRootFS).
	RootFS string `json:"rootfs,omitempty"`
	// PlacementTags are the tags required.
	PlacementTags []string `json:"placement_tags,omitempty"`
	// VolumeDrivers are the drivers required.
	VolumeDrivers []string `json:"volume_drivers,omitempty"`
}

// setFields names the optional fields of e that hold a value.
func (e *TimelineEvent) setFields() []string {
	var out []string
	add := func(ok bool, name string) {
		if ok {
			out = append(out, name)
		}
	}
	add(e.ProcessGUID != "", "process_guid")
	add(e.NewProcessGUID != "", "new_process_guid")
	add(e.TaskGUID != "", "task_guid")
	add(e.CellID != "", "cell_id")
	add(e.Index != nil, "index")
	add(e.Instances != nil, "instances")
	add(e.MaxInFlight != 0, "max_in_flight")
	add(e.MemoryMB != 0, "memory_mb")
	add(e.DiskMB != 0, "disk_mb")
	add(e.RunMS != 0, "run_ms")
	add(e.Domain != "", "domain")
	add(e.RootFS != "", "rootfs")
	add(e.PlacementTags != nil, "placement_tags")
	add(e.VolumeDrivers != nil, "volume_drivers")
	return out
}

// ErrInvalidTimeline is matched by every timeline error (TimelineError).
var ErrInvalidTimeline = errors.New("invalid timeline")

// TimelineError lists every bad field of a timeline by JSON path, e.g.
// "events[3].at_ms: must be >= 0". It matches ErrInvalidTimeline.
type TimelineError struct {
	// Fields are the bad fields, in document order.
	Fields []FieldError
}

// Error prints the first few fields on one line.
func (e *TimelineError) Error() string {
	return formatFieldErrors("invalid timeline", e.Fields)
}

// Is makes errors.Is(err, ErrInvalidTimeline) true.
func (e *TimelineError) Is(target error) bool { return target == ErrInvalidTimeline }

// maxTimelineFieldErrors bounds the errors collected from one timeline.
const maxTimelineFieldErrors = 100

// ParseTimeline reads a timeline from r: a JSON object with "options" and
// "events". It streams the events, refusing more than MaxTimelineEvents
// or MaxTimelineBytes without reading further, refuses unknown fields and
// checks every event on its own (types, fields, times sorted, bounds).
// Checks against a scenario (apps and cells named) are CheckTimeline's.
func ParseTimeline(r io.Reader) (*Timeline, error) {
	return parseTimeline(r, timelineLimits{events: MaxTimelineEvents, bytes: MaxTimelineBytes})
}

// timelineLimits are the parse bounds (tests lower them).
type timelineLimits struct {
	events int
	bytes  int64
}

func parseTimeline(r io.Reader, lim timelineLimits) (*Timeline, error) {
	cr := &countingReader{r: io.LimitReader(r, lim.bytes+1)}
	dec := json.NewDecoder(cr)
	dec.DisallowUnknownFields()
	fail := func(msg string) error {
		if cr.n > lim.bytes {
			msg = fmt.Sprintf("a timeline must be at most %d bytes", lim.bytes)
		}
		return &TimelineError{Fields: []FieldError{{Message: msg}}}
	}
	decodeErr := func(path string, err error) error {
		if cr.n > lim.bytes {
			return fail("")
		}
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			p := path
			if ute.Field != "" {
				p += "." + ute.Field
			}
			return &TimelineError{Fields: []FieldError{{Path: strings.TrimPrefix(p, "."), Message: fmt.Sprintf("want a %s, got a JSON %s", ute.Type, ute.Value)}}}
		}
		msg := err.Error()
		if strings.HasPrefix(msg, "json: unknown field ") {
			return &TimelineError{Fields: []FieldError{{Path: path, Message: "unknown field " + strings.TrimPrefix(msg, "json: unknown field ")}}}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			msg = "unexpected end of input"
		}
		return &TimelineError{Fields: []FieldError{{Path: path, Message: "malformed JSON: " + msg}}}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, decodeErr("", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fail("a timeline is a JSON object with options and events")
	}
	tl := &Timeline{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, decodeErr("", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, &TimelineError{Fields: []FieldError{{Path: key, Message: "given twice"}}}
		}
		seen[key] = true
		switch key {
		case "options":
			if err := dec.Decode(&tl.Options); err != nil {
				return nil, decodeErr("options", err)
			}
		case "events":
			tok, err := dec.Token()
			if err != nil {
				return nil, decodeErr("events", err)
			}
			if d, ok := tok.(json.Delim); !ok || d != '[' {
				return nil, &TimelineError{Fields: []FieldError{{Path: "events", Message: "want an array"}}}
			}
			for dec.More() {
				if len(tl.Events) == lim.events {
					return nil, &TimelineError{Fields: []FieldError{{Path: "events", Message: fmt.Sprintf("a timeline must have at most %d events", lim.events)}}}
				}
				var e TimelineEvent
				if err := dec.Decode(&e); err != nil {
					return nil, decodeErr(fmt.Sprintf("events[%d]", len(tl.Events)), err)
				}
				tl.Events = append(tl.Events, e)
			}
			if _, err := dec.Token(); err != nil {
				return nil, decodeErr("events", err)
			}
		default:
			return nil, &TimelineError{Fields: []FieldError{{Path: key, Message: "unknown field (want options, events)"}}}
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, decodeErr("", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail("unexpected data after the top-level object")
	}
	if !seen["events"] {
		return nil, &TimelineError{Fields: []FieldError{{Path: "events", Message: "required"}}}
	}
	if err := tl.validate(); err != nil {
		return nil, err
	}
	return tl, nil
}

// ParseTimelineBytes is ParseTimeline over a byte slice.
func ParseTimelineBytes(data []byte) (*Timeline, error) {
	return ParseTimeline(bytes.NewReader(data))
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// fieldErrors collects bad fields up to a bound.
type fieldErrors struct{ list []FieldError }

func (f *fieldErrors) add(path, format string, args ...any) {
	if len(f.list) < maxTimelineFieldErrors {
		f.list = append(f.list, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}
}

func (f *fieldErrors) err() error {
	if len(f.list) == 0 {
		return nil
	}
	return &TimelineError{Fields: f.list}
}

// withDefaults returns the options with omitted fields defaulted.
func (o TimelineOptions) withDefaults() TimelineOptions {
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.FetchMS, DefaultFetchMS)
	def(&o.PerformMS, DefaultPerformMS)
	def(&o.ContainerStartMS, DefaultContainerStartMS)
	def(&o.ConvergenceIntervalMS, DefaultConvergenceIntervalMS)
	def(&o.StaleUnclaimedMS, DefaultStaleUnclaimedMS)
	def(&o.PresenceTTLMS, DefaultPresenceTTLMS)
	def(&o.EvacuationTimeoutMS, DefaultEvacuationTimeoutMS)
	def(&o.DeployTickMS, DefaultDeployTickMS)
	def(&o.PendingTaskExpiryMS, DefaultPendingTaskExpiryMS)
	def(&o.SampleIntervalMS, DefaultSampleIntervalMS)
	def(&o.SettleMS, DefaultSettleMS)
	if o.MaxTaskRetries == nil {
		n := DefaultMaxTaskRetries
		o.MaxTaskRetries = &n
	}
	return o
}

// validate checks the options and each event on its own.
func (tl *Timeline) validate() error {
	var errs fieldErrors
	o := tl.Options
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"fetch_ms", o.FetchMS}, {"perform_ms", o.PerformMS}, {"batch_window_ms", o.BatchWindowMS},
		{"container_start_ms", o.ContainerStartMS}, {"convergence_interval_ms", o.ConvergenceIntervalMS},
		{"stale_unclaimed_ms", o.StaleUnclaimedMS}, {"presence_ttl_ms", o.PresenceTTLMS},
		{"evacuation_timeout_ms", o.EvacuationTimeoutMS}, {"deploy_tick_ms", o.DeployTickMS},
		{"pending_task_expiry_ms", o.PendingTaskExpiryMS}, {"sample_interval_ms", o.SampleIntervalMS},
		{"end_ms", o.EndMS}, {"settle_ms", o.SettleMS},
	} {
		if f.v < 0 || f.v > MaxTimelineMS {
			errs.add("options."+f.name, "must be between 0 and %d ms (30 days)", int64(MaxTimelineMS))
		}
	}
	if o.MaxTaskRetries != nil && (*o.MaxTaskRetries < 0 || *o.MaxTaskRetries > 1000) {
		errs.add("options.max_task_retries", "must be between 0 and 1000")
	}
	var prev int64
	for i := range tl.Events {
		e := &tl.Events[i]
		path := fmt.Sprintf("events[%d]", i)
		switch {
		case e.AtMS < 0:
			errs.add(path+".at_ms", "must be >= 0 (got %d)", e.AtMS)
		case e.AtMS > MaxTimelineMS:
			errs.add(path+".at_ms", "must be at most %d ms (30 days; got %d)", int64(MaxTimelineMS), e.AtMS)
		case e.AtMS < prev:
			errs.add(path+".at_ms", "%d is before the previous event's %d: events must be sorted by time", e.AtMS, prev)
		}
		prev = max(prev, e.AtMS)
		spec, ok := eventFields[e.Type]
		if !ok {
			errs.add(path+".type", "unknown event type %q (want one of %s)", e.Type, strings.Join(eventTypes(), ", "))
			continue
		}
		set := e.setFields()
		for _, name := range spec.required {
			if !contains(set, name) {
				errs.add(path+"."+name, "required by a %s event", e.Type)
			}
		}
		for _, name := range set {
			if !contains(spec.required, name) && !contains(spec.optional, name) {
				errs.add(path+"."+name, "not used by a %s event", e.Type)
			}
		}
		checkGUID := func(field, v string) {
			if len(v) > models.MaxGUIDBytes {
				errs.add(path+"."+field, "must be at most %d bytes", models.MaxGUIDBytes)
			}
		}
		checkGUID("process_guid", e.ProcessGUID)
		checkGUID("new_process_guid", e.NewProcessGUID)
		checkGUID("task_guid", e.TaskGUID)
		if len(e.CellID) > models.MaxNameBytes {
			errs.add(path+".cell_id", "must be at most %d bytes", models.MaxNameBytes)
		}
		if len(e.Domain) > models.MaxNameBytes {
			errs.add(path+".domain", "must be at most %d bytes", models.MaxNameBytes)
		}
		if len(e.RootFS) > models.MaxURLBytes {
			errs.add(path+".rootfs", "must be at most %d bytes", models.MaxURLBytes)
		}
		if len(e.PlacementTags) > models.MaxListItems || len(e.VolumeDrivers) > models.MaxListItems {
			errs.add(path, "placement_tags and volume_drivers must have at most %d items each", models.MaxListItems)
		}
		if e.Instances != nil && (*e.Instances < 0 || *e.Instances > models.DefaultMaxInstances) {
			errs.add(path+".instances", "must be between 0 and %d (the BBS's default max_desired_instances)", models.DefaultMaxInstances)
		}
		if e.Index != nil && (*e.Index < 0 || *e.Index >= models.DefaultMaxInstances) {
			errs.add(path+".index", "must be between 0 and %d", models.DefaultMaxInstances-1)
		}
		if e.MemoryMB < 0 || e.MemoryMB > maxResourceMB {
			errs.add(path+".memory_mb", "must be between 1 and %d", maxResourceMB)
		}
		if e.DiskMB < 0 || e.DiskMB > maxResourceMB {
			errs.add(path+".disk_mb", "must be between 0 and %d", maxResourceMB)
		}
		if e.MaxInFlight < 0 || e.MaxInFlight > models.DefaultMaxInstances {
			errs.add(path+".max_in_flight", "must be between 1 and %d", models.DefaultMaxInstances)
		}
		if e.RunMS < 0 || e.RunMS > MaxTimelineMS {
			errs.add(path+".run_ms", "must be between 0 and %d", int64(MaxTimelineMS))
		}
		if e.Type == EventDeploy && e.ProcessGUID != "" && e.ProcessGUID == e.NewProcessGUID {
			errs.add(path+".new_process_guid", "must differ from process_guid")
		}
	}
	if o.EndMS > 0 && len(tl.Events) > 0 && tl.Events[len(tl.Events)-1].AtMS > o.EndMS {
		errs.add("options.end_ms", "%d is before the last event (%d)", o.EndMS, tl.Events[len(tl.Events)-1].AtMS)
	}
	if err := errs.err(); err != nil {
		return err
	}
	d := tl.Options.withDefaults()
	if end := tl.maxEnd(d); end/d.SampleIntervalMS > MaxTimelineSamples {
		errs.add("options.sample_interval_ms", "gives %d samples over %d ms; at most %d (raise the interval)", end/d.SampleIntervalMS, end, MaxTimelineSamples)
	}
	return errs.err()
}

// maxResourceMB bounds a request's memory and disk.
const maxResourceMB = 1 << 30

// maxEnd is the latest simulated time the run can reach.
func (tl *Timeline) maxEnd(o TimelineOptions) int64 {
	if o.EndMS > 0 {
		return o.EndMS
	}
	var last int64
	if len(tl.Events) > 0 {
		last = tl.Events[len(tl.Events)-1].AtMS
	}
	return last + o.SettleMS
}

func eventTypes() []string {
	return []string{EventDesireLRP, EventDesireTask, EventScale, EventRemoveLRP, EventCrash, EventCellFail, EventCellRecover, EventCellDrain, EventDeploy}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
