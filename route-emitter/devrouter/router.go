package devrouter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/route-emitter/broadcast"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
)

// Subjects the router reads.
const (
	RegisterSubject   = "router.register"
	UnregisterSubject = "router.unregister"
)

// Defaults.
const (
	// DefaultStaleThreshold is an endpoint's life without a new
	// registration when its message names none (gorouter's default).
	DefaultStaleThreshold = 120 * time.Second
	// DefaultRegisterInterval is the interval announced in router.start.
	DefaultRegisterInterval = 20 * time.Second
	// DefaultMaxEndpoints bounds the table (endpoints over all routes).
	DefaultMaxEndpoints = 10000
)

// Config configures a Router.
type Config struct {
	// ListenAddress is the HTTP address (host:port; port 0 picks a free one).
	ListenAddress string
	// NATSURL is the NATS server the registrations arrive on.
	NATSURL string
	// StaleThreshold is used for messages without stale_threshold_in_seconds (default 120 s).
	StaleThreshold time.Duration
	// RegisterInterval is announced as minimumRegisterIntervalInSeconds (default 20 s).
	RegisterInterval time.Duration
	// PruneInterval is the time between prunes (default a quarter of the smaller of the two above).
	PruneInterval time.Duration
	// MaxEndpoints bounds the table; registrations beyond it are dropped and logged (default 10000).
	MaxEndpoints int
}

func (c Config) withDefaults() Config {
	if c.StaleThreshold <= 0 {
		c.StaleThreshold = DefaultStaleThreshold
	}
	if c.RegisterInterval <= 0 {
		c.RegisterInterval = DefaultRegisterInterval
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = min(c.StaleThreshold, c.RegisterInterval) / 4
	}
	if c.MaxEndpoints <= 0 {
		c.MaxEndpoints = DefaultMaxEndpoints
	}
	return c
}

// endpoint is one backend of a route.
type endpoint struct {
	addr     string // host:port
	app      string
	instance string
	index    string
	expires  time.Time
}

// pool is a route's endpoints with its round-robin position.
type pool struct {
	endpoints []*endpoint
	next      int
}

// Router is an ifrit runner serving HTTP by the registrations it reads.
type Router struct {
	cfg    Config
	logger lager.Logger

	mu     sync.Mutex
	routes map[string]*pool // "host" or "host/path", lowercase host
	count  int
	addr   string
	ready  chan struct{}
}

var _ ifrit.Runner = (*Router)(nil)

// New returns a router; Run starts it.
func New(cfg Config, logger lager.Logger) *Router {
	return &Router{cfg: cfg.withDefaults(), logger: logger, routes: map[string]*pool{}, ready: make(chan struct{})}
}

// Addr is the address the router listens on, once it is ready.
func (r *Router) Addr() string {
	<-r.ready
	return r.addr
}

// Run listens, subscribes, announces itself and serves until signalled.
func (r *Router) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	l, err := net.Listen("tcp", r.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("dev router: listen on %s: %w", r.cfg.ListenAddress, err)
	}
	conn, err := nats.Connect(r.cfg.NATSURL, nats.Name("gavel-dev-router"), nats.MaxReconnects(-1))
	if err != nil {
		l.Close()
		return fmt.Errorf("dev router: nats %s: %w", r.cfg.NATSURL, err)
	}
	defer conn.Close()
	id := "gavel-dev-router-" + strconv.Itoa(os.Getpid())
	start, _ := json.Marshal(broadcast.StartMessage{
		ID: id, Hosts: []string{l.Addr().String()},
		MinimumRegisterIntervalInSeconds: int(max(r.cfg.RegisterInterval/time.Second, 1)),
		PruneThresholdInSeconds:          int(r.cfg.StaleThreshold / time.Second),
	})
	subs := []struct {
		subject string
		handler nats.MsgHandler
	}{
		{RegisterSubject, func(m *nats.Msg) { r.handle(m.Data, true) }},
		{UnregisterSubject, func(m *nats.Msg) { r.handle(m.Data, false) }},
		{broadcast.GreetSubject, func(m *nats.Msg) {
			if m.Reply != "" {
				_ = conn.Publish(m.Reply, start)
			}
		}},
	}
	for _, s := range subs {
		if _, err := conn.Subscribe(s.subject, s.handler); err != nil {
			l.Close()
			return fmt.Errorf("dev router: subscribe %s: %w", s.subject, err)
		}
	}
	if err := conn.Flush(); err != nil {
		l.Close()
		return fmt.Errorf("dev router: nats: %w", err)
	}
	if err := conn.Publish(broadcast.StartSubject, start); err != nil {
		r.logger.Error("router-start-failed", err)
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	r.addr = l.Addr().String()
	close(r.ready)
	r.logger.Info("listening", lager.Data{"address": r.addr, "nats": r.cfg.NATSURL})
	close(ready)
	prune := time.NewTicker(r.cfg.PruneInterval)
	defer prune.Stop()
	for {
		select {
		case now := <-prune.C:
			r.prune(now)
		case err := <-served:
			return fmt.Errorf("dev router: %w", err)
		case <-signals:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			return nil
		}
	}
}

// handle applies one register or unregister message.
func (r *Router) handle(data []byte, register bool) {
	var m routingtable.RegistryMessage
	if err := json.Unmarshal(data, &m); err != nil {
		r.logger.Error("bad-registry-message", err)
		return
	}
	if m.Host == "" || m.Port == 0 {
		return // a TLS-only or empty endpoint: not routable here
	}
	stale := r.cfg.StaleThreshold
	if m.StaleThresholdInSeconds > 0 {
		stale = time.Duration(m.StaleThresholdInSeconds) * time.Second
	}
	addr := net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, uri := range m.URIs {
		key := routeKey(uri)
		if key == "" {
			continue
		}
		if register {
			r.register(key, &endpoint{addr: addr, app: m.App, instance: m.PrivateInstanceID, index: m.PrivateInstanceIndex, expires: now.Add(stale)})
		} else {
			r.unregister(key, addr)
		}
	}
}

// routeKey is a URI with its host lowercased and no trailing slash.
func routeKey(uri string) string {
	host, path, _ := strings.Cut(uri, "/")
	host = strings.ToLower(host)
	if host == "" {
		return ""
	}
	if path = strings.TrimSuffix(path, "/"); path != "" {
		return host + "/" + path
	}
	return host
}

func (r *Router) register(key string, e *endpoint) {
	p := r.routes[key]
	if p == nil {
		p = &pool{}
	}
	for i, old := range p.endpoints {
		if old.addr == e.addr {
			p.endpoints[i] = e
			r.routes[key] = p
			return
		}
	}
	if r.count >= r.cfg.MaxEndpoints {
		r.logger.Error("table-full", errors.New("registration dropped"), lager.Data{"route": key, "endpoint": e.addr, "max_endpoints": r.cfg.MaxEndpoints})
		return
	}
	p.endpoints = append(p.endpoints, e)
	r.routes[key] = p
	r.count++
}

func (r *Router) unregister(key, addr string) {
	p := r.routes[key]
	if p == nil {
		return
	}
	for i, e := range p.endpoints {
		if e.addr == addr {
			p.endpoints = append(p.endpoints[:i], p.endpoints[i+1:]...)
			r.count--
			break
		}
	}
	if len(p.endpoints) == 0 {
		delete(r.routes, key)
	}
}

// prune drops endpoints whose stale threshold passed without a registration.
func (r *Router) prune(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, p := range r.routes {
		kept := p.endpoints[:0]
		for _, e := range p.endpoints {
			if now.Before(e.expires) {
				kept = append(kept, e)
			} else {
				r.count--
				r.logger.Info("pruned-stale-endpoint", lager.Data{"route": key, "endpoint": e.addr})
			}
		}
		p.endpoints = kept
		if len(kept) == 0 {
			delete(r.routes, key)
		}
	}
}

// Endpoints returns the table: each route's endpoint addresses, sorted.
func (r *Router) Endpoints() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.routes))
	for key, p := range r.routes {
		for _, e := range p.endpoints {
			out[key] = append(out[key], e.addr)
		}
		sort.Strings(out[key])
	}
	return out
}

// pick chooses the next endpoint of the longest route matching host and
// path, round-robin; the route key is returned too.
func (r *Router) pick(host, path string) (string, *endpoint) {
	host = strings.ToLower(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	segments := strings.Split(strings.Trim(path, "/"), "/")
	r.mu.Lock()
	defer r.mu.Unlock()
	for n := len(segments); n >= 0; n-- {
		key := host
		if n > 0 && segments[0] != "" {
			key += "/" + strings.Join(segments[:n], "/")
		} else if n > 0 {
			continue
		}
		if p := r.routes[key]; p != nil && len(p.endpoints) > 0 {
			e := p.endpoints[p.next%len(p.endpoints)]
			p.next = (p.next + 1) % len(p.endpoints)
			return key, e
		}
	}
	return "", nil
}

// ServeHTTP routes one request.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	route, e := r.pick(req.Host, req.URL.Path)
	if e == nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Cf-Routererror", "unknown_route")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "404 Not Found: no route is registered for host %q (gavel routes lists the routes; push with --route %s)\n", req.Host, hostOnly(req.Host))
		return
	}
	target := &url.URL{Scheme: "http", Host: e.addr}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Cf-Routererror", "endpoint_failure")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "502 Bad Gateway: route %s, endpoint %s (app %s, instance %s, index %s) failed: %v\n", route, e.addr, e.app, e.instance, e.index, err)
		},
	}
	proxy.ServeHTTP(w, req)
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}
