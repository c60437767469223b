package locket_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/locket"
	"github.com/gavelhq/gavel/locket/consultest"
)

func TestConfigValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  locket.Config
		want string
	}{
		{locket.Config{Backend: "zookeeper"}, `locket.backend: must be "etcd" or "consul" (got "zookeeper")`},
		{locket.Config{Backend: "consul"}, "locket.consul.address: is required"},
		{locket.Config{Backend: "consul", Consul: locket.ConsulConfig{Address: "ftp://x:1"}}, "locket.consul.address: must be host:port"},
		{locket.Config{Backend: "consul", Consul: locket.ConsulConfig{Address: "x:1", LockDelay: config.Duration(-time.Second)}}, "locket.consul.lock_delay: must not be negative"},
	} {
		err := tc.cfg.Validate()
		require.Error(t, err, "%+v", tc.cfg)
		assert.Contains(t, err.Error(), tc.want)
	}
	for _, ok := range []locket.Config{{}, {Backend: "etcd"}, {Backend: "consul", Consul: locket.ConsulConfig{Address: "127.0.0.1:8500"}},
		{Backend: "consul", Consul: locket.ConsulConfig{Address: "https://consul.example:8501"}}} {
		assert.NoError(t, ok.Validate(), "%+v", ok)
	}
}

// Open builds the selected backend: a lock taken through it is read back
// through it, for etcd (the default) and for Consul (the double; a token
// file is read, and a missing one is an error naming the field).
func TestOpenSelectsTheBackend(t *testing.T) {
	d := consultest.New(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("secret\n"), 0o600))
	etcd := etcdtest.Shared(t)
	for name, cfg := range map[string]locket.Config{
		"etcd (default)": {},
		"consul":         {Backend: locket.BackendConsul, Consul: locket.ConsulConfig{Address: d.Addr(), TokenFile: tokenFile}},
	} {
		t.Run(name, func(t *testing.T) {
			store, err := locket.Open(cfg, etcd, lager.NewLogger("test"))
			require.NoError(t, err)
			prefix := etcdtest.Prefix(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			lease, err := store.Acquire(ctx, locket.AcquireRequest{Key: locket.PresenceKey(prefix, "cell-1"), Value: []byte("v1"), TTL: time.Second})
			require.NoError(t, err)
			got, err := locket.FetchPresencesFrom(ctx, store, prefix)
			require.NoError(t, err)
			assert.Equal(t, map[string][]byte{"cell-1": []byte("v1")}, got)
			require.NoError(t, lease.Release(ctx))
		})
	}
	assert.Positive(t, d.RequestCount("PUT /v1/session/create"), "the Consul store went to the double")
	_, err := locket.Open(locket.Config{Backend: locket.BackendConsul, Consul: locket.ConsulConfig{Address: d.Addr(), TokenFile: "/nonexistent/token"}}, nil, nil)
	assert.ErrorContains(t, err, "locket.consul.token_file")
	_, err = locket.Open(locket.Config{}, nil, nil)
	assert.ErrorContains(t, err, "needs an etcd client")
}

func TestOnlyTheEtcdBackendNeedsEtcd(t *testing.T) {
	for backend, want := range map[string]bool{"": true, locket.BackendEtcd: true, locket.BackendConsul: false} {
		if got := (locket.Config{Backend: backend}).NeedsEtcd(); got != want {
			t.Errorf("backend %q: NeedsEtcd = %v, want %v", backend, got, want)
		}
	}
}
