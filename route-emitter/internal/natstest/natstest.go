package natstest

import (
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/gavelhq/gavel/internal/freeport"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
)

// Server is an embedded NATS server that can be stopped and started again on the same port.
type Server struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

// Start runs a NATS server on a free loopback port with the given users
// (none: no authentication), stopped when the test ends.
func Start(t testing.TB, users ...*server.User) *Server {
	t.Helper()
	// A port chosen before the server binds it (it binds the same port again
	// on Restart), below the ephemeral range so nothing takes it in between.
	port, err := freeport.New().Port()
	if err != nil {
		t.Fatalf("natstest: finding a port: %v", err)
	}
	s := &Server{t: t, opts: server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true, Users: users}}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.t.Fatalf("natstest: server on port %d not ready", s.opts.Port)
	}
	s.srv = srv
}

// URL is the server's client URL, with user and password when given.
func (s *Server) URL(user, password string) string {
	if user == "" {
		return "nats://127.0.0.1:" + strconv.Itoa(s.opts.Port)
	}
	return "nats://" + user + ":" + password + "@127.0.0.1:" + strconv.Itoa(s.opts.Port)
}

// Stop shuts the server down (a no-op when stopped).
func (s *Server) Stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// Restart starts a stopped server again on the same port, with users.
func (s *Server) Restart(users ...*server.User) {
	s.t.Helper()
	s.Stop()
	s.opts.Users = users
	s.start()
}

// SetUsers changes the accepted users of the running server (a config reload).
func (s *Server) SetUsers(users ...*server.User) {
	s.t.Helper()
	opts := s.opts
	opts.Users = users
	if err := s.srv.ReloadOptions(&opts); err != nil {
		s.t.Fatalf("natstest: reloading users: %v", err)
	}
	s.opts.Users = users
}

// NumClients is the number of connected clients.
func (s *Server) NumClients() int { return s.srv.NumClients() }

// Received is one message a Router got.
type Received struct {
	Subject string
	Message routingtable.RegistryMessage
	Raw     map[string]any
	At      time.Time
}

// Router records router.register and router.unregister messages and can
// answer router.greet.
type Router struct {
	Conn *nats.Conn
	mu   sync.Mutex
	msgs []Received
	// greetInterval is what greets are answered with; 0 leaves greets unanswered.
	greetInterval int
}

// NewRouter connects a recording router to url; it reconnects forever.
func NewRouter(t testing.TB, url string) *Router {
	t.Helper()
	conn, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatalf("natstest: router connecting: %v", err)
	}
	t.Cleanup(conn.Close)
	r := &Router{Conn: conn}
	record := func(m *nats.Msg) {
		rec := Received{Subject: m.Subject, At: time.Now()}
		if err := json.Unmarshal(m.Data, &rec.Message); err != nil {
			t.Errorf("natstest: undecodable %s message %q: %v", m.Subject, m.Data, err)
		}
		_ = json.Unmarshal(m.Data, &rec.Raw)
		r.mu.Lock()
		r.msgs = append(r.msgs, rec)
		r.mu.Unlock()
	}
	for _, subj := range []string{"router.register", "router.unregister"} {
		if _, err := conn.Subscribe(subj, record); err != nil {
			t.Fatalf("natstest: subscribing: %v", err)
		}
	}
	if _, err := conn.Subscribe("router.greet", func(m *nats.Msg) {
		r.mu.Lock()
		interval := r.greetInterval
		r.mu.Unlock()
		if interval > 0 && m.Reply != "" {
			_ = conn.Publish(m.Reply, StartPayload(interval))
		}
	}); err != nil {
		t.Fatalf("natstest: subscribing: %v", err)
	}
	if err := conn.Flush(); err != nil {
		t.Fatalf("natstest: flushing: %v", err)
	}
	return r
}

// StartPayload is a router.start message advertising interval seconds.
func StartPayload(interval int) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": "0-router", "hosts": []string{"127.0.0.1"},
		"minimumRegisterIntervalInSeconds": interval, "pruneThresholdInSeconds": 120,
	})
	return b
}

// AnswerGreets makes the router answer greets advertising interval seconds.
func (r *Router) AnswerGreets(interval int) {
	r.mu.Lock()
	r.greetInterval = interval
	r.mu.Unlock()
}

// SendStart publishes router.start advertising interval seconds.
func (r *Router) SendStart(t testing.TB, interval int) {
	t.Helper()
	if err := r.Conn.Publish("router.start", StartPayload(interval)); err != nil {
		t.Fatalf("natstest: publishing router.start: %v", err)
	}
	_ = r.Conn.Flush()
}

// Messages returns what was received on subject ("" for all), in order.
func (r *Router) Messages(subject string) []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Received
	for _, m := range r.msgs {
		if subject == "" || m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}

// Reset forgets what was received.
func (r *Router) Reset() {
	r.mu.Lock()
	r.msgs = nil
	r.mu.Unlock()
}
