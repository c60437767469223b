package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/garden"
	"github.com/gavelhq/gavel/rep/backend"
)

// Defaults and bounds.
const (
	// DefaultMaxBodyBytes bounds a JSON request body.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultStreamRetention is how long a finished stream id and an exited
	// process stay known.
	DefaultStreamRetention = time.Minute
	// DefaultOutputBufferChunks is the capacity of each stream's stdout and
	// stderr buffer, in writes.
	DefaultOutputBufferChunks = 4000
	// DefaultShutdownTimeout bounds the graceful HTTP shutdown.
	DefaultShutdownTimeout = 10 * time.Second
	// MaxHandleLength bounds container handles and process IDs.
	MaxHandleLength = 255
	// MaxPropertyNameLength bounds a property name.
	MaxPropertyNameLength = 1024
	// MaxPropertyValueLength bounds a property value.
	MaxPropertyValueLength = 64 << 10
	// MaxBulkHandles bounds the handles of one bulk_info or bulk_metrics.
	MaxBulkHandles = 10000
)

// Options configure a Server.
type Options struct {
	// ListenNetwork is "tcp" or "unix"; default "tcp".
	ListenNetwork string
	// ListenAddr is host:port (port 0 picks one, see Server.Addr) or the
	// socket path; required.
	ListenAddr string
	// DefaultGraceTime applies to a Create without grace_time; 0 (the
	// default) means such containers are never reaped.
	DefaultGraceTime time.Duration
	// Logger receives the server's logs; default a logger with no sink.
	Logger lager.Logger
	// Clock drives the reaper and stream retention; default the real clock.
	Clock clock.Clock
	// MaxBodyBytes bounds JSON request bodies; default 1 MiB.
	MaxBodyBytes int64
	// StreamRetention is how long finished streams and exited processes
	// stay known; default 1 min.
	StreamRetention time.Duration
	// OutputBufferChunks is each output stream's buffer, in writes; default 4000.
	OutputBufferChunks int
	// ShutdownTimeout bounds the graceful shutdown; default 10 s.
	ShutdownTimeout time.Duration
}

// Server serves the Garden API over a backend. It is an ifrit.Runner.
type Server struct {
	opts    Options
	backend backend.Backend
	logger  lager.Logger
	clock   clock.Clock
	mux     *http.ServeMux

	streams *streamer
	procs   *processTable
	reaper  *reaper

	// stopping is cancelled when Run is signalled: hijacked streams detach.
	stopping context.Context
	stop     context.CancelFunc

	mu         sync.Mutex
	addr       string
	destroying map[string]bool
}

var _ ifrit.Runner = (*Server)(nil)

// New builds a server over b. It does not listen until Run.
func New(b backend.Backend, opts Options) (*Server, error) {
	if b == nil {
		return nil, errors.New("garden server: backend is required")
	}
	if opts.ListenNetwork == "" {
		opts.ListenNetwork = "tcp"
	}
	if opts.ListenNetwork != "tcp" && opts.ListenNetwork != "unix" {
		return nil, fmt.Errorf("garden server: listen network %q: want tcp or unix", opts.ListenNetwork)
	}
	if opts.ListenAddr == "" {
		return nil, errors.New("garden server: listen address is required")
	}
	if opts.DefaultGraceTime < 0 {
		return nil, fmt.Errorf("garden server: negative default grace time %s", opts.DefaultGraceTime)
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("garden")
	}
	if opts.Clock == nil {
		opts.Clock = clock.NewClock()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.StreamRetention <= 0 {
		opts.StreamRetention = DefaultStreamRetention
	}
	if opts.OutputBufferChunks <= 0 {
		opts.OutputBufferChunks = DefaultOutputBufferChunks
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &Server{
		opts:       opts,
		backend:    b,
		logger:     opts.Logger.Session("garden-server"),
		clock:      opts.Clock,
		destroying: map[string]bool{},
	}
	s.stopping, s.stop = context.WithCancel(context.Background())
	s.streams = newStreamer(opts.Clock, opts.StreamRetention, opts.OutputBufferChunks)
	s.procs = newProcessTable(opts.Clock, opts.StreamRetention)
	s.reaper = newReaper(opts.Clock, s.reap)
	s.routes()
	return s, nil
}

// Handler returns the HTTP handler of every route.
func (s *Server) Handler() http.Handler { return s.mux }

// Addr returns the bound listen address (port 0 resolved); "" before Run is ready.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run listens, arms the reaper for existing containers, closes ready and
// serves until a signal arrives; then it detaches every process stream and
// shuts the HTTP server down.
func (s *Server) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	lis, err := s.listen()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.addr = lis.Addr().String()
	s.mu.Unlock()
	defer s.reaper.stopAll()

	if err := s.restoreGraceTimes(); err != nil {
		lis.Close()
		return err
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	s.logger.Info("started", lager.Data{"network": s.opts.ListenNetwork, "addr": s.Addr()})
	close(ready)

	select {
	case err := <-serveErr:
		s.stop()
		return fmt.Errorf("garden server: serving on %s: %w", s.Addr(), err)
	case sig := <-signals:
		s.logger.Info("stopping", lager.Data{"signal": sig.String()})
	}
	s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		s.logger.Info("shutdown-timed-out", lager.Data{"error": err.Error()})
		_ = srv.Close()
	}
	<-serveErr
	s.logger.Info("stopped")
	return nil
}

func (s *Server) listen() (net.Listener, error) {
	if s.opts.ListenNetwork == "unix" {
		if err := os.Remove(s.opts.ListenAddr); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("garden server: removing stale socket %s: %w", s.opts.ListenAddr, err)
		}
	}
	lis, err := net.Listen(s.opts.ListenNetwork, s.opts.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("garden server: listening on %s %s: %w", s.opts.ListenNetwork, s.opts.ListenAddr, err)
	}
	if s.opts.ListenNetwork == "unix" {
		if err := os.Chmod(s.opts.ListenAddr, 0o777); err != nil {
			lis.Close()
			return nil, fmt.Errorf("garden server: chmod socket %s: %w", s.opts.ListenAddr, err)
		}
	}
	return lis, nil
}

// restoreGraceTimes arms the reaper for every container the backend holds,
// with the grace time stored in its properties.
func (s *Server) restoreGraceTimes() error {
	ctx, cancel := context.WithTimeout(s.stopping, time.Minute)
	defer cancel()
	cs, err := s.backend.Containers(ctx, nil)
	if err != nil {
		return fmt.Errorf("garden server: listing containers for the reaper: %w", err)
	}
	for _, c := range cs {
		props, err := c.Properties(ctx)
		if err != nil {
			s.logger.Error("restore-grace-time", err, lager.Data{"handle": c.Handle()})
			continue
		}
		s.reaper.arm(c.Handle(), parseGraceTime(props))
	}
	return nil
}

// reap destroys a container whose grace time has passed.
func (s *Server) reap(handle string) {
	ctx, cancel := context.WithTimeout(s.stopping, time.Minute)
	defer cancel()
	logger := s.logger.Session("reap", lager.Data{"handle": handle})
	if err := s.destroy(ctx, handle); err != nil && !errors.Is(err, backend.ErrContainerNotFound) {
		logger.Error("failed", err)
		return
	}
	logger.Info("destroyed")
}

// destroy destroys a container unless another destroy of it is under way.
func (s *Server) destroy(ctx context.Context, handle string) error {
	s.mu.Lock()
	if s.destroying[handle] {
		s.mu.Unlock()
		return errors.New(garden.MessageAlreadyBeingDestroyed)
	}
	s.destroying[handle] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.destroying, handle)
		s.mu.Unlock()
	}()
	if err := s.backend.Destroy(ctx, handle); err != nil {
		return fmt.Errorf("destroy %s: %w", handle, err)
	}
	s.reaper.forget(handle)
	s.procs.forgetContainer(handle)
	return nil
}

// errUnsupported names a capability the backend lacks.
func errUnsupported(what string) error {
	return fmt.Errorf("%s is not supported by this Garden server's backend", what)
}

// gardenError converts an error to the body the client sees, and its status.
func gardenError(err error, handle, processID string) (*garden.Error, int) {
	switch {
	case errors.Is(err, backend.ErrContainerNotFound):
		err = garden.ContainerNotFoundError{Handle: handle}
	case errors.Is(err, backend.ErrProcessNotFound):
		err = garden.ProcessNotFoundError{ProcessID: processID}
	default:
		var ee *exec.Error
		if errors.As(err, &ee) {
			err = garden.ExecutableNotFoundError{Message: err.Error()}
		}
	}
	body := garden.NewError(err)
	switch body.Type {
	case garden.ErrorTypeContainerNotFound, garden.ErrorTypeProcessNotFound:
		return body, http.StatusNotFound
	default:
		return body, http.StatusInternalServerError
	}
}

// writeError answers with the Garden error body.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error, handle, processID string) {
	body, status := gardenError(err, handle, processID)
	s.logger.Error("request-failed", err, lager.Data{
		"method": r.Method, "path": r.URL.Path, "status": status, "request_id": r.Header.Get("X-Vcap-Request-Id"),
	})
	writeJSON(w, status, body)
}

// writeJSON answers with one JSON value and a newline.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// empty is the body of a success without data: {}.
type empty struct{}

// decodeBody reads a JSON request body of at most MaxBodyBytes.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	if err := json.NewDecoder(body).Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("request body larger than %d bytes", tooLarge.Limit)
		}
		return fmt.Errorf("decoding request body: %w", err)
	}
	_, _ = io.Copy(io.Discard, body)
	return nil
}
