package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/tlsconfig"
)

// Defaults shared by the daemons.
const (
	DefaultBBSAddress = "127.0.0.1:8889"
	// ShutdownTimeout bounds the graceful stop of an HTTP API (in-flight
	// requests, an upload included, finish within it).
	ShutdownTimeout = 30 * time.Second
)

// Common are the fields every cc-bridge daemon's config has.
type Common struct {
	// ListenAddress is the daemon's HTTP API address. The APIs the
	// controller calls are plain HTTP on loopback by default; set
	// listen_tls to serve HTTPS (with its ca_file, clients must present a
	// certificate).
	ListenAddress string `json:"listen_address"`
	// ListenTLS is the API's server certificate and optional client CA.
	ListenTLS tlsconfig.Files `json:"listen_tls"`
	// DebugAddress serves /metrics and /debug/pprof (empty disables).
	DebugAddress string `json:"debug_address"`
	// LogLevel is debug, info, error or fatal (default info).
	LogLevel string `json:"log_level"`
}

// BBSConn says how to reach the BBS.
type BBSConn struct {
	// BBSAddresses are the host:port of every BBS replica (default ["127.0.0.1:8889"]).
	BBSAddresses []string `json:"bbs_addresses"`
	// BBSTLS is the client certificate presented to the BBS (of role
	// controller) and the CA the BBS's certificate must chain to; required
	// unless insecure_plaintext.
	BBSTLS tlsconfig.Files `json:"bbs_tls"`
	// InsecurePlaintext dials the BBS (and, for tps-listener, the reps)
	// without TLS; then no TLS files may be set. Development only (gavel dev).
	InsecurePlaintext bool `json:"insecure_plaintext"`
}

// CCConn says how to reach the controller.
type CCConn struct {
	// CCBaseURL is the controller's internal API, e.g. "http://127.0.0.1:9022".
	CCBaseURL string `json:"cc_base_url"`
	// CCUsername and CCPassword are the controller's basic-auth credentials (optional).
	CCUsername string `json:"cc_username"`
	// CCPassword is CCUsername's password.
	CCPassword string `json:"cc_password"`
	// CCTLS verifies an https controller against ca_file and presents
	// cert_file/key_file (optional: a plain-HTTP controller needs none).
	CCTLS tlsconfig.Files `json:"cc_tls"`
}

func (c Common) validate(errs *[]error) {
	if c.ListenAddress == "" {
		*errs = append(*errs, errors.New("listen_address: is required"))
	}
	if c.ListenTLS.Enabled() {
		if _, err := c.ListenTLS.Server(); err != nil {
			*errs = append(*errs, fmt.Errorf("listen_tls: %w", err))
		}
	}
}

func (b BBSConn) validate(errs *[]error, extra ...tlsconfig.Hop) {
	if len(b.BBSAddresses) == 0 {
		*errs = append(*errs, errors.New("bbs_addresses: at least one is required"))
	}
	hops := append([]tlsconfig.Hop{{Field: "bbs_tls", Files: b.BBSTLS, Role: tlsconfig.Client}}, extra...)
	*errs = append(*errs, tlsconfig.CheckMutual(b.InsecurePlaintext, hops...)...)
}

func (c CCConn) validate(errs *[]error, required bool) {
	if c.CCBaseURL == "" && !required {
		return
	}
	if u, err := url.Parse(c.CCBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		*errs = append(*errs, fmt.Errorf("cc_base_url: want http(s)://host:port (got %q)", c.CCBaseURL))
	}
	if c.CCTLS.Enabled() {
		if _, err := c.CCTLS.Client(""); err != nil {
			*errs = append(*errs, fmt.Errorf("cc_tls: %w", err))
		}
	}
}

func positive(errs *[]error, field string, d config.Duration) {
	if d.D() <= 0 {
		*errs = append(*errs, fmt.Errorf("%s: must be > 0 (got %s)", field, d))
	}
}

func validURL(errs *[]error, field, raw string) {
	if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		*errs = append(*errs, fmt.Errorf("%s: want http(s)://host:port (got %q)", field, raw))
	}
}

// ccClient is the HTTP client for the controller.
func (c CCConn) ccClient() (*http.Client, error) {
	if !c.CCTLS.Enabled() {
		return &http.Client{}, nil
	}
	tc, err := c.CCTLS.Client("")
	if err != nil {
		return nil, fmt.Errorf("cc_tls: %w", err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}, nil
}

// bbsClient dials the BBS.
func (b BBSConn) bbsClient(logger lager.Logger) (*client.Client, error) {
	var tc *tls.Config
	if b.InsecurePlaintext {
		logger.Info("bbs-without-tls", lager.Data{"warning": "insecure_plaintext: the calls to the BBS are plaintext; only for development"})
	} else {
		var err error
		if tc, err = b.BBSTLS.Client(""); err != nil {
			return nil, fmt.Errorf("bbs_tls: %w", err)
		}
	}
	c, err := client.New(client.Config{Addresses: b.BBSAddresses, TLS: tc})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// daemon is what the five daemons share: a registry, a debug server and
// an HTTP API server.
type daemon struct {
	name     string
	common   Common
	logger   lager.Logger
	registry *prometheus.Registry
	debug    *debugserver.Server
	api      *httpServer
}

func newDaemon(name string, common Common, logger lager.Logger) daemon {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return daemon{name: name, common: common, logger: logger, registry: reg}
}

// Registry is the daemon's Prometheus registry (served on the debug address).
func (d *daemon) Registry() *prometheus.Registry { return d.registry }

// Addr is the API's bound address once it serves ("" before, or for a daemon without an API).
func (d *daemon) Addr() string {
	if d.api == nil {
		return ""
	}
	return d.api.Addr()
}

// URL is the API's base URL once it serves.
func (d *daemon) URL() string {
	if d.api == nil || d.api.Addr() == "" {
		return ""
	}
	scheme := "http"
	if d.common.ListenTLS.Enabled() {
		scheme = "https"
	}
	return scheme + "://" + d.api.Addr()
}

// DebugAddr is the debug server's bound address once it serves.
func (d *daemon) DebugAddr() string {
	if d.debug == nil {
		return ""
	}
	return d.debug.Addr()
}

// members returns the debug server (when configured) followed by rest.
func (d *daemon) members(rest ...grouper.Member) ifrit.Runner {
	var members grouper.Members
	if d.common.DebugAddress != "" {
		d.debug = debugserver.New(d.common.DebugAddress, d.registry, d.logger)
		members = append(members, grouper.Member{Name: "debug", Runner: d.debug})
	}
	members = append(members, rest...)
	return grouper.NewOrdered(os.Interrupt, members)
}

// serve returns the API runner for a handler (built when the runner starts).
func (d *daemon) serve(build func() (http.Handler, error)) grouper.Member {
	d.api = &httpServer{addr: d.common.ListenAddress, tls: d.common.ListenTLS, build: build, logger: d.logger.Session("api")}
	return grouper.Member{Name: "api", Runner: d.api}
}

// httpServer is an ifrit runner serving one handler.
type httpServer struct {
	addr   string
	tls    tlsconfig.Files
	build  func() (http.Handler, error)
	logger lager.Logger

	mu    sync.Mutex
	bound string
}

// Addr is the bound address once ready.
func (s *httpServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound
}

// Run listens, closes ready, serves until a signal, then lets in-flight
// requests finish (up to ShutdownTimeout).
func (s *httpServer) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen_address %q: %w", s.addr, err)
	}
	if s.tls.Enabled() {
		tc, err := s.tls.Server()
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen_tls: %w", err)
		}
		ln = tls.NewListener(ln, tc)
	}
	s.mu.Lock()
	s.bound = ln.Addr().String()
	s.mu.Unlock()
	h, err := s.build() // after the listen: a handler may need the bound address
	if err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.logger.Info("serving", lager.Data{"addr": s.Addr(), "tls": s.tls.Enabled()})
	close(ready)
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", s.Addr(), err)
	case <-signals:
	}
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	s.logger.Info("stopped")
	return nil
}
