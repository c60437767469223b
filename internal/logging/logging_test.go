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
