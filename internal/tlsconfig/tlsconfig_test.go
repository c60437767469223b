package tlsconfig_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/tlsconfig"
)

// pki is a throwaway CA with helpers to issue leaf certificates as files.
type pki struct {
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
	serial int64
}

func newPKI(t *testing.T, dir, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &pki{dir: dir, cert: cert, key: key, caFile: filepath.Join(dir, name+"-ca.pem"), serial: 1}
	writePEM(t, p.caFile, "CERTIFICATE", der)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// issue writes a leaf certificate and key and returns their paths.
func (p *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (string, string) {
	t.Helper()
	p.serial++
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     []string{name, "localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

// serve accepts TLS connections and echoes one line; it returns the address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.CopyN(conn, conn, 5)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip dials addr and exchanges a message, which forces the handshake
// (TLS 1.3 clients only learn of a refused certificate on the first read).
func roundTrip(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("hello")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	_, err = io.ReadFull(conn, buf)
	return err
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newPKI(t, dir, "gavel")
	serverCert, serverKey := ca.issue(t, "bbs.service", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := ca.issue(t, "rep", x509.ExtKeyUsageClientAuth)
	rogue := newPKI(t, dir, "rogue")
	rogueCert, rogueKey := rogue.issue(t, "intruder", x509.ExtKeyUsageClientAuth)

	serverFiles := tlsconfig.Files{CAFile: ca.caFile, CertFile: serverCert, KeyFile: serverKey}
	require.True(t, serverFiles.Enabled())
	srvCfg, err := serverFiles.Server()
	require.NoError(t, err)
	assert.Equal(t, tls.RequireAndVerifyClientCert, srvCfg.ClientAuth)
	assert.Equal(t, uint16(tls.VersionTLS12), srvCfg.MinVersion)
	addr := serve(t, srvCfg)

	t.Run("client with a certificate from the CA", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: ca.caFile, CertFile: clientCert, KeyFile: clientKey}.Client("bbs.service")
		require.NoError(t, err)
		require.NoError(t, roundTrip(addr, cfg))
	})
	t.Run("client without a certificate is refused", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: ca.caFile}.Client("bbs.service")
		require.NoError(t, err)
		assert.Error(t, roundTrip(addr, cfg))
	})
	t.Run("client with a certificate from another CA is refused", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: ca.caFile, CertFile: rogueCert, KeyFile: rogueKey}.Client("bbs.service")
		require.NoError(t, err)
		assert.Error(t, roundTrip(addr, cfg))
	})
	t.Run("client refuses a server name the certificate does not cover", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: ca.caFile, CertFile: clientCert, KeyFile: clientKey}.Client("other.service")
		require.NoError(t, err)
		assert.Error(t, roundTrip(addr, cfg))
	})
	t.Run("client refuses a server from an unknown CA", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: rogue.caFile, CertFile: clientCert, KeyFile: clientKey}.Client("bbs.service")
		require.NoError(t, err)
		assert.Error(t, roundTrip(addr, cfg))
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: ca.caFile, CertFile: clientCert, KeyFile: clientKey}.Client("bbs.service")
		require.NoError(t, err)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		assert.Error(t, roundTrip(addr, cfg))
	})
}

func TestServerWithoutCADoesNotAskForClientCerts(t *testing.T) {
	ca := newPKI(t, t.TempDir(), "gavel")
	cert, key := ca.issue(t, "bbs.service", x509.ExtKeyUsageServerAuth)
	srvCfg, err := tlsconfig.Files{CertFile: cert, KeyFile: key}.Server()
	require.NoError(t, err)
	addr := serve(t, srvCfg)
	cfg, err := tlsconfig.Files{CAFile: ca.caFile}.Client("bbs.service")
	require.NoError(t, err)
	require.NoError(t, roundTrip(addr, cfg))
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not pem"), 0o600))
	ca := newPKI(t, dir, "gavel")
	cert, key := ca.issue(t, "x", x509.ExtKeyUsageServerAuth)

	assert.False(t, tlsconfig.Files{}.Enabled())

	_, err := tlsconfig.Files{CAFile: ca.caFile}.Server()
	assert.ErrorContains(t, err, "cert_file")

	_, err = tlsconfig.Files{CertFile: cert}.Client("")
	assert.ErrorContains(t, err, "together")

	_, err = tlsconfig.Files{CAFile: garbage, CertFile: cert, KeyFile: key}.Server()
	assert.ErrorContains(t, err, garbage)

	_, err = tlsconfig.Files{CAFile: filepath.Join(dir, "absent.pem")}.Client("")
	assert.ErrorIs(t, err, os.ErrNotExist)

	_, err = tlsconfig.Files{CertFile: cert, KeyFile: garbage}.Server()
	assert.ErrorContains(t, err, garbage)
}
