package app

import (
	"testing"

	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
)

// TestConfigRequiresMutualTLS: without insecure_plaintext every gRPC hop
// (tls, client_tls) needs its CA, certificate and key, each missing file is
// named with the rule, and the opt-out with files is contradictory.
func TestConfigRequiresMutualTLS(t *testing.T) {
	tlstest.CheckMutualTLSRule(t, tlstest.NewCA(t, "gavel").Issue(t, "bbs"), tlstest.MutualTLSRule[Config]{
		Valid: DefaultConfig,
		Hops: []tlstest.Hop[Config]{
			{Field: "tls", Files: func(c *Config) *tlsconfig.Files { return &c.TLS }},
			{Field: "client_tls", Files: func(c *Config) *tlsconfig.Files { return &c.ClientTLS }},
		},
		OptOut:   func(c *Config) { c.InsecurePlaintext = true },
		Validate: Config.Validate,
	})
}
