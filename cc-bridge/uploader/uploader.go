// Package uploader is cc-uploader: it relays droplets and build artifact
// caches that cells POST as raw bodies to the controller as multipart
// uploads with async=true, then polls the controller's job until it is
// finished (201), failed (500) or unknown (500), as Diego's cc-uploader does.
//
//	POST /v1/droplet/{guid}?cc-droplet-upload-uri=URL[&timeout=SECONDS]
//	POST /v1/build_artifacts/{app_guid}?cc-build-artifacts-upload-uri=URL[&timeout=SECONDS]
//
// A missing or invalid parameter is a 400 naming it; the controller's own
// error status is passed through; a transport error or a job that does not
// finish in time is a 500. Bodies are streamed, never held in memory.
package uploader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"

	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
)

// Defaults of Options.
const (
	DefaultTimeout      = 5 * time.Minute
	DefaultPollInterval = time.Second
	// MaxTimeout bounds a request's timeout parameter.
	MaxTimeout = time.Hour
	// MaxJobResponseBytes bounds a controller's job answer.
	MaxJobResponseBytes = 1 << 20
)

// Options configure an Uploader.
type Options struct {
	// CCClient talks to the controller (default a client without a global
	// timeout: each upload is bounded by its own).
	CCClient *http.Client
	// PollInterval is the wait between job polls (default 1 s).
	PollInterval time.Duration
	// DefaultTimeout bounds an upload and its job when the request gives none (default 5 min).
	DefaultTimeout time.Duration
	// AllowedHost, when set ("host:port"), is the only controller upload URIs
	// may name; others are refused with 400, so the relay cannot be used to
	// post to arbitrary hosts.
	AllowedHost string
	// CCUsername and CCPassword are basic-auth credentials for the
	// controller when the upload URI carries none (optional).
	CCUsername, CCPassword string
	// Registry receives the uploader's metrics (optional).
	Registry prometheus.Registerer
	// Logger; default a logger with no sinks.
	Logger lager.Logger
}

// Uploader relays uploads. Safe for concurrent use.
type Uploader struct {
	opts     Options
	uploads  *prometheus.CounterVec
	duration prometheus.Histogram
}

// New returns an uploader.
func New(opts Options) *Uploader {
	if opts.CCClient == nil {
		opts.CCClient = &http.Client{}
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.DefaultTimeout <= 0 {
		opts.DefaultTimeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("cc-uploader")
	}
	u := &Uploader{
		opts: opts,
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_cc_uploader_uploads_total", Help: "Uploads relayed, by kind and outcome.",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gavel_cc_uploader_upload_duration_seconds", Help: "Time from receiving an upload to the controller's job finishing.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
	}
	if opts.Registry != nil {
		opts.Registry.MustRegister(u.uploads, u.duration)
	}
	return u
}

// Handler returns the upload routes and GET /health.
func (u *Uploader) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/droplet/{guid}", u.relay("droplet", "cc-droplet-upload-uri", "droplet.tgz"))
	mux.HandleFunc("POST /v1/build_artifacts/{guid}", u.relay("build_artifacts", "cc-build-artifacts-upload-uri", "buildpack_cache.tgz"))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux
}

// errStatus is an error that carries the status to answer.
type errStatus struct {
	code int
	err  error
}

func (e *errStatus) Error() string { return e.err.Error() }
func (e *errStatus) Unwrap() error { return e.err }

func fail(code int, format string, args ...any) error {
	return &errStatus{code: code, err: fmt.Errorf(format, args...)}
}

func (u *Uploader) relay(kind, uriParam, filename string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		logger := u.opts.Logger.Session("upload", lager.Data{"kind": kind, "guid": r.PathValue("guid")})
		err := u.upload(r, logger, uriParam, filename)
		if err != nil {
			code := http.StatusInternalServerError
			var es *errStatus
			if errors.As(err, &es) {
				code = es.code
			}
			logger.Error("failed", err, lager.Data{"status": code})
			u.uploads.WithLabelValues(kind, "failed").Inc()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(bm.ErrorResponse{Error: err.Error()})
			return
		}
		u.uploads.WithLabelValues(kind, "succeeded").Inc()
		u.duration.Observe(time.Since(began).Seconds())
		logger.Info("succeeded", lager.Data{"took": time.Since(began).String()})
		w.WriteHeader(http.StatusCreated)
	}
}

func (u *Uploader) upload(r *http.Request, logger lager.Logger, uriParam, filename string) error {
	q := r.URL.Query()
	raw := q.Get(uriParam)
	if raw == "" {
		return fail(http.StatusBadRequest, "%s: is required", uriParam)
	}
	target, err := url.Parse(raw)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return fail(http.StatusBadRequest, "%s: want an absolute http(s) URL (got %q)", uriParam, raw)
	}
	if u.opts.AllowedHost != "" && target.Host != u.opts.AllowedHost {
		return fail(http.StatusBadRequest, "%s: host %q is not the controller's %q", uriParam, target.Host, u.opts.AllowedHost)
	}
	timeout := u.opts.DefaultTimeout
	if t := q.Get("timeout"); t != "" {
		secs, err := strconv.Atoi(t)
		if err != nil || secs <= 0 || time.Duration(secs)*time.Second > MaxTimeout {
			return fail(http.StatusBadRequest, "timeout: want whole seconds in [1, %d] (got %q)", int(MaxTimeout/time.Second), t)
		}
		timeout = time.Duration(secs) * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	tq := target.Query()
	tq.Set("async", "true")
	target.RawQuery = tq.Encode()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile("upload[droplet]", filename)
		if err == nil {
			_, err = io.Copy(part, r.Body)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), pr)
	if err != nil {
		return fail(http.StatusBadRequest, "%s: %v", uriParam, err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	u.auth(req, target)
	resp, err := u.opts.CCClient.Do(req)
	if err != nil {
		_ = pr.CloseWithError(err)
		return fmt.Errorf("uploading to the controller %s: %w", redacted(target), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fail(resp.StatusCode, "the controller answered %s: %s", resp.Status, msg)
	}
	var job bm.JobResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, MaxJobResponseBytes)).Decode(&job); err != nil {
		return fmt.Errorf("the controller's upload answer is not a job: %w", err)
	}
	logger.Info("uploaded", lager.Data{"job": job.Metadata.URL, "status": job.Entity.Status})
	return u.poll(ctx, target, job)
}

// poll follows the job until finished.
func (u *Uploader) poll(ctx context.Context, target *url.URL, job bm.JobResponse) error {
	for {
		switch job.Entity.Status {
		case bm.JobFinished:
			return nil
		case bm.JobFailed:
			return fmt.Errorf("the controller's upload job %s failed", job.Metadata.GUID)
		case bm.JobQueued, bm.JobRunning:
		default:
			return fmt.Errorf("the controller's upload job %s has unknown status %q", job.Metadata.GUID, job.Entity.Status)
		}
		if job.Metadata.URL == "" {
			return fmt.Errorf("the controller's upload job has no url (status %q)", job.Entity.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the controller's upload job %s: %w", job.Metadata.GUID, ctx.Err())
		case <-time.After(u.opts.PollInterval):
		}
		ref, err := url.Parse(job.Metadata.URL)
		if err != nil {
			return fmt.Errorf("the controller's job url %q: %w", job.Metadata.URL, err)
		}
		jobURL := target.ResolveReference(ref)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, jobURL.String(), nil)
		if err != nil {
			return err
		}
		u.auth(req, target)
		resp, err := u.opts.CCClient.Do(req)
		if err != nil {
			return fmt.Errorf("polling the controller's job %s: %w", redacted(jobURL), err)
		}
		func() {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("polling the controller's job %s: %s", redacted(jobURL), resp.Status)
				return
			}
			job = bm.JobResponse{}
			err = json.NewDecoder(io.LimitReader(resp.Body, MaxJobResponseBytes)).Decode(&job)
		}()
		if err != nil {
			return err
		}
	}
}

func (u *Uploader) auth(req *http.Request, target *url.URL) {
	if target.User != nil {
		pw, _ := target.User.Password()
		req.SetBasicAuth(target.User.Username(), pw)
	} else if u.opts.CCUsername != "" {
		req.SetBasicAuth(u.opts.CCUsername, u.opts.CCPassword)
	}
}

func redacted(u *url.URL) string { return u.Redacted() }
