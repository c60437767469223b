package stager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gavelhq/gavel/bbs/models"
	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// MaxRequestBytes bounds a staging request's and a task callback's body.
const MaxRequestBytes = 1 << 20

// BBS is what the stager asks of the BBS.
type BBS interface {
	DesireTask(ctx context.Context, req *bbsv1.DesireTaskRequest, opts ...grpc.CallOption) (*bbsv1.DesireTaskResponse, error)
	CancelTask(ctx context.Context, req *bbsv1.CancelTaskRequest, opts ...grpc.CallOption) (*bbsv1.CancelTaskResponse, error)
}

// Options configure a Stager.
type Options struct {
	// BBS receives the staging tasks; required.
	BBS BBS
	// Recipe builds the tasks.
	Recipe RecipeOptions
	// CCClient posts staging responses to the controller (default a client with a 30 s timeout).
	CCClient *http.Client
	// CCBaseURL is the controller's internal URL, used when a request gives
	// no completion_callback (…/internal/staging/<guid>/completed).
	CCBaseURL string
	// CCUsername and CCPassword are the controller's basic-auth credentials (optional).
	CCUsername, CCPassword string
	// BBSTimeout bounds each BBS call (default 10 s).
	BBSTimeout time.Duration
	// Registry receives the stager's metrics (optional).
	Registry prometheus.Registerer
	// Logger; default a logger with no sinks.
	Logger lager.Logger
}

// Stager serves the staging API. Safe for concurrent use.
type Stager struct {
	opts    Options
	metrics *metrics
}

type metrics struct {
	requests  *prometheus.CounterVec
	succeeded prometheus.Counter
	failed    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

// New returns a stager.
func New(opts Options) *Stager {
	if opts.CCClient == nil {
		opts.CCClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.BBSTimeout <= 0 {
		opts.BBSTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("stager")
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_stager_staging_requests_total", Help: "Staging requests received, by lifecycle.",
		}, []string{"lifecycle"}),
		succeeded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_stager_staging_succeeded_total", Help: "Stagings that completed successfully (StagingRequestsSucceeded).",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_stager_staging_failed_total", Help: "Stagings that failed, by error id (StagingRequestsFailed).",
		}, []string{"error_id"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gavel_stager_staging_duration_seconds", Help: "Time from task creation to completion, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 12),
		}, []string{"outcome"}),
	}
	if opts.Registry != nil {
		opts.Registry.MustRegister(m.requests, m.succeeded, m.failed, m.duration)
	}
	return &Stager{opts: opts, metrics: m}
}

// Handler returns the staging API:
//
//	PUT    /v1/staging/{staging_guid}            stage (202; 400 bad request; 503 BBS)
//	DELETE /v1/staging/{staging_guid}            cancel (202; 404; 503)
//	POST   /v1/staging/{staging_guid}/completed  the BBS task callback
func (s *Stager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/staging/{guid}", s.stage)
	mux.HandleFunc("DELETE /v1/staging/{guid}", s.cancel)
	mux.HandleFunc("POST /v1/staging/{guid}/completed", s.completed)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux
}

func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(bm.ErrorResponse{Error: err.Error()})
}

func (s *Stager) stage(w http.ResponseWriter, r *http.Request) {
	guid := r.PathValue("guid")
	logger := s.opts.Logger.Session("stage", lager.Data{"staging_guid": guid})
	if !bm.GUIDPattern.MatchString(guid) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("staging_guid: must match %s (got %q)", bm.GUIDPattern, guid))
		return
	}
	var req bm.StagingRequestFromCC
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBytes)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: not a staging request (at most %d bytes of JSON): %w", MaxRequestBytes, err))
		return
	}
	s.metrics.requests.WithLabelValues(req.Lifecycle).Inc()
	def, err := s.opts.Recipe.BuildTask(guid, &req)
	if err != nil {
		logger.Info("refused", lager.Data{"error": err.Error()})
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.BBSTimeout)
	defer cancel()
	_, err = s.opts.BBS.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: guid, Domain: Domain, Definition: def})
	switch {
	case err == nil:
		logger.Info("desired-task")
	case errors.Is(err, models.ErrAlreadyExists):
		logger.Info("task-already-desired") // idempotent, as Diego's ResourceExists
	case errors.Is(err, models.ErrInvalid):
		writeError(w, http.StatusBadRequest, fmt.Errorf("bbs refused the staging task: %w", err))
		return
	default:
		logger.Error("desire-task-failed", err)
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("bbs: %w", err))
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Stager) cancel(w http.ResponseWriter, r *http.Request) {
	guid := r.PathValue("guid")
	if !bm.GUIDPattern.MatchString(guid) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("staging_guid: must match %s (got %q)", bm.GUIDPattern, guid))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.BBSTimeout)
	defer cancel()
	_, err := s.opts.BBS.CancelTask(ctx, &bbsv1.CancelTaskRequest{TaskGuid: guid})
	switch {
	case err == nil:
		w.WriteHeader(http.StatusAccepted)
	case errors.Is(err, models.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Errorf("staging task %s: %w", guid, err))
	case errors.Is(err, models.ErrInvalidTransition):
		w.WriteHeader(http.StatusAccepted) // already completed or cancelled
	default:
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("bbs: %w", err))
	}
}

// completed maps the BBS task callback to the controller's staging response
// and forwards the controller's answer (503 when it cannot be reached, so
// the BBS retries).
func (s *Stager) completed(w http.ResponseWriter, r *http.Request) {
	guid := r.PathValue("guid")
	logger := s.opts.Logger.Session("staging-completed", lager.Data{"staging_guid": guid})
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: %w", err))
		return
	}
	var task modelsv1.TaskCallbackResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &task); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: not a task callback: %w", err))
		return
	}
	if task.GetTaskGuid() != guid {
		writeError(w, http.StatusBadRequest, fmt.Errorf("task_guid: %q does not match the path's %q", task.GetTaskGuid(), guid))
		return
	}
	var ann bm.StagingTaskAnnotation
	if err := json.Unmarshal([]byte(task.GetAnnotation()), &ann); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("annotation: not a staging annotation: %w", err))
		return
	}
	resp := Response(&task)
	outcome := "succeeded"
	if resp.Error != nil {
		outcome = "failed"
		s.metrics.failed.WithLabelValues(resp.Error.ID).Inc()
		logger.Info("staging-failed", lager.Data{"error_id": resp.Error.ID, "reason": task.GetFailureReason()})
	} else {
		s.metrics.succeeded.Inc()
		logger.Info("staging-succeeded")
	}
	if created := task.GetCreatedAt(); created > 0 {
		s.metrics.duration.WithLabelValues(outcome).Observe(time.Since(time.Unix(0, created)).Seconds())
	}
	callback := ann.CompletionCallback
	if callback == "" {
		callback = joinURL(s.opts.CCBaseURL, "/internal/staging/"+guid+"/completed")
	}
	status, err := s.post(r.Context(), callback, resp)
	if err != nil {
		logger.Error("callback-failed", err, lager.Data{"callback": callback})
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("controller callback %s: %w", callback, err))
		return
	}
	logger.Info("callback-answered", lager.Data{"status": status})
	w.WriteHeader(status)
}

func (s *Stager) post(ctx context.Context, url string, resp bm.StagingResponseForCC) (int, error) {
	body, err := json.Marshal(resp)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.opts.CCUsername != "" {
		req.SetBasicAuth(s.opts.CCUsername, s.opts.CCPassword)
	}
	r, err := s.opts.CCClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer r.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	return r.StatusCode, nil
}

// Response maps a completed staging task to the controller's staging response.
func Response(task *modelsv1.TaskCallbackResponse) bm.StagingResponseForCC {
	if !task.GetFailed() {
		raw := json.RawMessage(task.GetResult())
		if !json.Valid(raw) {
			raw = json.RawMessage(`{}`)
		}
		return bm.StagingResponseForCC{Result: &raw}
	}
	reason := task.GetFailureReason()
	return bm.StagingResponseForCC{Error: &bm.StagingError{ID: ErrorID(reason), Message: reason}}
}

// Exit statuses of the builder that name the failed phase (Diego's buildpack lifecycle's).
const (
	ExitDetectFailed  = 222
	ExitCompileFailed = 223
	ExitReleaseFailed = 224
)

// ErrorID maps a staging task's failure reason to the controller's error id.
func ErrorID(reason string) string {
	lower := strings.ToLower(reason)
	switch {
	case strings.Contains(lower, "insufficient resources"):
		return bm.InsufficientResources
	case strings.Contains(lower, "found no compatible cell"):
		return bm.NoCompatibleCell
	case strings.Contains(lower, "cell disappeared"), strings.Contains(lower, "cell communication"):
		return bm.CellCommunicationError
	case strings.Contains(reason, fmt.Sprintf("Exited with status %d", ExitDetectFailed)):
		return bm.NoAppDetectedError
	case strings.Contains(reason, fmt.Sprintf("Exited with status %d", ExitCompileFailed)):
		return bm.BuildpackCompileFailed
	case strings.Contains(reason, fmt.Sprintf("Exited with status %d", ExitReleaseFailed)):
		return bm.BuildpackReleaseFailed
	default:
		return bm.StagingErrorID
	}
}
