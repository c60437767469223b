// Package cctest is a Cloud Controller test double for the cc-bridge: a real
// Cloud Controller cannot run here. It serves the controller's side of the
// bridge's protocols and records what it receives:
//
//	POST /internal/v3/staging/{guid}/build_completed  staging responses (also /internal/staging/{guid}/completed)
//	POST /internal/v4/apps/{guid}/crashed             crash callbacks
//	POST /internal/v4/apps/{guid}/rescheduling        rescheduling callbacks
//	POST /internal/v4/apps/{guid}/readiness_changed   readiness callbacks
//	POST /staging/droplets/{guid}/upload              multipart droplet upload (async=true answers a job)
//	POST /staging/buildpack_cache/{guid}/upload       multipart build cache upload
//	GET  /v2/jobs/{id}                                upload job status
//	GET  /droplets/{guid}                             a stored droplet
//	GET  /staging/buildpack_cache/{guid}/download     a stored build cache
//	GET  /blobs/{name}                                a blob set with PutBlob (app bits, build caches)
//	PUT  /blobs/{name}                                store a blob (for curl: app bits to stage)
//	GET  /recorded/staging/{guid}                     the staging responses received (for curl)
//	GET  /recorded/apps/{guid}                        the callbacks received for a process guid (for curl)
//
// Other packages add routes with Handle (nsync's bulk endpoints, for
// example). Every method is safe for concurrent use. Sizes are bounded: a
// body larger than MaxBodyBytes is refused, and at most MaxRecords
// callbacks of each kind are kept per guid (the oldest are dropped).
package cctest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
)

// Bounds of what the double keeps.
const (
	// MaxBodyBytes bounds every request body (a droplet included).
	MaxBodyBytes = 512 << 20
	// MaxRecords bounds the callbacks kept per guid and kind.
	MaxRecords = 1000
)

// Controller is the double. The zero value is not usable; call New.
type Controller struct {
	mux *http.ServeMux

	mu          sync.Mutex
	stagings    map[string][]bm.StagingResponseForCC
	crashes     map[string][]bm.CrashedRequest
	reschedules map[string][]bm.ReschedulingRequest
	readiness   map[string][]bm.ReadinessChangedRequest
	droplets    map[string][]byte
	caches      map[string][]byte
	blobs       map[string][]byte
	jobs        map[string]*job
	nextJob     int
	jobPolls    int
	stagingCode int
	changed     chan struct{}
}

type job struct {
	polls  int
	status string
}

// New returns a controller double.
func New() *Controller {
	c := &Controller{
		mux: http.NewServeMux(), stagings: map[string][]bm.StagingResponseForCC{},
		crashes: map[string][]bm.CrashedRequest{}, reschedules: map[string][]bm.ReschedulingRequest{},
		readiness: map[string][]bm.ReadinessChangedRequest{}, droplets: map[string][]byte{},
		caches: map[string][]byte{}, blobs: map[string][]byte{}, jobs: map[string]*job{},
		jobPolls: 1, stagingCode: http.StatusOK, changed: make(chan struct{}),
	}
	c.mux.HandleFunc("POST /internal/v3/staging/{guid}/build_completed", c.stagingCompleted)
	c.mux.HandleFunc("POST /internal/staging/{guid}/completed", c.stagingCompleted)
	c.mux.HandleFunc("POST /internal/v4/apps/{guid}/crashed", record(c, c.crashes))
	c.mux.HandleFunc("POST /internal/v4/apps/{guid}/rescheduling", record(c, c.reschedules))
	c.mux.HandleFunc("POST /internal/v4/apps/{guid}/readiness_changed", record(c, c.readiness))
	c.mux.HandleFunc("POST /staging/droplets/{guid}/upload", c.upload("upload[droplet]", c.droplets))
	c.mux.HandleFunc("POST /staging/buildpack_cache/{guid}/upload", c.upload("upload[droplet]", c.caches))
	c.mux.HandleFunc("GET /v2/jobs/{id}", c.jobStatus)
	c.mux.HandleFunc("GET /droplets/{guid}", c.get(c.droplets))
	c.mux.HandleFunc("GET /staging/buildpack_cache/{guid}/download", c.get(c.caches))
	c.mux.HandleFunc("GET /blobs/{guid}", c.get(c.blobs))
	c.mux.HandleFunc("PUT /blobs/{guid}", c.putBlob)
	c.mux.HandleFunc("GET /recorded/staging/{guid}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, append([]bm.StagingResponseForCC{}, c.Stagings(r.PathValue("guid"))...))
	})
	c.mux.HandleFunc("GET /recorded/apps/{guid}", func(w http.ResponseWriter, r *http.Request) {
		g := r.PathValue("guid")
		writeJSON(w, map[string]any{
			"crashed":           append([]bm.CrashedRequest{}, c.Crashes(g)...),
			"rescheduling":      append([]bm.ReschedulingRequest{}, c.Reschedulings(g)...),
			"readiness_changed": append([]bm.ReadinessChangedRequest{}, c.ReadinessChanges(g)...),
		})
	})
	return c
}

// Handler serves the double's routes.
func (c *Controller) Handler() http.Handler { return c.mux }

// Handle adds a route (a net/http ServeMux pattern) to the double.
func (c *Controller) Handle(pattern string, h http.Handler) { c.mux.Handle(pattern, h) }

// SetJobPolls sets how many polls an upload job answers "running" before
// "finished" (default 1: the first poll already says finished).
func (c *Controller) SetJobPolls(n int) {
	c.mu.Lock()
	c.jobPolls = n
	c.mu.Unlock()
}

// SetStagingStatus sets the status the staging callback answers (default 200).
func (c *Controller) SetStagingStatus(code int) {
	c.mu.Lock()
	c.stagingCode = code
	c.mu.Unlock()
}

// PutBlob stores a blob served at /blobs/{name}.
func (c *Controller) PutBlob(name string, data []byte) {
	c.mu.Lock()
	c.blobs[name] = data
	c.mu.Unlock()
}

// notifyLocked wakes everyone waiting for a change; c.mu is held.
func (c *Controller) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func appendBounded[T any](m map[string][]T, key string, v T) {
	s := append(m[key], v)
	if len(s) > MaxRecords {
		s = s[len(s)-MaxRecords:]
	}
	m[key] = s
}

func (c *Controller) stagingCompleted(w http.ResponseWriter, r *http.Request) {
	var resp bm.StagingResponseForCC
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes)).Decode(&resp); err != nil {
		http.Error(w, "bad staging response: "+err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	code := c.stagingCode
	if code == http.StatusOK {
		appendBounded(c.stagings, r.PathValue("guid"), resp)
		c.notifyLocked()
	}
	c.mu.Unlock()
	w.WriteHeader(code)
}

func record[T any](c *Controller, into map[string][]T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var v T
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes)).Decode(&v); err != nil {
			http.Error(w, "bad body: "+err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		appendBounded(into, r.PathValue("guid"), v)
		c.notifyLocked()
		c.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}
}

func (c *Controller) upload(field string, into map[string][]byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		mr, err := r.MultipartReader()
		if err != nil {
			http.Error(w, "want a multipart upload: "+err.Error(), http.StatusBadRequest)
			return
		}
		var data []byte
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				http.Error(w, "bad multipart body: "+err.Error(), http.StatusBadRequest)
				return
			}
			if part.FormName() == field {
				if data, err = io.ReadAll(part); err != nil {
					http.Error(w, "reading "+field+": "+err.Error(), http.StatusBadRequest)
					return
				}
			}
		}
		if data == nil {
			http.Error(w, "missing form field "+field, http.StatusBadRequest)
			return
		}
		guid := r.PathValue("guid")
		c.mu.Lock()
		into[guid] = data
		c.nextJob++
		id := "job-" + strconv.Itoa(c.nextJob)
		c.jobs[id] = &job{status: bm.JobQueued}
		c.notifyLocked()
		c.mu.Unlock()
		var resp bm.JobResponse
		resp.Metadata.GUID, resp.Metadata.URL = id, "/v2/jobs/"+id
		resp.Entity.GUID, resp.Entity.Status = id, bm.JobQueued
		if r.URL.Query().Get("async") != "true" {
			resp.Entity.Status = bm.JobFinished
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(resp)
	}
}

func (c *Controller) jobStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c.mu.Lock()
	j, ok := c.jobs[id]
	if ok {
		j.polls++
		if j.polls >= c.jobPolls {
			j.status = bm.JobFinished
		} else {
			j.status = bm.JobRunning
		}
	}
	var resp bm.JobResponse
	if ok {
		resp.Metadata.GUID, resp.Metadata.URL = id, "/v2/jobs/"+id
		resp.Entity.GUID, resp.Entity.Status = id, j.status
	}
	c.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (c *Controller) putBlob(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		http.Error(w, fmt.Sprintf("blob: at most %d bytes: %v", MaxBodyBytes, err), http.StatusRequestEntityTooLarge)
		return
	}
	c.PutBlob(r.PathValue("guid"), data)
	w.WriteHeader(http.StatusCreated)
}

func (c *Controller) get(from map[string][]byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		data, ok := from[r.PathValue("guid")]
		c.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(data)
	}
}

// Stagings returns the staging responses received for a staging guid.
func (c *Controller) Stagings(guid string) []bm.StagingResponseForCC {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bm.StagingResponseForCC(nil), c.stagings[guid]...)
}

// Crashes returns the crash callbacks received for a process guid.
func (c *Controller) Crashes(guid string) []bm.CrashedRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bm.CrashedRequest(nil), c.crashes[guid]...)
}

// Reschedulings returns the rescheduling callbacks received for a process guid.
func (c *Controller) Reschedulings(guid string) []bm.ReschedulingRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bm.ReschedulingRequest(nil), c.reschedules[guid]...)
}

// ReadinessChanges returns the readiness callbacks received for a process guid.
func (c *Controller) ReadinessChanges(guid string) []bm.ReadinessChangedRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bm.ReadinessChangedRequest(nil), c.readiness[guid]...)
}

// Droplet returns the droplet uploaded for a guid and whether there is one.
func (c *Controller) Droplet(guid string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.droplets[guid]
	return d, ok
}

// BuildCache returns the build artifacts cache uploaded for an app guid.
func (c *Controller) BuildCache(guid string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.caches[guid]
	return d, ok
}

// Wait calls cond after every change until it returns true, or returns an
// error after timeout.
func (c *Controller) Wait(timeout time.Duration, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return fmt.Errorf("cctest: condition not met within %s", timeout)
		}
	}
}

// Server is the double serving on a listener.
type Server struct {
	*Controller
	srv *http.Server
	url string
}

// Listen serves a new double on addr ("127.0.0.1:0" picks a free port).
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cctest: listen on %s: %w", addr, err)
	}
	c := New()
	s := &Server{Controller: c, srv: &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}, url: "http://" + ln.Addr().String()}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// URL is the double's base URL.
func (s *Server) URL() string { return s.url }

// Close stops serving.
func (s *Server) Close() error { return s.srv.Close() }

// Run serves as an ifrit runner: ready at once, closed on a signal.
func (s *Server) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	close(ready)
	<-signals
	return s.Close()
}
