package certgen_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/certgen"
	"github.com/gavelhq/gavel/internal/tlsconfig"
)

func parseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block, "%s holds PEM", path)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return cert
}

// handshake serves one TLS connection with server and dials it with client,
// exchanging a byte each way so that a refused client certificate shows.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.CopyN(conn, conn, 1)
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), client)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{1}); err != nil {
		return err
	}
	_, err = io.ReadFull(conn, make([]byte, 1))
	return err
}

func TestWriteDirWritesAWorkingSet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	w, err := certgen.WriteDir(certgen.DirOptions{Dir: dir, Hosts: []string{"bbs.service.internal", "127.0.0.1"}, Validity: 48 * time.Hour, CellIDs: []string{"cell-1", "cell-2"}})
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "ca.pem"), w.CAFile)

	var names []string
	for _, c := range w.Certs {
		names = append(names, c.Component)
	}
	require.Equal(t, append(certgen.Components(), "rep-cell-1", "rep-cell-2"), names)

	ca := parseCert(t, w.CAFile)
	require.True(t, ca.IsCA)
	modes := map[string]os.FileMode{w.CAFile: 0o644, w.CAKeyFile: 0o600}
	for _, c := range w.Certs {
		modes[c.Files.CertFile], modes[c.Files.KeyFile] = 0o644, 0o600
		require.Equal(t, w.CAFile, c.Files.CAFile)
		cert := parseCert(t, c.Files.CertFile)
		require.Equal(t, c.Component, cert.Subject.CommonName)
		id, err := authz.FromCertificate(cert)
		require.NoError(t, err, "every certificate carries its identity")
		require.Equal(t, c.Identity, id)
		require.Equal(t, c.Component, id.Name())
		require.Equal(t, []string{string(id.Role)}, cert.Subject.OrganizationalUnit)
		require.Equal(t, []string{"bbs.service.internal"}, cert.DNSNames)
		require.Len(t, cert.IPAddresses, 1)
		require.True(t, cert.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")))
		require.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage)
		require.Equal(t, x509.ECDSA, cert.PublicKeyAlgorithm)
		require.WithinDuration(t, time.Now().Add(48*time.Hour), cert.NotAfter, time.Minute)
		require.NoError(t, cert.CheckSignatureFrom(ca))
	}
	for path, mode := range modes {
		info, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, mode, info.Mode().Perm(), path)
	}

	// Each component's files load as a server and as a client, and any two
	// complete a mutual handshake in both directions.
	for _, srv := range w.Certs {
		server, err := srv.Files.Server()
		require.NoError(t, err)
		require.Equal(t, tls.RequireAndVerifyClientCert, server.ClientAuth)
		for _, cli := range w.Certs {
			client, err := cli.Files.Client("bbs.service.internal")
			require.NoError(t, err)
			require.NoError(t, handshake(t, server, client), "%s → %s", cli.Component, srv.Component)
		}
	}

	t.Run("a client without a certificate is refused", func(t *testing.T) {
		server, err := w.Certs[0].Files.Server()
		require.NoError(t, err)
		client, err := tlsconfig.Files{CAFile: w.CAFile}.Client("")
		require.NoError(t, err)
		require.Error(t, handshake(t, server, client))
	})
	t.Run("a name outside the hosts is refused", func(t *testing.T) {
		server, err := w.Certs[0].Files.Server()
		require.NoError(t, err)
		client, err := w.Certs[1].Files.Client("elsewhere.example")
		require.NoError(t, err)
		require.Error(t, handshake(t, server, client))
	})
}

func TestWriteDirDefaults(t *testing.T) {
	w, err := certgen.WriteDir(certgen.DirOptions{Dir: t.TempDir(), Components: []string{"bbs"}})
	require.NoError(t, err)
	cert := parseCert(t, w.Certs[0].Files.CertFile)
	require.Equal(t, []string{"localhost"}, cert.DNSNames)
	require.Len(t, cert.IPAddresses, 2)
	require.WithinDuration(t, time.Now().Add(certgen.DefaultValidity), cert.NotAfter, time.Minute)
}

func TestWriteDirRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	first, err := certgen.WriteDir(certgen.DirOptions{Dir: dir})
	require.NoError(t, err)
	before, err := os.ReadFile(first.CAFile)
	require.NoError(t, err)

	_, err = certgen.WriteDir(certgen.DirOptions{Dir: dir})
	require.ErrorIs(t, err, certgen.ErrExists)
	require.ErrorContains(t, err, first.CAFile)
	after, err := os.ReadFile(first.CAFile)
	require.NoError(t, err)
	require.Equal(t, before, after, "nothing was overwritten")

	// One existing key among new files is enough to refuse, and nothing else is written.
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "operator-key.pem"), []byte("mine"), 0o644))
	_, err = certgen.WriteDir(certgen.DirOptions{Dir: other})
	require.ErrorIs(t, err, certgen.ErrExists)
	_, err = os.Stat(filepath.Join(other, "ca.pem"))
	require.True(t, errors.Is(err, os.ErrNotExist), "ca.pem was not written: %v", err)

	// Force overwrites, and a key left world-readable becomes 0600.
	_, err = certgen.WriteDir(certgen.DirOptions{Dir: other, Force: true})
	require.NoError(t, err)
	info, err := os.Stat(filepath.Join(other, "operator-key.pem"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	_, err = tlsconfig.Files{CAFile: filepath.Join(other, "ca.pem"), CertFile: filepath.Join(other, "operator.pem"), KeyFile: filepath.Join(other, "operator-key.pem")}.Server()
	require.NoError(t, err)
}

func TestBadRequests(t *testing.T) {
	ca, err := certgen.NewAuthority("ca", time.Hour)
	require.NoError(t, err)
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"no hosts", func() error { _, err := ca.Issue("bbs", []string{" "}, time.Hour); return err }, "at least one host"},
		{"zero validity", func() error { _, err := ca.Issue("bbs", []string{"localhost"}, 0); return err }, "validity"},
		{"CA zero validity", func() error { _, err := certgen.NewAuthority("ca", 0); return err }, "validity"},
		{"no dir", func() error { _, err := certgen.WriteDir(certgen.DirOptions{}); return err }, "directory"},
		{"component with a slash", func() error {
			_, err := certgen.WriteDir(certgen.DirOptions{Dir: t.TempDir(), Components: []string{"../bbs"}})
			return err
		}, `component "../bbs": want one of the roles operator, controller`},
		{"duplicate component", func() error {
			_, err := certgen.WriteDir(certgen.DirOptions{Dir: t.TempDir(), Components: []string{"bbs", "bbs"}})
			return err
		}, "named twice"},
		{"rep without cell ids", func() error {
			_, err := certgen.WriteDir(certgen.DirOptions{Dir: t.TempDir(), Components: []string{"rep"}})
			return err
		}, "--cell-ids"},
		{"bad cell id", func() error {
			_, err := certgen.WriteDir(certgen.DirOptions{Dir: t.TempDir(), CellIDs: []string{"../x"}})
			return err
		}, `cell id "../x"`},
		{"duplicate cell id", func() error {
			_, err := certgen.WriteDir(certgen.DirOptions{Dir: t.TempDir(), CellIDs: []string{"a", "a"}})
			return err
		}, "named twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorContains(t, tc.run(), tc.want)
		})
	}
}

func TestLeafExpiryIsCappedByTheCA(t *testing.T) {
	ca, err := certgen.NewAuthority("ca", time.Hour)
	require.NoError(t, err)
	leaf, err := ca.Issue("bbs", []string{"localhost"}, 24*time.Hour)
	require.NoError(t, err)
	block, _ := pem.Decode(leaf.CertPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), cert.NotAfter, time.Minute)
}
