package debugserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tedsuo/ifrit"
)

// shutdownTimeout bounds the graceful HTTP shutdown on a signal.
const shutdownTimeout = 5 * time.Second

// Server is the debug HTTP server.
type Server struct {
	addr     string
	gatherer prometheus.Gatherer
	logger   lager.Logger

	mu    sync.Mutex
	bound string
}

var _ ifrit.Runner = (*Server)(nil)

// New returns a debug server for addr (port 0 picks a free port) exposing
// gatherer's metrics (prometheus.DefaultGatherer if nil).
func New(addr string, gatherer prometheus.Gatherer, logger lager.Logger) *Server {
	if gatherer == nil {
		gatherer = prometheus.DefaultGatherer
	}
	if logger == nil {
		logger = lager.NewLogger("debug")
	}
	return &Server{addr: addr, gatherer: gatherer, logger: logger.Session("debug-server")}
}

// Addr returns the bound address; valid after ready.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Run listens, closes ready and serves until a signal, then shuts down.
func (s *Server) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("debugserver: listening on %q: %w", s.addr, err)
	}
	s.mu.Lock()
	s.bound = ln.Addr().String()
	s.mu.Unlock()

	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.logger.Info("started", lager.Data{"addr": s.Addr()})
	close(ready)

	select {
	case err := <-errc:
		return fmt.Errorf("debugserver: serving on %s: %w", s.Addr(), err)
	case <-signals:
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("debugserver: %w", err)
	}
	s.logger.Info("stopped")
	return nil
}
