package app

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// A BBS with the default config (every TLS file, no insecure_plaintext)
// serves a client with a certificate from its CA and refuses one without a
// certificate, one with a certificate from another CA and a plaintext one.
func TestDefaultConfigServesMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "gavel")
	cfg := testConfig(t, etcdtest.Prefix(t), "bbs-mtls")
	cfg.InsecurePlaintext = false
	bbs := ca.IssueFor(t, authz.Identity{Role: authz.BBS})
	cfg.TLS, cfg.ClientTLS = bbs, bbs
	require.NoError(t, cfg.Validate())
	b := startBBS(t, cfg)
	waitActive(t, b)

	clientTLS := func(f tlsconfig.Files) *tls.Config {
		c, err := f.Client("")
		require.NoError(t, err)
		return c
	}
	rogue := tlstest.NewCA(t, "rogue").Issue(t, "cli")
	rogue.CAFile = ca.File // trusts the BBS; only its own certificate is foreign
	cases := []struct {
		name string
		tls  *tls.Config
		ok   bool
	}{
		{"certificate from the CA", clientTLS(ca.IssueFor(t, authz.Identity{Role: authz.Operator})), true},
		{"no certificate", clientTLS(tlsconfig.Files{CAFile: ca.File}), false},
		{"certificate from another CA", clientTLS(rogue), false},
		{"plaintext", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.New(client.Config{Addresses: []string{b.Addr()}, TLS: tc.tls, Retries: 1})
			require.NoError(t, err)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := c.Ping(ctx, &bbsv1.PingRequest{})
			if tc.ok {
				require.NoError(t, err)
				require.True(t, resp.GetAvailable())
			} else {
				require.Error(t, err)
			}
		})
	}
}
