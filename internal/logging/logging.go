package logging

import (
	"context"
	"fmt"
	"io"
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
	return logger, nil
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
