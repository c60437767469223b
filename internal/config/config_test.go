package config_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/config"
)

type sample struct {
	Name     string          `json:"name"`
	Port     int             `json:"port"`
	Interval config.Duration `json:"interval"`
	Nested   struct {
		Enabled bool `json:"enabled"`
	} `json:"nested"`
}

func write(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "daemon.json")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

func TestLoad(t *testing.T) {
	t.Run("overrides defaults and keeps the rest", func(t *testing.T) {
		path := write(t, `{"port": 8889, "interval": "1m30s"}`)
		got := sample{Name: "default", Port: 1}
		require.NoError(t, config.Load(path, &got))
		assert.Equal(t, "default", got.Name)
		assert.Equal(t, 8889, got.Port)
		assert.Equal(t, 90*time.Second, got.Interval.D())
	})

	cases := []struct {
		name  string
		body  string
		wants []string
	}{
		{"unknown top-level field", `{"nmae": "x"}`, []string{"daemon.json", `"nmae"`}},
		{"unknown nested field", `{"nested": {"enabeld": true}}`, []string{"daemon.json", `"enabeld"`}},
		{"wrong type", `{"port": "eighty"}`, []string{"daemon.json", `"port"`, "offset", "line 1"}},
		{"syntax error", "{\n  \"port\": 1,\n}", []string{"daemon.json", "offset", "line 3"}},
		{"bad duration", `{"interval": "fifteen"}`, []string{"daemon.json", `"fifteen"`}},
		{"trailing data", `{"port": 1} {"port": 2}`, []string{"daemon.json", "after the top-level value"}},
		{"empty file", ``, []string{"daemon.json", "empty"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got sample
			err := config.Load(write(t, tc.body), &got)
			require.Error(t, err)
			for _, want := range tc.wants {
				assert.Contains(t, err.Error(), want)
			}
		})
	}

	t.Run("missing file names the path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "absent.json")
		err := config.Load(path, &sample{})
		require.Error(t, err)
		assert.ErrorIs(t, err, os.ErrNotExist)
		assert.Contains(t, err.Error(), path)
	})
}

func TestDuration(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"string", `"15s"`, 15 * time.Second},
		{"compound string", `"1h2m3.5s"`, time.Hour + 2*time.Minute + 3500*time.Millisecond},
		{"nanoseconds", `1500000000`, 1500 * time.Millisecond},
		{"zero", `0`, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var d config.Duration
			require.NoError(t, json.Unmarshal([]byte(tc.in), &d))
			assert.Equal(t, tc.want, d.D())
		})
	}

	t.Run("refuses nonsense", func(t *testing.T) {
		for _, in := range []string{`"15"`, `"abc"`, `true`, `1.5`, `{}`} {
			var d config.Duration
			assert.Error(t, json.Unmarshal([]byte(in), &d), in)
		}
	})

	t.Run("marshals as a duration string and round-trips", func(t *testing.T) {
		b, err := json.Marshal(struct {
			D config.Duration `json:"d"`
		}{config.Duration(2500 * time.Millisecond)})
		require.NoError(t, err)
		assert.JSONEq(t, `{"d":"2.5s"}`, string(b))

		var back struct {
			D config.Duration `json:"d"`
		}
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, 2500*time.Millisecond, back.D.D())
	})
}
