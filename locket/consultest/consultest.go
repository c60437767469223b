// Package consultest is an in-process double of the Consul HTTP endpoints
// the locket Consul backend uses (sessions, KV with acquire and release,
// blocking queries). No Consul server can run on the machines Gavel is
// tested on; the double stands in for one in locket's tests, the daemons'
// tests and the integration suite.
package consultest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is an in-process double of the Consul HTTP endpoints the
// locket Consul backend uses. It models:
//
//   - sessions (PUT /v1/session/create, /v1/session/renew/:id,
//     /v1/session/destroy/:id, GET /v1/session/info/:id) with a TTL, a
//     behavior ("release" or "delete") and a lock-delay; a session not
//     renewed within its TTL is invalidated (Consul waits up to 2×TTL; the
//     double invalidates at the TTL, the stricter bound). Invalidation
//     releases or deletes the session's keys and starts each key's
//     lock-delay. Consul's 10 s minimum TTL is not enforced so tests can
//     use short TTLs; renewing an unknown session answers 404 as Consul does;
//   - KV (GET, PUT, DELETE /v1/kv/:key) with ?acquire= (refused while
//     another session holds the key or its lock-delay runs; acquiring with
//     an unknown session is a 500, as in Consul), ?release= (only by the
//     holding session), ?cas= on PUT and DELETE, ?recurse on GET;
//     Flags, Session, CreateIndex, ModifyIndex, LockIndex in the entries;
//   - blocking queries: ?index=N&wait=D on GET blocks until the KV index
//     passes N or D elapses, and every KV answer carries X-Consul-Index
//     (the double has one KV-wide index: Consul may also wake a query for
//     a change elsewhere, so clients must compare, as the backend does).
//
// It is strict: an unknown path, method or query parameter, or a body it
// cannot parse, is answered 400, and the test fails. Time is real; tests
// stop renewals with RefuseRenewals, or invalidate at once with Expire.
type Server struct {
	t   testing.TB
	srv *httptest.Server

	mu            sync.Mutex
	index         uint64
	changed       chan struct{} // closed and replaced on every KV change
	sessions      map[string]*doubleSession
	kv            map[string]*Entry
	delays        map[string]time.Time // key → end of its lock-delay
	nextID        int
	refuseRenewal bool
	requests      map[string]int // "METHOD /v1/area" → count
	stop          chan struct{}
}

type doubleSession struct {
	id        string
	ttl       time.Duration
	lockDelay time.Duration
	behavior  string
	expires   time.Time
}

type Entry struct {
	Key         string
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
	Flags       uint64
	Value       []byte
	Session     string `json:",omitempty"`
}

// New starts a double on a free loopback port; it stops when the test ends.
func New(t testing.TB) *Server {
	d := &Server{
		t:        t,
		index:    1,
		changed:  make(chan struct{}),
		sessions: map[string]*doubleSession{},
		kv:       map[string]*Entry{},
		delays:   map[string]time.Time{},
		requests: map[string]int{},
		stop:     make(chan struct{}),
	}
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	go d.reap()
	t.Cleanup(func() {
		close(d.stop)
		d.srv.CloseClientConnections()
		d.srv.Close()
	})
	return d
}

// Close stops serving (Consul unreachable); the test's end closes it too.
func (d *Server) Close() { d.srv.Close() }

// Addr is the double's host:port (loopback).
func (d *Server) Addr() string { return strings.TrimPrefix(d.srv.URL, "http://") }

// reap invalidates sessions past their TTL.
func (d *Server) reap() {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		d.mu.Lock()
		now := time.Now()
		for id, s := range d.sessions {
			if now.After(s.expires) {
				d.invalidateLocked(id)
			}
		}
		d.mu.Unlock()
	}
}

// RefuseRenewals makes renewals fail with 500 (Consul unreachable for
// renewals), so sessions expire after their TTL.
func (d *Server) RefuseRenewals(v bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refuseRenewal = v
}

// Expire invalidates every session holding key at once.
func (d *Server) Expire(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.kv[key]; ok && e.Session != "" {
		d.invalidateLocked(e.Session)
	}
}

// Entry returns a copy of key's entry.
func (d *Server) Entry(key string) (Entry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.kv[key]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// SessionCount returns the number of live sessions.
func (d *Server) SessionCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.sessions)
}

// RequestCount returns how many requests "METHOD /v1/area/op" got.
func (d *Server) RequestCount(what string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.requests[what]
}

func (d *Server) bumpLocked() uint64 {
	d.index++
	close(d.changed)
	d.changed = make(chan struct{})
	return d.index
}

func (d *Server) invalidateLocked(id string) {
	s, ok := d.sessions[id]
	if !ok {
		return
	}
	delete(d.sessions, id)
	now := time.Now()
	for key, e := range d.kv {
		if e.Session != id {
			continue
		}
		if s.lockDelay > 0 {
			d.delays[key] = now.Add(s.lockDelay)
		}
		if s.behavior == "delete" {
			delete(d.kv, key)
		} else {
			e.Session = ""
			e.ModifyIndex = d.index + 1
		}
		d.bumpLocked()
	}
}

func (d *Server) bad(w http.ResponseWriter, r *http.Request, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	d.t.Errorf("consul double: %s %s: %s", r.Method, r.URL, msg)
	http.Error(w, msg, http.StatusBadRequest)
}

// checkParams fails the request when it carries a parameter not in allowed.
func (d *Server) checkParams(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	for p := range r.URL.Query() {
		ok := false
		for _, a := range allowed {
			ok = ok || p == a
		}
		if !ok {
			d.bad(w, r, "unexpected parameter %q", p)
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (d *Server) serve(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	area := path
	if parts := strings.SplitN(path, "/", 5); len(parts) >= 4 {
		area = strings.Join(parts[:4], "/")
	}
	d.mu.Lock()
	d.requests[r.Method+" "+area]++
	d.mu.Unlock()
	switch {
	case strings.HasPrefix(path, "/v1/session/"):
		d.serveSession(w, r, strings.TrimPrefix(path, "/v1/session/"))
	case strings.HasPrefix(path, "/v1/kv/"):
		d.serveKV(w, r, strings.TrimPrefix(path, "/v1/kv/"))
	default:
		d.bad(w, r, "unknown path")
	}
}

func (d *Server) sessionJSON(s *doubleSession) map[string]any {
	return map[string]any{
		"ID": s.id, "Name": "", "Node": "double", "LockDelay": s.lockDelay,
		"Behavior": s.behavior, "TTL": s.ttl.String(), "NodeChecks": []string{},
	}
}

func (d *Server) serveSession(w http.ResponseWriter, r *http.Request, rest string) {
	op, id, _ := strings.Cut(rest, "/")
	if !d.checkParams(w, r) {
		return
	}
	switch {
	case op == "create" && r.Method == http.MethodPut:
		var body struct {
			Name       string
			LockDelay  string
			Behavior   string
			TTL        string
			NodeChecks []string
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			d.bad(w, r, "body: %v", err)
			return
		}
		ttl, err := time.ParseDuration(body.TTL)
		if err != nil || ttl <= 0 {
			d.bad(w, r, "TTL %q", body.TTL)
			return
		}
		var delay time.Duration
		if body.LockDelay != "" {
			if delay, err = time.ParseDuration(body.LockDelay); err != nil {
				d.bad(w, r, "LockDelay %q", body.LockDelay)
				return
			}
		} else {
			delay = 15 * time.Second // Consul's default lock-delay
		}
		if body.Behavior != "release" && body.Behavior != "delete" && body.Behavior != "" {
			d.bad(w, r, "Behavior %q", body.Behavior)
			return
		}
		if body.Behavior == "" {
			body.Behavior = "release"
		}
		if body.NodeChecks == nil || len(body.NodeChecks) != 0 {
			d.bad(w, r, "the double models sessions without health checks only")
			return
		}
		d.mu.Lock()
		d.nextID++
		s := &doubleSession{
			id: fmt.Sprintf("00000000-0000-0000-0000-%012d", d.nextID), ttl: ttl,
			lockDelay: delay, behavior: body.Behavior, expires: time.Now().Add(ttl),
		}
		d.sessions[s.id] = s
		d.mu.Unlock()
		writeJSON(w, map[string]string{"ID": s.id})
	case op == "renew" && r.Method == http.MethodPut && id != "":
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.refuseRenewal {
			http.Error(w, "renewals refused by the test", http.StatusInternalServerError)
			return
		}
		s, ok := d.sessions[id]
		if !ok {
			http.Error(w, "Session id '"+id+"' not found", http.StatusNotFound)
			return
		}
		s.expires = time.Now().Add(s.ttl)
		writeJSON(w, []any{d.sessionJSON(s)})
	case op == "destroy" && r.Method == http.MethodPut && id != "":
		d.mu.Lock()
		d.invalidateLocked(id)
		d.mu.Unlock()
		writeJSON(w, true)
	case op == "info" && r.Method == http.MethodGet && id != "":
		d.mu.Lock()
		defer d.mu.Unlock()
		w.Header().Set("X-Consul-Index", strconv.FormatUint(d.index, 10))
		if s, ok := d.sessions[id]; ok {
			writeJSON(w, []any{d.sessionJSON(s)})
			return
		}
		writeJSON(w, []any{})
	default:
		d.bad(w, r, "unknown session endpoint")
	}
}

func (d *Server) serveKV(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet:
		if !d.checkParams(w, r, "index", "wait", "recurse") {
			return
		}
		d.kvGet(w, r, key, q)
	case http.MethodPut:
		if !d.checkParams(w, r, "acquire", "release", "cas", "flags") {
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			d.bad(w, r, "body: %v", err)
			return
		}
		d.kvPut(w, r, key, q, body)
	case http.MethodDelete:
		if !d.checkParams(w, r, "cas") {
			return
		}
		d.kvDelete(w, r, key, q)
	default:
		d.bad(w, r, "method")
	}
}

func (d *Server) kvGet(w http.ResponseWriter, r *http.Request, key string, q url.Values) {
	var index uint64
	if s := q.Get("index"); s != "" {
		var err error
		if index, err = strconv.ParseUint(s, 10, 64); err != nil {
			d.bad(w, r, "index %q", s)
			return
		}
	}
	wait := 5 * time.Minute
	if s := q.Get("wait"); s != "" {
		var err error
		if wait, err = time.ParseDuration(s); err != nil {
			d.bad(w, r, "wait %q", s)
			return
		}
	}
	_, recurse := q["recurse"]
	deadline := time.Now().Add(wait)
	d.mu.Lock()
	for index > 0 && d.index <= index && time.Now().Before(deadline) {
		ch := d.changed
		d.mu.Unlock()
		timer := time.NewTimer(time.Until(deadline))
		select {
		case <-ch:
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return
		}
		timer.Stop()
		d.mu.Lock()
	}
	defer d.mu.Unlock()
	w.Header().Set("X-Consul-Index", strconv.FormatUint(d.index, 10))
	var out []Entry
	if recurse {
		for k, e := range d.kv {
			if strings.HasPrefix(k, key) {
				out = append(out, *e)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	} else if e, ok := d.kv[key]; ok {
		out = append(out, *e)
	}
	if len(out) == 0 {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	writeJSON(w, out)
}

func (d *Server) kvPut(w http.ResponseWriter, r *http.Request, key string, q url.Values, body []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, exists := d.kv[key]
	var flags uint64
	if s := q.Get("flags"); s != "" {
		var err error
		if flags, err = strconv.ParseUint(s, 10, 64); err != nil {
			d.bad(w, r, "flags %q", s)
			return
		}
	}
	set := func(session string, lock bool) {
		if !exists {
			e = &Entry{Key: key, CreateIndex: d.index + 1}
			d.kv[key] = e
		}
		e.Value, e.Flags, e.Session, e.ModifyIndex = body, flags, session, d.index+1
		if lock {
			e.LockIndex++
		}
		d.bumpLocked()
	}
	_, acquire := q["acquire"]
	_, release := q["release"]
	switch {
	case acquire && release:
		d.bad(w, r, "acquire and release together")
	case acquire:
		id := q.Get("acquire")
		if _, ok := d.sessions[id]; !ok {
			http.Error(w, "invalid session \""+id+"\"", http.StatusInternalServerError)
			return
		}
		if exists && e.Session == id {
			set(id, false)
			writeJSON(w, true)
			return
		}
		if (exists && e.Session != "") || time.Now().Before(d.delays[key]) {
			writeJSON(w, false)
			return
		}
		set(id, true)
		writeJSON(w, true)
	case release:
		id := q.Get("release")
		if !exists || e.Session != id {
			writeJSON(w, false)
			return
		}
		set("", false)
		writeJSON(w, true)
	case q.Has("cas"):
		cas, err := strconv.ParseUint(q.Get("cas"), 10, 64)
		if err != nil {
			d.bad(w, r, "cas %q", q.Get("cas"))
			return
		}
		if (cas == 0 && exists) || (cas != 0 && (!exists || e.ModifyIndex != cas)) {
			writeJSON(w, false)
			return
		}
		set(sessionOf(e), false)
		writeJSON(w, true)
	default:
		set(sessionOf(e), false)
		writeJSON(w, true)
	}
}

func sessionOf(e *Entry) string {
	if e == nil {
		return ""
	}
	return e.Session
}

func (d *Server) kvDelete(w http.ResponseWriter, r *http.Request, key string, q url.Values) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, exists := d.kv[key]
	if q.Has("cas") {
		cas, err := strconv.ParseUint(q.Get("cas"), 10, 64)
		if err != nil {
			d.bad(w, r, "cas %q", q.Get("cas"))
			return
		}
		if !exists || e.ModifyIndex != cas {
			writeJSON(w, false)
			return
		}
	}
	if exists {
		delete(d.kv, key)
		d.bumpLocked()
	}
	writeJSON(w, true)
}
