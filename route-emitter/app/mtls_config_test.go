package app_test

import (
	"testing"

	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
	"github.com/gavelhq/gavel/route-emitter/app"
)

// TestConfigRequiresMutualTLS: without insecure_plaintext the one gRPC hop
// (bbs_tls) needs its CA, certificate and key, each missing file is named
// with the rule, and the opt-out with files is contradictory.
func TestConfigRequiresMutualTLS(t *testing.T) {
	tlstest.CheckMutualTLSRule(t, tlstest.NewCA(t, "gavel").Issue(t, "route-emitter"), tlstest.MutualTLSRule[app.Config]{
		Valid: func() app.Config {
			c := app.DefaultConfig()
			c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
			return c
		},
		Hops:     []tlstest.Hop[app.Config]{{Field: "bbs_tls", Files: func(c *app.Config) *tlsconfig.Files { return &c.BBSTLS }}},
		OptOut:   func(c *app.Config) { c.InsecurePlaintext = true },
		Validate: app.Config.Validate,
	})
}
