// Package bulker is nsync's consistency backstop: every poll interval it
// pages the controller's app fingerprints, desires the apps the BBS lacks,
// updates the stale ones, removes the ones the controller no longer has
// (only after every page was read), and bumps the cf-apps domain's freshness
// only when nothing failed. The task side fails tasks the BBS lost and
// cancels tasks the controller no longer wants, then bumps cf-tasks.
package bulker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/nsync/ccmessages"
	"github.com/gavelhq/gavel/nsync/recipe"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Bounds and defaults of the bulker.
const (
	DefaultPageSize = 500
	MaxPageSize     = 5000
	DefaultWorkers  = 50
	MaxWorkers      = 1000
	// MaxPages bounds the pages of one pass (MaxPages × page size apps).
	MaxPages = 10_000
)

// BBS is the part of the BBS API the bulker calls.
type BBS interface {
	ListDesiredLRPSchedulingInfos(ctx context.Context, in *bbsv1.ListDesiredLRPSchedulingInfosRequest, opts ...grpc.CallOption) (*bbsv1.ListDesiredLRPSchedulingInfosResponse, error)
	DesireLRP(ctx context.Context, in *bbsv1.DesireLRPRequest, opts ...grpc.CallOption) (*bbsv1.DesireLRPResponse, error)
	UpdateDesiredLRP(ctx context.Context, in *bbsv1.UpdateDesiredLRPRequest, opts ...grpc.CallOption) (*bbsv1.UpdateDesiredLRPResponse, error)
	RemoveDesiredLRP(ctx context.Context, in *bbsv1.RemoveDesiredLRPRequest, opts ...grpc.CallOption) (*bbsv1.RemoveDesiredLRPResponse, error)
	UpsertDomain(ctx context.Context, in *bbsv1.UpsertDomainRequest, opts ...grpc.CallOption) (*bbsv1.UpsertDomainResponse, error)
	ListTasks(ctx context.Context, in *bbsv1.ListTasksRequest, opts ...grpc.CallOption) (*bbsv1.ListTasksResponse, error)
	CancelTask(ctx context.Context, in *bbsv1.CancelTaskRequest, opts ...grpc.CallOption) (*bbsv1.CancelTaskResponse, error)
}

// Config configures a bulker.
type Config struct {
	// ControllerURL is the controller's base URL.
	ControllerURL string
	// ControllerUser and ControllerPassword are its internal basic auth.
	ControllerUser, ControllerPassword string
	// HTTPClient calls the controller (default: 30 s timeout).
	HTTPClient *http.Client
	// PageSize is the batch_size of fingerprint and task-state pages.
	PageSize int
	// Workers bounds concurrent BBS writes.
	Workers int
	// DomainTTL is the freshness TTL of cf-apps and cf-tasks.
	DomainTTL time.Duration
	// PollInterval is the time between passes.
	PollInterval time.Duration
	// Recipe builds desired LRPs.
	Recipe recipe.Config
}

// Metrics are the bulker's metrics.
type Metrics struct {
	// SyncDuration is the duration of each LRP pass (DesiredLRPSyncDuration).
	SyncDuration prometheus.Histogram
	// Desired, Updated, Removed and Failed count the LRP actions of passes.
	Desired, Updated, Removed, Failed prometheus.Counter
	// InvalidLRPs counts apps the BBS refused as invalid (NsyncInvalidDesiredLRPsFound).
	InvalidLRPs prometheus.Counter
	// TasksFailed and TasksCanceled count task actions.
	TasksFailed, TasksCanceled prometheus.Counter
	// FreshnessBumps counts successful domain freshness bumps.
	FreshnessBumps *prometheus.CounterVec
}

// NewMetrics registers the bulker's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string) prometheus.Counter {
		m := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(m)
		return m
	}
	m := &Metrics{
		SyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nsync_desired_lrp_sync_duration_seconds",
			Help: "Duration of one bulker pass over the controller's apps.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		Desired:        c("nsync_bulker_lrps_desired_total", "Apps the bulker desired (missing from the BBS)."),
		Updated:        c("nsync_bulker_lrps_updated_total", "Apps the bulker updated (stale etag)."),
		Removed:        c("nsync_bulker_lrps_removed_total", "Apps the bulker removed (gone from the controller)."),
		Failed:         c("nsync_bulker_lrp_actions_failed_total", "Bulker desire, update or remove calls that failed."),
		InvalidLRPs:    c("nsync_invalid_desired_lrps_found_total", "Apps the BBS or the recipe refused as invalid."),
		TasksFailed:    c("nsync_bulker_tasks_failed_total", "Tasks reported failed to the controller because the BBS lost them."),
		TasksCanceled:  c("nsync_bulker_tasks_canceled_total", "Tasks canceled because the controller no longer wants them."),
		FreshnessBumps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nsync_domain_freshness_bumps_total", Help: "Domain freshness bumps."}, []string{"domain"}),
	}
	reg.MustRegister(m.SyncDuration, m.FreshnessBumps)
	return m
}

// Bulker syncs the BBS with the controller.
type Bulker struct {
	cfg     Config
	bbs     BBS
	cc      *controller
	metrics *Metrics
	logger  lager.Logger
}

// New returns a bulker; zero PageSize, Workers, DomainTTL and PollInterval take the defaults.
func New(cfg Config, bbs BBS, metrics *Metrics, logger lager.Logger) *Bulker {
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultPageSize
	}
	cfg.PageSize = min(cfg.PageSize, MaxPageSize)
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	cfg.Workers = min(cfg.Workers, MaxWorkers)
	if cfg.DomainTTL <= 0 {
		cfg.DomainTTL = 2 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 30 * time.Second
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Bulker{cfg: cfg, bbs: bbs, metrics: metrics, logger: logger,
		cc: &controller{base: cfg.ControllerURL, user: cfg.ControllerUser, password: cfg.ControllerPassword, http: hc}}
}

// AppsResult is what one LRP pass did.
type AppsResult struct {
	// Desired, Updated and Removed are the process guids acted on.
	Desired, Updated, Removed []string
	// Fresh says whether cf-apps freshness was bumped.
	Fresh bool
}

// SyncApps runs one LRP pass. It returns an error when any page or action
// failed; then nothing was removed if a page failed, and freshness was not bumped.
func (b *Bulker) SyncApps(ctx context.Context) (AppsResult, error) {
	start := time.Now()
	defer func() { b.metrics.SyncDuration.Observe(time.Since(start).Seconds()) }()
	var res AppsResult
	infos, err := b.bbs.ListDesiredLRPSchedulingInfos(ctx, &bbsv1.ListDesiredLRPSchedulingInfosRequest{Filter: &bbsv1.DesiredLRPFilter{Domain: recipe.AppsDomain}})
	if err != nil {
		return res, fmt.Errorf("list cf-apps scheduling infos: %w", err)
	}
	existing := make(map[string]*modelsv1.DesiredLRPSchedulingInfo, len(infos.SchedulingInfos))
	for _, si := range infos.SchedulingInfos {
		existing[si.GetKey().GetProcessGuid()] = si
	}
	seen := make(map[string]bool, len(existing))
	var missing, stale []string
	token := json.RawMessage("{}")
	for pages := 0; ; pages++ {
		if pages >= MaxPages {
			return res, fmt.Errorf("fingerprints: more than %d pages; refusing to continue (raise page_size)", MaxPages)
		}
		page, err := b.cc.fingerprints(ctx, b.cfg.PageSize, token)
		if err != nil {
			// A partial read must never delete, nor bump freshness.
			return res, fmt.Errorf("fingerprints page %d: %w", pages+1, err)
		}
		for _, fp := range page.Fingerprints {
			if seen[fp.ProcessGUID] {
				continue
			}
			seen[fp.ProcessGUID] = true
			si, ok := existing[fp.ProcessGUID]
			switch {
			case !ok:
				missing = append(missing, fp.ProcessGUID)
			case si.GetAnnotation() != fp.ETag:
				stale = append(stale, fp.ProcessGUID)
			}
		}
		if len(page.Fingerprints) < b.cfg.PageSize {
			break
		}
		token = page.Token
	}
	var deleted []string
	for guid := range existing {
		if !seen[guid] {
			deleted = append(deleted, guid)
		}
	}

	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		b.metrics.Failed.Inc()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.cfg.Workers)
	work := append(append([]string(nil), missing...), stale...)
	for i := 0; i < len(work); i += b.cfg.PageSize {
		batch := work[i:min(i+b.cfg.PageSize, len(work))]
		apps, err := b.cc.apps(ctx, batch)
		if err != nil {
			fail(fmt.Errorf("fetch %d apps: %w", len(batch), err))
			continue
		}
		for i := range apps {
			app := &apps[i]
			si, isStale := existing[app.ProcessGUID]
			g.Go(func() error {
				if isStale {
					if err := b.update(gctx, si, app); err != nil {
						fail(err)
						return nil
					}
					mu.Lock()
					res.Updated = append(res.Updated, app.ProcessGUID)
					mu.Unlock()
					return nil
				}
				if err := b.desire(gctx, app); err != nil {
					fail(err)
					return nil
				}
				mu.Lock()
				res.Desired = append(res.Desired, app.ProcessGUID)
				mu.Unlock()
				return nil
			})
		}
	}
	for _, guid := range deleted {
		g.Go(func() error {
			_, err := b.bbs.RemoveDesiredLRP(gctx, &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: guid})
			if err != nil && !errors.Is(err, models.ErrNotFound) {
				fail(fmt.Errorf("remove %s: %w", guid, err))
				return nil
			}
			b.metrics.Removed.Inc()
			mu.Lock()
			res.Removed = append(res.Removed, guid)
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	if len(errs) > 0 {
		return res, errors.Join(errs...)
	}
	if _, err := b.bbs.UpsertDomain(ctx, &bbsv1.UpsertDomainRequest{Domain: recipe.AppsDomain, TtlSeconds: int64(b.cfg.DomainTTL / time.Second)}); err != nil {
		return res, fmt.Errorf("bump cf-apps freshness: %w", err)
	}
	b.metrics.FreshnessBumps.WithLabelValues(recipe.AppsDomain).Inc()
	res.Fresh = true
	return res, nil
}

// invalid says whether err is a refusal (recipe or BBS InvalidRequest):
// counted, but it does not block freshness.
func (b *Bulker) invalid(guid string, err error) bool {
	if recipe.IsFieldError(err) || errors.Is(err, models.ErrInvalid) {
		b.metrics.InvalidLRPs.Inc()
		b.logger.Info("invalid-desired-lrp", lager.Data{"process_guid": guid, "error": err.Error()})
		return true
	}
	return false
}

func (b *Bulker) desire(ctx context.Context, app *ccmessages.DesireAppRequestFromCC) error {
	lrp, err := b.cfg.Recipe.DesiredLRP(app)
	if err == nil {
		_, err = b.bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp})
	}
	if err != nil {
		if b.invalid(app.ProcessGUID, err) {
			return nil
		}
		return fmt.Errorf("desire %s: %w", app.ProcessGUID, err)
	}
	b.metrics.Desired.Inc()
	return nil
}

func (b *Bulker) update(ctx context.Context, si *modelsv1.DesiredLRPSchedulingInfo, app *ccmessages.DesireAppRequestFromCC) error {
	upd, err := recipe.Update(si.GetRoutes(), app, b.cfg.Recipe.MaxInstances)
	if err == nil {
		_, err = b.bbs.UpdateDesiredLRP(ctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: app.ProcessGUID, Update: upd})
	}
	if err != nil {
		if b.invalid(app.ProcessGUID, err) {
			return nil
		}
		return fmt.Errorf("update %s: %w", app.ProcessGUID, err)
	}
	b.metrics.Updated.Inc()
	return nil
}

// TasksResult is what one task pass did.
type TasksResult struct {
	// Failed are tasks reported failed to the controller; Canceled were canceled in the BBS.
	Failed, Canceled []string
	// Fresh says whether cf-tasks freshness was bumped.
	Fresh bool
}

// SyncTasks runs one task pass: tasks RUNNING or CANCELING in the controller
// but absent from the BBS are reported failed to their callback; tasks in
// the BBS but absent from the controller, or CANCELING there, and not
// already completed, are canceled.
func (b *Bulker) SyncTasks(ctx context.Context) (TasksResult, error) {
	var res TasksResult
	list, err := b.bbs.ListTasks(ctx, &bbsv1.ListTasksRequest{Domain: recipe.TasksDomain})
	if err != nil {
		return res, fmt.Errorf("list cf-tasks: %w", err)
	}
	inBBS := make(map[string]*modelsv1.Task, len(list.Tasks))
	for _, t := range list.Tasks {
		inBBS[t.TaskGuid] = t
	}
	inCC := map[string]ccmessages.TaskState{}
	token := json.RawMessage("{}")
	for pages := 0; ; pages++ {
		if pages >= MaxPages {
			return res, fmt.Errorf("task states: more than %d pages", MaxPages)
		}
		page, err := b.cc.taskStates(ctx, b.cfg.PageSize, token)
		if err != nil {
			return res, fmt.Errorf("task states page %d: %w", pages+1, err)
		}
		for _, ts := range page.TaskStates {
			inCC[ts.TaskGUID] = ts
		}
		if len(page.TaskStates) < b.cfg.PageSize {
			break
		}
		token = page.Token
	}
	var mu sync.Mutex
	var errs []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.cfg.Workers)
	for guid, ts := range inCC {
		if _, ok := inBBS[guid]; ok || (ts.State != ccmessages.TaskRunning && ts.State != ccmessages.TaskCanceling) {
			continue
		}
		g.Go(func() error {
			err := b.cc.failTask(gctx, ts.CompletionCallbackURL, guid)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			b.metrics.TasksFailed.Inc()
			res.Failed = append(res.Failed, guid)
			return nil
		})
	}
	for guid, t := range inBBS {
		ts, ok := inCC[guid]
		if ok && ts.State != ccmessages.TaskCanceling {
			continue
		}
		if t.State == modelsv1.TaskState_TASK_STATE_COMPLETED || t.State == modelsv1.TaskState_TASK_STATE_RESOLVING {
			continue
		}
		g.Go(func() error {
			_, err := b.bbs.CancelTask(gctx, &bbsv1.CancelTaskRequest{TaskGuid: guid})
			mu.Lock()
			defer mu.Unlock()
			if err != nil && !errors.Is(err, models.ErrNotFound) {
				errs = append(errs, fmt.Errorf("cancel %s: %w", guid, err))
				return nil
			}
			b.metrics.TasksCanceled.Inc()
			res.Canceled = append(res.Canceled, guid)
			return nil
		})
	}
	_ = g.Wait()
	if len(errs) > 0 {
		return res, errors.Join(errs...)
	}
	if _, err := b.bbs.UpsertDomain(ctx, &bbsv1.UpsertDomainRequest{Domain: recipe.TasksDomain, TtlSeconds: int64(b.cfg.DomainTTL / time.Second)}); err != nil {
		return res, fmt.Errorf("bump cf-tasks freshness: %w", err)
	}
	b.metrics.FreshnessBumps.WithLabelValues(recipe.TasksDomain).Inc()
	res.Fresh = true
	return res, nil
}

// Run is an ifrit runner: a pass at once, then every PollInterval, until
// signaled; a signal cancels a pass in flight.
func (b *Bulker) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A signal also cancels a pass in flight.
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	close(ready)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if r, err := b.SyncApps(ctx); err != nil {
				b.logger.Error("sync-apps-failed", err, lager.Data{"desired": len(r.Desired), "updated": len(r.Updated), "removed": len(r.Removed)})
			}
			if _, err := b.SyncTasks(ctx); err != nil {
				b.logger.Error("sync-tasks-failed", err)
			}
			t.Reset(b.cfg.PollInterval)
		}
	}
}
