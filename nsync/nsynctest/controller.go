// Package nsynctest holds nsync's test fixtures: a controller double that
// serves the controller's side of the bulk API (fingerprint pages, bulk app
// fetch, task states) from memory, and a real BBS for tests. A real Cloud
// Controller cannot run here; the double implements only what nsync calls.
package nsynctest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"

	"github.com/gavelhq/gavel/nsync/ccmessages"
)

// Controller is an in-memory controller double.
type Controller struct {
	// User and Password are the basic-auth credentials it requires.
	User, Password string

	srv *httptest.Server
	mux *http.ServeMux

	mu        sync.Mutex
	apps      map[string]ccmessages.DesireAppRequestFromCC
	tasks     map[string]ccmessages.TaskState
	failPage  int // 1-based fingerprint page answered 500; 0 for none
	down      bool
	pageFetch int
	callbacks []ccmessages.TaskFailResponse
}

// NewController starts a controller double; it stops when Close is called.
func NewController() *Controller {
	c := &Controller{User: "internal_user", Password: "internal-secret", apps: map[string]ccmessages.DesireAppRequestFromCC{}, tasks: map[string]ccmessages.TaskState{}, mux: http.NewServeMux()}
	c.mux.HandleFunc("GET /internal/bulk/apps", c.fingerprints)
	c.mux.HandleFunc("POST /internal/bulk/apps", c.bulkApps)
	c.mux.HandleFunc("GET /internal/v3/bulk/task_states", c.taskStates)
	c.mux.HandleFunc("POST /internal/task_callback/{guid}", c.taskCallback)
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	return c
}

// URL is the double's base URL.
func (c *Controller) URL() string { return c.srv.URL }

// Close stops the double.
func (c *Controller) Close() { c.srv.Close() }

// HandleFunc adds a route (net/http pattern), for callbacks other packages need.
func (c *Controller) HandleFunc(pattern string, h http.HandlerFunc) { c.mux.HandleFunc(pattern, h) }

func (c *Controller) serve(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	down := c.down
	c.mu.Unlock()
	if down {
		http.Error(w, "controller down", http.StatusServiceUnavailable)
		return
	}
	if u, p, ok := r.BasicAuth(); !ok || u != c.User || p != c.Password {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// SetApp adds or replaces an app.
func (c *Controller) SetApp(app ccmessages.DesireAppRequestFromCC) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.apps[app.ProcessGUID] = app
}

// RemoveApp deletes an app.
func (c *Controller) RemoveApp(guid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.apps, guid)
}

// SetTask adds or replaces a task state.
func (c *Controller) SetTask(ts ccmessages.TaskState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tasks[ts.TaskGUID] = ts
}

// FailPage makes the n-th fingerprint page (1-based) of every pass answer 500; 0 heals it.
func (c *Controller) FailPage(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failPage = n
}

// SetDown makes every request answer 503 (an outage) or heals it.
func (c *Controller) SetDown(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = down
}

// FailedCallbacks returns the task failures posted to the double's callback URLs.
func (c *Controller) FailedCallbacks() []ccmessages.TaskFailResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ccmessages.TaskFailResponse(nil), c.callbacks...)
}

// CallbackURL is a completion callback URL served by the double.
func (c *Controller) CallbackURL(taskGUID string) string {
	return c.srv.URL + "/internal/task_callback/" + taskGUID
}

type pageToken struct {
	ID int `json:"id"`
}

// page reads batch_size and the token's id (the offset) of a bulk request.
func page(r *http.Request) (size, offset int, err error) {
	size, err = strconv.Atoi(r.URL.Query().Get("batch_size"))
	if err != nil || size <= 0 {
		return 0, 0, fmt.Errorf("batch_size: must be a positive integer")
	}
	var tok pageToken
	if t := r.URL.Query().Get("token"); t != "" {
		if err := json.Unmarshal([]byte(t), &tok); err != nil {
			return 0, 0, fmt.Errorf("token: %w", err)
		}
	}
	return size, tok.ID, nil
}

func (c *Controller) fingerprints(w http.ResponseWriter, r *http.Request) {
	size, offset, err := page(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	if offset == 0 {
		c.pageFetch = 0
	}
	c.pageFetch++
	if c.failPage != 0 && c.pageFetch == c.failPage {
		c.mu.Unlock()
		http.Error(w, "page failed", http.StatusInternalServerError)
		return
	}
	guids := make([]string, 0, len(c.apps))
	for g := range c.apps {
		guids = append(guids, g)
	}
	sort.Strings(guids)
	end := min(offset+size, len(guids))
	start := min(offset, end)
	out := ccmessages.FingerprintsPage{Fingerprints: []ccmessages.Fingerprint{}}
	for _, g := range guids[start:end] {
		out.Fingerprints = append(out.Fingerprints, ccmessages.Fingerprint{ProcessGUID: g, ETag: c.apps[g].ETag})
	}
	c.mu.Unlock()
	out.Token, _ = json.Marshal(pageToken{ID: end})
	writeJSON(w, out)
}

func (c *Controller) bulkApps(w http.ResponseWriter, r *http.Request) {
	var guids []string
	if err := json.NewDecoder(r.Body).Decode(&guids); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	out := make([]ccmessages.DesireAppRequestFromCC, 0, len(guids))
	for _, g := range guids {
		if a, ok := c.apps[g]; ok {
			out = append(out, a)
		}
	}
	c.mu.Unlock()
	writeJSON(w, out)
}

func (c *Controller) taskStates(w http.ResponseWriter, r *http.Request) {
	size, offset, err := page(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	guids := make([]string, 0, len(c.tasks))
	for g := range c.tasks {
		guids = append(guids, g)
	}
	sort.Strings(guids)
	end := min(offset+size, len(guids))
	start := min(offset, end)
	out := ccmessages.TaskStatesPage{TaskStates: []ccmessages.TaskState{}}
	for _, g := range guids[start:end] {
		out.TaskStates = append(out.TaskStates, c.tasks[g])
	}
	c.mu.Unlock()
	out.Token, _ = json.Marshal(pageToken{ID: end})
	writeJSON(w, out)
}

func (c *Controller) taskCallback(w http.ResponseWriter, r *http.Request) {
	var resp ccmessages.TaskFailResponse
	if err := json.NewDecoder(r.Body).Decode(&resp); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.callbacks = append(c.callbacks, resp)
	c.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
