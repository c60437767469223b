package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
	"github.com/gavelhq/gavel/route-emitter/app"
)

// TestConfigRequiresMutualTLS: without insecure_plaintext every gRPC hop
// (bbs_tls) needs its CA, certificate and key, each missing file is
// named with the rule, and the opt-out with files is contradictory.
func TestConfigRequiresMutualTLS(t *testing.T) {
	files := tlstest.NewCA(t, "gavel").Issue(t, "route-emitter")
	hops := map[string]func(*app.Config) *tlsconfig.Files{
		"bbs_tls": func(c *app.Config) *tlsconfig.Files { return &c.BBSTLS },
	}
	mutual := func() app.Config {
		c := app.DefaultConfig()
		c.Etcd.Endpoints = []string{"http://127.0.0.1:2379"}
		for _, hop := range hops {
			*hop(&c) = files
		}
		return c
	}
	type tc struct {
		name   string
		mutate func(*app.Config)
		wants  []string
	}
	cases := []tc{
		{"every hop has its files", func(*app.Config) {}, nil},
		{"opt-out with no files", func(c *app.Config) {
			c.InsecurePlaintext = true
			for _, hop := range hops {
				*hop(c) = tlsconfig.Files{}
			}
		}, nil},
		{"unreadable CA", func(c *app.Config) { hops["bbs_tls"](c).CAFile = "/nonexistent/ca.pem" }, []string{"bbs_tls: tlsconfig: reading ca_file"}},
	}
	var none, contradictory []string
	for _, field := range []string{"bbs_tls"} { // in order, for stable case names
		for _, file := range []string{"ca_file", "cert_file", "key_file"} {
			cases = append(cases, tc{"missing " + field + "." + file, func(c *app.Config) {
				f := hops[field](c)
				switch file {
				case "ca_file":
					f.CAFile = ""
				case "cert_file":
					f.CertFile = ""
				default:
					f.KeyFile = ""
				}
			}, []string{field + "." + file + ": required: mTLS is on by default (set insecure_plaintext: true to run without TLS)"}})
			none = append(none, field+"."+file+": required")
		}
		contradictory = append(contradictory, "insecure_plaintext, "+field+".ca_file, "+field+".cert_file, "+field+".key_file: contradictory")
	}
	cases = append(cases,
		tc{"no TLS at all names every file", func(c *app.Config) {
			for _, hop := range hops {
				*hop(c) = tlsconfig.Files{}
			}
		}, none},
		tc{"opt-out and files are contradictory", func(c *app.Config) { c.InsecurePlaintext = true }, contradictory},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mutual()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.wants) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tc.wants {
				require.ErrorContains(t, err, want)
			}
		})
	}
}
