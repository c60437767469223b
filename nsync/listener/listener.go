// Package listener is nsync's HTTP API: the controller desires, updates and
// removes apps, stops single instances, and desires and cancels tasks; each
// call becomes one or two BBS calls.
package listener

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/nsync/ccmessages"
	"github.com/gavelhq/gavel/nsync/recipe"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Bounds of the listener.
const (
	// MaxBodyBytes caps a request body; larger bodies get 413.
	MaxBodyBytes = 1 << 20
	// DefaultMaxConcurrent caps requests in flight; more get 503 with Retry-After.
	DefaultMaxConcurrent = 256
)

// BBS is the part of the BBS API the listener calls.
type BBS interface {
	GetDesiredLRP(ctx context.Context, in *bbsv1.GetDesiredLRPRequest, opts ...grpc.CallOption) (*bbsv1.GetDesiredLRPResponse, error)
	DesireLRP(ctx context.Context, in *bbsv1.DesireLRPRequest, opts ...grpc.CallOption) (*bbsv1.DesireLRPResponse, error)
	UpdateDesiredLRP(ctx context.Context, in *bbsv1.UpdateDesiredLRPRequest, opts ...grpc.CallOption) (*bbsv1.UpdateDesiredLRPResponse, error)
	RemoveDesiredLRP(ctx context.Context, in *bbsv1.RemoveDesiredLRPRequest, opts ...grpc.CallOption) (*bbsv1.RemoveDesiredLRPResponse, error)
	RetireActualLRP(ctx context.Context, in *bbsv1.RetireActualLRPRequest, opts ...grpc.CallOption) (*bbsv1.RetireActualLRPResponse, error)
	DesireTask(ctx context.Context, in *bbsv1.DesireTaskRequest, opts ...grpc.CallOption) (*bbsv1.DesireTaskResponse, error)
	CancelTask(ctx context.Context, in *bbsv1.CancelTaskRequest, opts ...grpc.CallOption) (*bbsv1.CancelTaskResponse, error)
}

// Metrics are the listener's counters.
type Metrics struct {
	// LRPsDesired counts apps desired (new process guids).
	LRPsDesired prometheus.Counter
	// LRPsUpdated counts apps updated.
	LRPsUpdated prometheus.Counter
	// LRPsRemoved counts apps removed.
	LRPsRemoved prometheus.Counter
	// TasksDesired counts tasks desired.
	TasksDesired prometheus.Counter
	// RequestsRefused counts requests refused for load (503).
	RequestsRefused prometheus.Counter
}

// NewMetrics registers the listener's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string) prometheus.Counter {
		m := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(m)
		return m
	}
	return &Metrics{
		LRPsDesired:     c("nsync_lrps_desired_total", "Apps desired through the listener."),
		LRPsUpdated:     c("nsync_lrps_updated_total", "Apps updated through the listener."),
		LRPsRemoved:     c("nsync_lrps_removed_total", "Apps removed through the listener."),
		TasksDesired:    c("nsync_tasks_desired_total", "Tasks desired through the listener."),
		RequestsRefused: c("nsync_listener_requests_refused_total", "Requests refused with 503 because too many were in flight."),
	}
}

// Handler serves the listener's API.
type Handler struct {
	bbs     BBS
	recipe  recipe.Config
	metrics *Metrics
	logger  lager.Logger
	slots   chan struct{}
	mux     *http.ServeMux
}

// New returns the listener's handler; maxConcurrent <= 0 means DefaultMaxConcurrent.
func New(bbs BBS, rc recipe.Config, maxConcurrent int, metrics *Metrics, logger lager.Logger) *Handler {
	if maxConcurrent <= 0 {
		maxConcurrent = DefaultMaxConcurrent
	}
	h := &Handler{bbs: bbs, recipe: rc, metrics: metrics, logger: logger, slots: make(chan struct{}, maxConcurrent), mux: http.NewServeMux()}
	h.mux.HandleFunc("PUT /v1/apps/{process_guid}", h.desireApp)
	h.mux.HandleFunc("DELETE /v1/apps/{process_guid}", h.deleteApp)
	h.mux.HandleFunc("DELETE /v1/apps/{process_guid}/index/{index}", h.killIndex)
	h.mux.HandleFunc("POST /v1/tasks", h.desireTask)
	h.mux.HandleFunc("DELETE /v1/tasks/{task_guid}", h.cancelTask)
	return h
}

// ServeHTTP admits at most maxConcurrent requests at once and caps bodies.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		h.metrics.RequestsRefused.Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("too many requests in flight (at most %d)", cap(h.slots)))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	h.mux.ServeHTTP(w, r)
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}

// decode reads a JSON body: 413 above MaxBodyBytes, 400 naming the problem otherwise.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body: must be at most %d bytes", MaxBodyBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: must be %s (got JSON %s)", typeErr.Field, typeErr.Type, typeErr.Value))
			return false
		}
		writeError(w, http.StatusBadRequest, "body: invalid JSON: "+err.Error())
		return false
	}
	return true
}

// bbsError maps a BBS error to a status: invalid → 400, not found → 404,
// conflict → 409, anything else → 503.
func (h *Handler) bbsError(w http.ResponseWriter, action string, err error) {
	code := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, models.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, models.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, models.ErrConflict), errors.Is(err, models.ErrAlreadyExists):
		code = http.StatusConflict
	}
	if code == http.StatusServiceUnavailable {
		h.logger.Error(action+"-failed", err)
	}
	writeError(w, code, action+": "+err.Error())
}

func (h *Handler) desireApp(w http.ResponseWriter, r *http.Request) {
	guid := r.PathValue("process_guid")
	var req ccmessages.DesireAppRequestFromCC
	if !decode(w, r, &req) {
		return
	}
	if req.ProcessGUID != guid {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("process_guid: %q does not match the path's %q", req.ProcessGUID, guid))
		return
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if err = h.desireOrUpdate(r.Context(), &req); !errors.Is(err, models.ErrConflict) && !errors.Is(err, models.ErrAlreadyExists) {
			break
		}
	}
	switch {
	case err == nil:
		w.WriteHeader(http.StatusAccepted)
	case recipe.IsFieldError(err):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		h.bbsError(w, "desire app", err)
	}
}

// desireOrUpdate desires a new process guid, or updates instances, routes
// and annotation of an existing one.
func (h *Handler) desireOrUpdate(ctx context.Context, req *ccmessages.DesireAppRequestFromCC) error {
	got, err := h.bbs.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: req.ProcessGUID})
	switch {
	case errors.Is(err, models.ErrNotFound):
		lrp, err := h.recipe.DesiredLRP(req)
		if err != nil {
			return err
		}
		if _, err := h.bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp}); err != nil {
			return err
		}
		h.metrics.LRPsDesired.Inc()
		return nil
	case err != nil:
		return err
	}
	upd, err := recipe.Update(got.GetDesiredLrp().GetRoutes(), req, h.recipe.MaxInstances)
	if err != nil {
		return err
	}
	if _, err := h.bbs.UpdateDesiredLRP(ctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: req.ProcessGUID, Update: upd}); err != nil {
		return err
	}
	h.metrics.LRPsUpdated.Inc()
	return nil
}

func (h *Handler) deleteApp(w http.ResponseWriter, r *http.Request) {
	guid := r.PathValue("process_guid")
	if _, err := h.bbs.RemoveDesiredLRP(r.Context(), &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: guid}); err != nil {
		h.bbsError(w, "remove app", err)
		return
	}
	h.metrics.LRPsRemoved.Inc()
	w.WriteHeader(http.StatusAccepted)
}

// killIndex retires one instance; the index stays desired, so convergence
// and the auction start a replacement.
func (h *Handler) killIndex(w http.ResponseWriter, r *http.Request) {
	guid := r.PathValue("process_guid")
	index, err := strconv.ParseInt(r.PathValue("index"), 10, 32)
	if err != nil || index < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("index: must be a non-negative integer (got %q)", r.PathValue("index")))
		return
	}
	got, err := h.bbs.GetDesiredLRP(r.Context(), &bbsv1.GetDesiredLRPRequest{ProcessGuid: guid})
	if err != nil {
		h.bbsError(w, "get app", err)
		return
	}
	key := &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: int32(index), Domain: got.GetDesiredLrp().GetDomain()}
	if _, err := h.bbs.RetireActualLRP(r.Context(), &bbsv1.RetireActualLRPRequest{ActualLrpKey: key}); err != nil {
		h.bbsError(w, "retire instance", err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *Handler) desireTask(w http.ResponseWriter, r *http.Request) {
	var req ccmessages.TaskRequestFromCC
	if !decode(w, r, &req) {
		return
	}
	def, err := h.recipe.Task(&req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := h.bbs.DesireTask(r.Context(), &bbsv1.DesireTaskRequest{TaskGuid: req.TaskGUID, Domain: recipe.TasksDomain, Definition: def}); err != nil {
		h.bbsError(w, "desire task", err)
		return
	}
	h.metrics.TasksDesired.Inc()
	w.WriteHeader(http.StatusAccepted)
}

func (h *Handler) cancelTask(w http.ResponseWriter, r *http.Request) {
	if _, err := h.bbs.CancelTask(r.Context(), &bbsv1.CancelTaskRequest{TaskGuid: r.PathValue("task_guid")}); err != nil {
		h.bbsError(w, "cancel task", err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}
