package tlstest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/tlsconfig"
)

// Hop is one gRPC hop of a daemon config: its JSON field and its files.
type Hop[C any] struct {
	Field string
	Files func(*C) *tlsconfig.Files
}

// MutualTLSRule describes a daemon config to CheckMutualTLSRule.
type MutualTLSRule[C any] struct {
	// Valid returns a config that is valid but for its hops' TLS files.
	Valid func() C
	// Hops are every gRPC hop of the config, in the order errors name them.
	Hops []Hop[C]
	// OptOut sets insecure_plaintext.
	OptOut func(*C)
	// Validate validates a config.
	Validate func(C) error
}

// CheckMutualTLSRule checks a daemon config against tlsconfig.CheckMutual's
// rule: without insecure_plaintext every hop needs its CA, certificate and
// key, each missing file is named with the rule, an unreadable file is
// named, and the opt-out together with files is contradictory.
func CheckMutualTLSRule[C any](t *testing.T, files tlsconfig.Files, r MutualTLSRule[C]) {
	t.Helper()
	mutual := func() C {
		c := r.Valid()
		for _, hop := range r.Hops {
			*hop.Files(&c) = files
		}
		return c
	}
	clear := func(c *C) {
		for _, hop := range r.Hops {
			*hop.Files(c) = tlsconfig.Files{}
		}
	}
	type tc struct {
		name   string
		mutate func(*C)
		wants  []string
	}
	first := r.Hops[0]
	cases := []tc{
		{"every hop has its files", func(*C) {}, nil},
		{"opt-out with no files", func(c *C) { r.OptOut(c); clear(c) }, nil},
		{"unreadable CA", func(c *C) { first.Files(c).CAFile = "/nonexistent/ca.pem" }, []string{first.Field + ": tlsconfig: reading ca_file"}},
	}
	var none, contradictory []string
	for _, hop := range r.Hops {
		for _, file := range []string{"ca_file", "cert_file", "key_file"} {
			cases = append(cases, tc{"missing " + hop.Field + "." + file, func(c *C) {
				f := hop.Files(c)
				switch file {
				case "ca_file":
					f.CAFile = ""
				case "cert_file":
					f.CertFile = ""
				default:
					f.KeyFile = ""
				}
			}, []string{hop.Field + "." + file + ": required: mTLS is on by default (set insecure_plaintext: true to run without TLS)"}})
			none = append(none, hop.Field+"."+file+": required")
		}
		contradictory = append(contradictory, "insecure_plaintext, "+hop.Field+".ca_file, "+hop.Field+".cert_file, "+hop.Field+".key_file: contradictory")
	}
	cases = append(cases,
		tc{"no TLS at all names every file", clear, none},
		tc{"opt-out and files are contradictory", r.OptOut, contradictory},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mutual()
			tc.mutate(&c)
			err := r.Validate(c)
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
