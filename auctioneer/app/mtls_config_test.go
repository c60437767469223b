package app_test

import (
	"testing"

	"github.com/gavelhq/gavel/auctioneer/app"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
)

// TestConfigRequiresMutualTLS: without insecure_plaintext every gRPC hop
// (tls, bbs_tls, rep_client_tls) needs its CA, certificate and key, each missing file is
// named with the rule, and the opt-out with files is contradictory.
func TestConfigRequiresMutualTLS(t *testing.T) {
	tlstest.CheckMutualTLSRule(t, tlstest.NewCA(t, "gavel").Issue(t, "auctioneer"), tlstest.MutualTLSRule[app.Config]{
		Valid: func() app.Config {
			c := app.DefaultConfig()
			c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
			c.BBSAddresses = []string{"127.0.0.1:8889"}
			return c
		},
		Hops: []tlstest.Hop[app.Config]{
			{Field: "tls", Files: func(c *app.Config) *tlsconfig.Files { return &c.TLS }},
			{Field: "bbs_tls", Files: func(c *app.Config) *tlsconfig.Files { return &c.BBSTLS }},
			{Field: "rep_client_tls", Files: func(c *app.Config) *tlsconfig.Files { return &c.RepClientTLS }},
		},
		OptOut:   func(c *app.Config) { c.InsecurePlaintext = true },
		Validate: app.Config.Validate,
	})
}
