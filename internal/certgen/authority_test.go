package certgen_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/certgen"
)

// operatorCA is a CA made the way an operator's tooling (openssl, cfssl)
// might make it: an RSA key in PKCS #1 form, or an EC key in SEC 1 form.
func operatorCA(t *testing.T, rsaKey bool, tweak func(*x509.Certificate)) (certPEM, keyPEM []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "ops-root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	if tweak != nil {
		tweak(tmpl)
	}
	if rsaKey {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	sec1, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
}

// Certificates issued by a loaded CA chain to it and complete a mutual
// handshake with certificates the same CA issued earlier.
func TestWriteDirWithAnExistingCA(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rsaKey bool
	}{{"RSA PKCS #1 key", true}, {"EC SEC 1 key", false}} {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM := operatorCA(t, tc.rsaKey, nil)
			caFile := filepath.Join(t.TempDir(), "ops-ca.pem")
			require.NoError(t, os.WriteFile(caFile, certPEM, 0o644))
			ca, err := certgen.LoadAuthority(certPEM, keyPEM)
			require.NoError(t, err)

			first, err := certgen.WriteDir(certgen.DirOptions{Dir: t.TempDir(), Authority: ca, AuthorityCertFile: caFile, Components: []string{"bbs"}})
			require.NoError(t, err)
			dir := t.TempDir()
			later, err := certgen.WriteDir(certgen.DirOptions{
				Dir: dir, Authority: ca, AuthorityCertFile: caFile, Components: []string{"rep"}, CellIDs: []string{"cell-7"},
				Hosts: []string{"10.0.0.7"}, Validity: 365 * 24 * time.Hour,
			})
			require.NoError(t, err)
			require.Equal(t, caFile, later.CAFile)
			require.Empty(t, later.CAKeyFile)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			require.ElementsMatch(t, []string{"rep-cell-7.pem", "rep-cell-7-key.pem"}, names, "nothing of the CA is written")

			rep := parseCert(t, later.Certs[0].Files.CertFile)
			require.NoError(t, rep.CheckSignatureFrom(parseCert(t, caFile)))
			require.Equal(t, "10.0.0.7", rep.IPAddresses[0].String())
			require.False(t, rep.NotAfter.After(parseCert(t, caFile).NotAfter), "capped at the CA's expiry")

			server, err := first.Certs[0].Files.Server()
			require.NoError(t, err)
			client, err := later.Certs[0].Files.Client("localhost")
			require.NoError(t, err)
			require.NoError(t, handshake(t, server, client), "a certificate issued later is trusted by one issued before")
		})
	}
}

func TestLoadAuthorityRefuses(t *testing.T) {
	certPEM, keyPEM := operatorCA(t, false, nil)
	_, otherKey := operatorCA(t, false, nil)
	leafPEM, leafKey := operatorCA(t, false, func(c *x509.Certificate) { c.IsCA, c.KeyUsage = false, x509.KeyUsageDigitalSignature })
	noSignPEM, noSignKey := operatorCA(t, false, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCRLSign })
	expiredPEM, expiredKey := operatorCA(t, false, func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Minute) })
	cases := []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"not PEM", []byte("hello"), keyPEM, "no PEM CERTIFICATE block"},
		{"key of another CA", certPEM, otherKey, `it is not the key of CA certificate "ops-root"`},
		{"no key", certPEM, certPEM, "no PEM private key block"},
		{"not a CA", leafPEM, leafKey, "is not a CA"},
		{"cannot sign certificates", noSignPEM, noSignKey, "does not allow signing certificates"},
		{"expired", expiredPEM, expiredKey, "expired at"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certgen.LoadAuthority(tc.cert, tc.key)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := certgen.WriteDir(certgen.DirOptions{Dir: t.TempDir(), Authority: &certgen.Authority{}})
	require.ErrorContains(t, err, "AuthorityCertFile is required")
}
