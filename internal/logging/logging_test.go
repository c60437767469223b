package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/logging"
)

func TestLevels(t *testing.T) {
	cases := []struct {
		level      string
		wantDebug  bool
		wantInfo   bool
		wantErrors bool
	}{
		{"debug", true, true, true},
		{"info", false, true, true},
		{"INFO", false, true, true},
		{"error", false, false, true},
		{"fatal", false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.level, func(t *testing.T) {
			var buf bytes.Buffer
			logger, err := logging.NewWithWriter("bbs", tc.level, &buf)
			require.NoError(t, err)
			logger.Debug("d")
			logger.Info("i", lager.Data{"k": "v"})
			logger.Error("e", errors.New("boom"))

			var msgs []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if line == "" {
					continue
				}
				var rec struct {
					Source  string         `json:"source"`
					Message string         `json:"message"`
					Data    map[string]any `json:"data"`
				}
				require.NoError(t, json.Unmarshal([]byte(line), &rec), "each line is JSON: %s", line)
				assert.Equal(t, "bbs", rec.Source)
				msgs = append(msgs, rec.Message)
			}
			assert.Equal(t, tc.wantDebug, contains(msgs, "bbs.d"))
			assert.Equal(t, tc.wantInfo, contains(msgs, "bbs.i"))
			assert.Equal(t, tc.wantErrors, contains(msgs, "bbs.e"))
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestBadLevelIsNamed(t *testing.T) {
	_, err := logging.New("bbs", "verbose")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"verbose"`)
}

func TestContext(t *testing.T) {
	fallback := lager.NewLogger("fallback")
	assert.Equal(t, fallback, logging.FromContext(context.Background(), fallback))

	l := lager.NewLogger("req")
	ctx := logging.NewContext(context.Background(), l)
	assert.Equal(t, l, logging.FromContext(ctx, fallback))

	assert.Equal(t, "", logging.RequestID(ctx))
	assert.Equal(t, "abc", logging.RequestID(logging.WithRequestID(ctx, "abc")))
}

// A call below the level costs nothing but its arguments: lager itself would
// format it (time, message, a copy of the data) before its sink dropped it. Sessions and
// loggers with data keep the level.
func TestCallsBelowTheLevelCostNothing(t *testing.T) {
	var buf bytes.Buffer
	logger, err := logging.NewWithWriter("bbs", "error", &buf)
	require.NoError(t, err)
	session := logger.Session("request", lager.Data{"method": "/x"}).WithData(lager.Data{"k": "v"})
	data := lager.Data{"duration": "1ms"}
	allocs := testing.AllocsPerRun(100, func() {
		logger.Debug("d", data)
		session.Debug("d", data)
		session.Info("i", data)
	})
	assert.LessOrEqual(t, allocs, 3.0, "at most each call's variadic argument")
	assert.Zero(t, buf.Len())
	assert.False(t, logging.Enabled(session, lager.INFO))
	assert.True(t, logging.Enabled(session, lager.ERROR))

	session.Error("e", errors.New("boom"))
	assert.Contains(t, buf.String(), `"message":"bbs.request.e"`)
	assert.Contains(t, buf.String(), `"k":"v"`, "the session's data is kept")
}

func TestCallsAtTheLevelAreWritten(t *testing.T) {
	var buf bytes.Buffer
	logger, err := logging.NewWithWriter("bbs", "debug", &buf)
	require.NoError(t, err)
	logger.Session("request").Debug("d")
	assert.Contains(t, buf.String(), `"message":"bbs.request.d"`)
	assert.True(t, logging.Enabled(logger, lager.DEBUG))
	assert.True(t, logging.Enabled(lager.NewLogger("plain"), lager.DEBUG), "a logger not made by New is assumed to write everything")
}

// A sink registered later may write any level, so nothing is skipped after it.
func TestRegisteredSinkGetsEveryLevel(t *testing.T) {
	var stdout, extra bytes.Buffer
	logger, err := logging.NewWithWriter("bbs", "error", &stdout)
	require.NoError(t, err)
	logger.RegisterSink(lager.NewWriterSink(&extra, lager.DEBUG))
	logger.Session("s").Debug("d")
	assert.Contains(t, extra.String(), `"message":"bbs.s.d"`)
	assert.Zero(t, stdout.Len(), "the first sink still filters by its level")
}
