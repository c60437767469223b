package tlsconfig_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
)

func TestCheckMutual(t *testing.T) {
	ca := tlstest.NewCA(t, "gavel")
	good := ca.Issue(t, "bbs")
	without := func(mutate func(*tlsconfig.Files)) tlsconfig.Files {
		f := good
		mutate(&f)
		return f
	}
	absent := filepath.Join(t.TempDir(), "absent.pem")
	cases := []struct {
		name     string
		insecure bool
		hops     []tlsconfig.Hop
		wants    []string // one error per entry, in order
	}{
		{name: "every file set", hops: []tlsconfig.Hop{
			{Field: "tls", Files: good, Role: tlsconfig.Server},
			{Field: "bbs_tls", Files: good, Role: tlsconfig.Client},
		}},
		{name: "nothing set by default", hops: []tlsconfig.Hop{{Field: "tls", Role: tlsconfig.Server}}, wants: []string{
			"tls.ca_file: required: mTLS is on by default (set insecure_plaintext: true to run without TLS)",
			"tls.cert_file: required: mTLS is on by default",
			"tls.key_file: required: mTLS is on by default",
		}},
		{name: "missing server CA", hops: []tlsconfig.Hop{
			{Field: "tls", Files: without(func(f *tlsconfig.Files) { f.CAFile = "" }), Role: tlsconfig.Server},
		}, wants: []string{"tls.ca_file: required"}},
		{name: "missing client cert", hops: []tlsconfig.Hop{
			{Field: "tls", Files: good, Role: tlsconfig.Server},
			{Field: "bbs_tls", Files: without(func(f *tlsconfig.Files) { f.CertFile = "" }), Role: tlsconfig.Client},
		}, wants: []string{"bbs_tls.cert_file: required"}},
		{name: "missing client key", hops: []tlsconfig.Hop{
			{Field: "client_tls", Files: without(func(f *tlsconfig.Files) { f.KeyFile = "" }), Role: tlsconfig.Client},
		}, wants: []string{"client_tls.key_file: required"}},
		{name: "unreadable file", hops: []tlsconfig.Hop{
			{Field: "tls", Files: without(func(f *tlsconfig.Files) { f.CAFile = absent }), Role: tlsconfig.Server},
		}, wants: []string{"tls: tlsconfig: reading ca_file"}},
		{name: "opt-out with nothing set", insecure: true, hops: []tlsconfig.Hop{
			{Field: "tls", Role: tlsconfig.Server}, {Field: "bbs_tls", Role: tlsconfig.Client},
		}},
		{name: "opt-out and files", insecure: true, hops: []tlsconfig.Hop{
			{Field: "tls", Files: good, Role: tlsconfig.Server},
			{Field: "bbs_tls", Files: tlsconfig.Files{CAFile: good.CAFile}, Role: tlsconfig.Client},
		}, wants: []string{
			"insecure_plaintext, tls.ca_file, tls.cert_file, tls.key_file: contradictory",
			"insecure_plaintext, bbs_tls.ca_file: contradictory: insecure_plaintext turns TLS off but bbs_tls.ca_file is set",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := tlsconfig.CheckMutual(tc.insecure, tc.hops...)
			require.Len(t, errs, len(tc.wants), "errors: %v", errors.Join(errs...))
			for i, want := range tc.wants {
				require.ErrorContains(t, errs[i], want)
			}
		})
	}
}
