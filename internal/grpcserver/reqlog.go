package grpcserver

import (
	"bufio"
	"crypto/rand"
	"net/http"
	"sync"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"

	"github.com/gavelhq/gavel/internal/logging"
)

// requestLogger is the session "request" of parent, with the call's method
// and request id, made on first use. Most calls never log (a success logs
// at debug level), and a lager session costs two formatted strings and a
// copy of its data, so a call that does not log pays one small allocation.
type requestLogger struct {
	parent     lager.Logger
	method, id string
	once       sync.Once
	l          lager.Logger
}

var _ logging.LevelReporter = (*requestLogger)(nil)

func newRequestLogger(parent lager.Logger, method, id string) *requestLogger {
	return &requestLogger{parent: parent, method: method, id: id}
}

// session is the logger itself, made on the first call.
func (r *requestLogger) session() lager.Logger {
	r.once.Do(func() {
		r.l = r.parent.Session("request", lager.Data{"method": r.method, "request-id": r.id})
	})
	return r.l
}

// Enabled says whether the session writes at level: a session keeps its
// parent's level.
func (r *requestLogger) Enabled(level lager.LogLevel) bool { return logging.Enabled(r.parent, level) }

// RegisterSink adds a sink to the session.
func (r *requestLogger) RegisterSink(s lager.Sink) { r.session().RegisterSink(s) }

// Session returns a session of the request's session.
func (r *requestLogger) Session(task string, data ...lager.Data) lager.Logger {
	return r.session().Session(task, data...)
}

// SessionName is the session's task name.
func (r *requestLogger) SessionName() string { return r.session().SessionName() }

// Debug logs at debug level, if the session writes it.
func (r *requestLogger) Debug(action string, data ...lager.Data) {
	if r.Enabled(lager.DEBUG) {
		r.session().Debug(action, data...)
	}
}

// Info logs at info level, if the session writes it.
func (r *requestLogger) Info(action string, data ...lager.Data) {
	if r.Enabled(lager.INFO) {
		r.session().Info(action, data...)
	}
}

// Error logs at error level.
func (r *requestLogger) Error(action string, err error, data ...lager.Data) {
	r.session().Error(action, err, data...)
}

// Fatal logs at fatal level and panics, as lager does.
func (r *requestLogger) Fatal(action string, err error, data ...lager.Data) {
	r.session().Fatal(action, err, data...)
}

// WithData returns the session with data added.
func (r *requestLogger) WithData(data lager.Data) lager.Logger { return r.session().WithData(data) }

// WithTraceInfo returns the session with req's trace.
func (r *requestLogger) WithTraceInfo(req *http.Request) lager.Logger {
	return r.session().WithTraceInfo(req)
}

// requestIDs makes the random (version 4) UUIDs of calls that bring no
// request id. They are read from crypto/rand through a buffer: one read
// of the system's randomness per 256 ids instead of one per call.
type requestIDs struct {
	mu  sync.Mutex
	src *bufio.Reader
}

func newRequestIDs() *requestIDs {
	return &requestIDs{src: bufio.NewReaderSize(rand.Reader, 16*256)}
}

// next returns a new request id.
func (g *requestIDs) next() string {
	g.mu.Lock()
	id, err := uuid.NewRandomFromReader(g.src)
	g.mu.Unlock()
	if err != nil {
		// crypto/rand does not fail on a supported system; were it to,
		// uuid's own source is the fallback.
		return uuid.NewString()
	}
	return id.String()
}
