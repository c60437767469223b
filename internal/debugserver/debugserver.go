package debugserver

import (
	"context"
	"crypto/tls"
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

	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/tlsconfig"
)

// shutdownTimeout bounds the graceful HTTP shutdown on a signal.
const shutdownTimeout = 5 * time.Second

// Options configure a [Server].
type Options struct {
	// Addr is the listen address (port 0 picks a free port). Without TLS it
	// must be a loopback address: the endpoints answer anyone who reaches
	// them.
	Addr string
	// Gatherer's metrics are served (prometheus.DefaultGatherer if nil).
	Gatherer prometheus.Gatherer
	// Logger is the base logger.
	Logger lager.Logger
	// TLS, when set, serves HTTPS and answers only clients whose verified
	// certificate has the role operator (internal/authz); it must require
	// client certificates (tlsconfig.Files.Server with a CA does).
	TLS *tls.Config
}

// Server is the debug HTTP server.
type Server struct {
	addr     string
	gatherer prometheus.Gatherer
	logger   lager.Logger
	tls      *tls.Config
	tlsFiles tlsconfig.Files // loaded into tls by Run

	mu    sync.Mutex
	bound string
}

var _ ifrit.Runner = (*Server)(nil)

// New returns a plaintext debug server for addr (port 0 picks a free port;
// loopback only) exposing gatherer's metrics (prometheus.DefaultGatherer if
// nil).
func New(addr string, gatherer prometheus.Gatherer, logger lager.Logger) *Server {
	return NewServer(Options{Addr: addr, Gatherer: gatherer, Logger: logger})
}

// NewServer returns a debug server; see Options.
func NewServer(opts Options) *Server {
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.DefaultGatherer
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("debug")
	}
	return &Server{addr: opts.Addr, gatherer: opts.Gatherer, logger: opts.Logger.Session("debug-server"), tls: opts.TLS}
}

// NewFromConfig returns the debug server of a daemon's debug_address and
// debug_tls (see CheckConfig): HTTPS for operators when files are set (they
// are loaded when it runs), plaintext on loopback otherwise.
func NewFromConfig(addr string, files tlsconfig.Files, gatherer prometheus.Gatherer, logger lager.Logger) *Server {
	s := NewServer(Options{Addr: addr, Gatherer: gatherer, Logger: logger})
	s.tlsFiles = files
	return s
}

// CheckConfig checks a daemon's debug_address and debug_tls without side
// effects: with debug_tls, its ca_file, cert_file and key_file are all
// required (client certificates of role operator); without, debug_address
// must be a loopback address. Errors name the field.
func CheckConfig(addr string, files tlsconfig.Files) error {
	if files.Enabled() {
		var errs []error
		for _, f := range []struct{ name, v string }{{"ca_file", files.CAFile}, {"cert_file", files.CertFile}, {"key_file", files.KeyFile}} {
			if f.v == "" {
				errs = append(errs, fmt.Errorf("debug_tls.%s: required: the debug server with TLS answers only operators' client certificates", f.name))
			}
		}
		return errors.Join(errs...)
	}
	if addr == "" {
		return nil
	}
	if err := CheckLoopback(addr); err != nil {
		return fmt.Errorf("debug_address: %w", err)
	}
	return nil
}

// CheckLoopback refuses an address that is not loopback (127.0.0.0/8, ::1,
// localhost) for a server without TLS.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address: metrics and pprof answer anyone who reaches them; listen on 127.0.0.1 or configure debug_tls (cert_file, key_file and the ca_file of operators' client certificates)", addr)
}

// Addr returns the bound address; valid after ready.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound
}

// Handler returns the server's routes (without the operator check of TLS).
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
	if s.tls == nil && s.tlsFiles.Enabled() {
		cfg, err := s.tlsFiles.Server()
		if err != nil {
			return fmt.Errorf("debugserver: debug_tls: %w", err)
		}
		s.tls = cfg
	}
	var handler http.Handler
	if s.tls == nil {
		if err := CheckLoopback(s.addr); err != nil {
			return fmt.Errorf("debugserver: %w", err)
		}
		handler = s.Handler()
	} else {
		if s.tls.ClientAuth != tls.RequireAndVerifyClientCert {
			return errors.New("debugserver: TLS without required client certificates: give debug_tls a ca_file")
		}
		handler = operatorsOnly(s.Handler())
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("debugserver: listening on %q: %w", s.addr, err)
	}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	s.mu.Lock()
	s.bound = ln.Addr().String()
	s.mu.Unlock()

	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.logger.Info("started", lager.Data{"addr": s.Addr(), "tls": s.tls != nil})
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

// operatorsOnly answers only requests whose verified client certificate has
// the role operator: 403 naming the caller's role otherwise.
func operatorsOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			http.Error(w, "the debug endpoints need a client certificate of role operator", http.StatusForbidden)
			return
		}
		id, err := authz.FromCertificate(r.TLS.VerifiedChains[0][0])
		if err != nil {
			http.Error(w, "the debug endpoints need a client certificate of role operator: "+err.Error(), http.StatusForbidden)
			return
		}
		if id.Role != authz.Operator {
			http.Error(w, fmt.Sprintf("role %s may not read the debug endpoints (allowed: operator)", id.Role), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
