package etcdserver_test

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdserver"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
)

func TestTLSServesOnlyMutualTLSClientsAndUserPassword(t *testing.T) {
	ca := tlstest.NewCA(t, "etcd-ca")
	cfg := testConfig(filepath.Join(t.TempDir(), "data"))
	cfg.ClientURL = "https://127.0.0.1:0"
	cfg.TLS = ca.Issue(t, "etcd")
	runner, proc := start(t, cfg)
	t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })
	eps := runner.Endpoints()
	require.True(t, strings.HasPrefix(eps[0], "https://"), eps[0])

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	short := config.Duration(time.Second)
	// Dials expected to fail get a context without a deadline, so they give up after short.
	bg := context.Background()

	// A client with a certificate from the CA gets in.
	clientFiles := ca.Issue(t, "bbs")
	c, err := etcdclient.Dial(ctx, etcdclient.Config{Endpoints: eps, TLS: clientFiles})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Put(ctx, "k", "v")
	require.NoError(t, err)

	// Without a client certificate, with a foreign one, or over plaintext: refused.
	_, err = etcdclient.Dial(bg, etcdclient.Config{Endpoints: eps, TLS: tlsconfig.Files{CAFile: ca.File}, DialTimeout: short})
	require.Error(t, err, "a client without a certificate was served")
	other := tlstest.NewCA(t, "other-ca").Issue(t, "intruder")
	other.CAFile = ca.File
	_, err = etcdclient.Dial(bg, etcdclient.Config{Endpoints: eps, TLS: other, DialTimeout: short})
	require.Error(t, err, "a client with a foreign certificate was served")
	plain := "http://" + strings.TrimPrefix(eps[0], "https://")
	_, err = etcdclient.Dial(bg, etcdclient.Config{Endpoints: []string{plain}, DialTimeout: short})
	require.Error(t, err, "a plaintext client was served")
	_, err = etcdclient.Dial(bg, etcdclient.Config{Endpoints: eps, DialTimeout: short})
	require.ErrorContains(t, err, "tls.ca_file")

	// With etcd's auth on, a user and password are needed as well.
	_, err = c.UserAdd(ctx, "root", "rootpw")
	require.NoError(t, err)
	_, err = c.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = c.AuthEnable(ctx)
	require.NoError(t, err)
	withPW, err := etcdclient.Dial(ctx, etcdclient.Config{Endpoints: eps, TLS: clientFiles, Username: "root", Password: "rootpw"})
	require.NoError(t, err)
	defer withPW.Close()
	_, err = withPW.Put(ctx, "k2", "v")
	require.NoError(t, err)
	_, err = etcdclient.Dial(bg, etcdclient.Config{Endpoints: eps, TLS: clientFiles, Username: "root", Password: "wrong", DialTimeout: short})
	require.Error(t, err, "a wrong password was accepted")
}

func TestListenerRules(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	cases := []struct {
		name string
		edit func(*etcdserver.Config)
		want string
	}{
		{"non-loopback without tls", func(c *etcdserver.Config) { c.ClientURL = "http://0.0.0.0:2379" }, "loopback"},
		{"https without tls", func(c *etcdserver.Config) { c.ClientURL = "https://127.0.0.1:0" }, "tls: ca_file, cert_file and key_file are required"},
		{"tls over http", func(c *etcdserver.Config) { c.TLS = ca.Issue(t, "e") }, "must be https"},
		{"tls without ca", func(c *etcdserver.Config) {
			c.ClientURL = "https://127.0.0.1:0"
			c.TLS = ca.Issue(t, "e")
			c.TLS.CAFile = ""
		}, "all required"},
	}
	for _, tc := range cases {
		cfg := testConfig(dir)
		tc.edit(&cfg)
		err := cfg.Validate()
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	cfg := testConfig(dir)
	cfg.ClientURL = "https://0.0.0.0:0"
	cfg.TLS = ca.Issue(t, "e")
	require.NoError(t, cfg.Validate(), "a non-loopback listener with mutual TLS is allowed")
}
