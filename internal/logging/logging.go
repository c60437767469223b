package logging

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"code.cloudfoundry.org/lager/v3"
)

// Levels accepted by [New].
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelError = "error"
	LevelFatal = "fatal"
)

// New returns a logger for component that writes lager JSON lines to stdout
// at level and above. level is one of debug, info, error or fatal.
func New(component string, level string) (lager.Logger, error) {
	return NewWithWriter(component, level, os.Stdout)
}

// NewWithWriter is [New] writing to w instead of stdout.
func NewWithWriter(component string, level string, w io.Writer) (lager.Logger, error) {
	min, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	logger := lager.NewLogger(component)
	logger.RegisterSink(lager.NewWriterSink(w, min))
	return &leveled{Logger: logger, min: min}, nil
}

// leveled is a lager logger that knows the lowest level its sinks write.
// lager formats every call (timestamp, message, a copy of the session's
// data) before its sinks filter by level, so a Debug or Info call below the
// level would cost that for nothing; here it returns at once. Its sessions
// keep the level.
type leveled struct {
	lager.Logger
	min lager.LogLevel
}

// RegisterSink adds a sink whose level this logger cannot know: from then
// on every call is formatted and the sinks filter.
func (l *leveled) RegisterSink(s lager.Sink) {
	l.Logger.RegisterSink(s)
	l.min = lager.DEBUG
}

// Session returns a session that keeps the level.
func (l *leveled) Session(task string, data ...lager.Data) lager.Logger {
	return &leveled{Logger: l.Logger.Session(task, data...), min: l.min}
}

// WithData returns a logger with data that keeps the level.
func (l *leveled) WithData(data lager.Data) lager.Logger {
	return &leveled{Logger: l.Logger.WithData(data), min: l.min}
}

// WithTraceInfo returns a logger with r's trace that keeps the level.
func (l *leveled) WithTraceInfo(r *http.Request) lager.Logger {
	return &leveled{Logger: l.Logger.WithTraceInfo(r), min: l.min}
}

// Debug logs at debug level, if the logger writes it.
func (l *leveled) Debug(action string, data ...lager.Data) {
	if l.min <= lager.DEBUG {
		l.Logger.Debug(action, data...)
	}
}

// Info logs at info level, if the logger writes it.
func (l *leveled) Info(action string, data ...lager.Data) {
	if l.min <= lager.INFO {
		l.Logger.Info(action, data...)
	}
}

// Enabled says whether logger writes at level: false only for a logger made
// by New (or a session of one) whose level is above it.
func Enabled(logger lager.Logger, level lager.LogLevel) bool {
	switch l := logger.(type) {
	case *leveled:
		return level >= l.min
	case LevelReporter:
		return l.Enabled(level)
	}
	return true
}

// LevelReporter is a logger wrapping another that tells [Enabled] whether
// it writes at a level (for example a session made on first use).
type LevelReporter interface {
	Enabled(level lager.LogLevel) bool
}

// ParseLevel maps debug, info, error or fatal (any case) to a lager level.
// The error names the bad value and the accepted ones.
func ParseLevel(level string) (lager.LogLevel, error) {
	switch strings.ToLower(strings.TrimSpace(level)) {
	case LevelDebug:
		return lager.DEBUG, nil
	case LevelInfo:
		return lager.INFO, nil
	case LevelError:
		return lager.ERROR, nil
	case LevelFatal:
		return lager.FATAL, nil
	default:
		return lager.INFO, fmt.Errorf("logging: unknown log level %q: want debug, info, error or fatal", level)
	}
}

type loggerKey struct{}
type requestIDKey struct{}

// NewContext returns a copy of ctx carrying logger.
func NewContext(ctx context.Context, logger lager.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, logger)
}

// FromContext returns the logger stored in ctx by [NewContext], or fallback
// when there is none.
func FromContext(ctx context.Context, fallback lager.Logger) lager.Logger {
	if l, ok := ctx.Value(loggerKey{}).(lager.Logger); ok && l != nil {
		return l
	}
	return fallback
}

// WithRequestID returns a copy of ctx carrying the request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id stored in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
