package tlsconfig_test

import (
	"crypto/tls"
	"testing"

	"github.com/gavelhq/gavel/internal/tlstest"
	"github.com/gavelhq/gavel/tlsconfig"
)

func TestClientLoadsTheFiles(t *testing.T) {
	ca := tlstest.NewCA(t, "gavel")
	files := ca.Issue(t, "client")
	tc, err := tlsconfig.Client(files.CAFile, files.CertFile, files.KeyFile, "bbs.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.ServerName != "bbs.example" || tc.MinVersion < tls.VersionTLS12 {
		t.Fatalf("client config: %d certificates, roots %v, server name %q, min version %x", len(tc.Certificates), tc.RootCAs != nil, tc.ServerName, tc.MinVersion)
	}
	if _, err := tlsconfig.Client("/nonexistent/ca.crt", "", "", ""); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}
