// Package tlstest issues throwaway certificates for tests: a CA and leaf
// certificates valid for 127.0.0.1, localhost and a given name, written as
// PEM files and returned as tlsconfig.Files. The certificates come from
// internal/certgen, the code behind `gavel certs`.
package tlstest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/certgen"
	"github.com/gavelhq/gavel/internal/tlsconfig"
)

// validity of every test certificate.
const validity = 24 * time.Hour

// CA is a test certificate authority whose files live in a test temp dir.
// Issue may be called from several goroutines.
type CA struct {
	// File is the CA certificate's PEM file.
	File string

	dir string
	ca  *certgen.Authority
}

// NewCA creates a CA named name in a new temporary directory of t.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := certgen.NewAuthority(name, validity)
	if err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	dir := t.TempDir()
	c := &CA{File: filepath.Join(dir, name+"-ca.pem"), dir: dir, ca: ca}
	writeFile(t, c.File, ca.CertPEM)
	return c
}

// Issue writes a certificate for name (also valid for localhost and
// 127.0.0.1, for both server and client authentication) and returns the
// files with CAFile set to this CA. Issuing the same name twice replaces
// the files. The certificate carries no role, so Gavel's servers answer it
// health checks only; IssueFor issues a component's certificate.
func (c *CA) Issue(t testing.TB, name string) tlsconfig.Files {
	t.Helper()
	leaf, err := c.ca.Issue(name, []string{name, "localhost", "127.0.0.1"}, validity)
	if err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	files := tlsconfig.Files{
		CAFile:   c.File,
		CertFile: filepath.Join(c.dir, name+".pem"),
		KeyFile:  filepath.Join(c.dir, name+"-key.pem"),
	}
	writeFile(t, files.CertFile, leaf.CertPEM)
	writeFile(t, files.KeyFile, leaf.KeyPEM)
	return files
}

// IssueFor writes the certificate of a Gavel identity (see certgen.IssueFor),
// named id.Name(), valid for localhost and 127.0.0.1, and returns its files.
func (c *CA) IssueFor(t testing.TB, id authz.Identity) tlsconfig.Files {
	t.Helper()
	name := id.Name()
	leaf, err := c.ca.IssueFor(id, []string{"localhost", "127.0.0.1"}, validity)
	if err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	files := tlsconfig.Files{
		CAFile:   c.File,
		CertFile: filepath.Join(c.dir, name+".pem"),
		KeyFile:  filepath.Join(c.dir, name+"-key.pem"),
	}
	writeFile(t, files.CertFile, leaf.CertPEM)
	writeFile(t, files.KeyFile, leaf.KeyPEM)
	return files
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("tlstest: %v", err)
	}
}
