package app_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/route-emitter/app"
)

func TestConfigValidate(t *testing.T) {
	valid := func() app.Config {
		c := app.DefaultConfig()
		c.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
		c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
		return c
	}
	cases := []struct {
		name   string
		change func(c *app.Config)
		errs   []string
	}{
		{"defaults with etcd", func(*app.Config) {}, nil},
		{"global mode needs etcd for the lock", func(c *app.Config) { c.Etcd.Endpoints = nil }, []string{"etcd.endpoints"}},
		{"cell-local mode needs no etcd", func(c *app.Config) { c.Etcd.Endpoints = nil; c.CellID = "cell-1" }, nil},
		{"disabled lock needs no etcd", func(c *app.Config) { c.Etcd.Endpoints = nil; c.DisableLock = true }, nil},
		{"bad NATS URL and missing BBS", func(c *app.Config) { c.NATSURLs = []string{"::nope"}; c.BBSAddresses = nil },
			[]string{"nats_urls[0]", "bbs_addresses"}},
		{"half credentials", func(c *app.Config) { c.NATSUsername = "u" }, []string{"nats_username, nats_password"}},
		{"bad intervals", func(c *app.Config) { c.SyncInterval = 0; c.JitterFactor = 1.5; c.UnregisterCount = 0 },
			[]string{"sync_interval", "jitter_factor", "unregister_count"}},
		{"missing TLS files", func(c *app.Config) { c.NATSTLS.CAFile = "/nonexistent/ca.pem" }, []string{"nats_tls"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := valid()
			c.change(&cfg)
			err := cfg.Validate()
			if len(c.errs) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, e := range c.errs {
				require.ErrorContains(t, err, e)
			}
		})
	}
}

func TestLoadOverridesDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "route-emitter.json")
	require.NoError(t, os.WriteFile(path, []byte(`{
		"nats_urls": ["nats://a:pw@10.0.0.1:4222", "tls://10.0.0.2:4222"],
		"bbs_addresses": ["10.0.0.5:8889"],
		"cell_id": "cell-7",
		"sync_interval": "30s",
		"register_interval": "5s",
		"unregister_count": 5,
		"insecure_plaintext": true
	}`), 0o600))
	cfg, err := app.Load(path)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Equal(t, []string{"nats://a:pw@10.0.0.1:4222", "tls://10.0.0.2:4222"}, cfg.NATSURLs)
	require.Equal(t, "cell-7", cfg.CellID)
	require.Equal(t, 30*time.Second, cfg.SyncInterval.D())
	require.Equal(t, 5*time.Second, cfg.RegisterInterval.D())
	require.Equal(t, 5, cfg.UnregisterCount)
	require.Equal(t, app.DefaultUnregisterInterval, cfg.UnregisterInterval.D(), "unnamed fields keep their defaults")

	require.NoError(t, os.WriteFile(path, []byte(`{"nats_url": "x"}`), 0o600))
	_, err = app.Load(path)
	require.ErrorContains(t, err, "nats_url")
}

// Diego's route emitter sends no stale_threshold_in_seconds; neither does
// the default config (a value would cap routers configured above it).
func TestDefaultConfigSendsNoStaleThreshold(t *testing.T) {
	if d := app.DefaultConfig().RouteStaleThreshold; d != 0 {
		t.Fatalf("route_stale_threshold defaults to %s, want unset", d)
	}
}
