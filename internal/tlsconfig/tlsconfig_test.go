package tlsconfig_test

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
)

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
	ca := tlstest.NewCA(t, "gavel")
	serverFiles := ca.Issue(t, "bbs.service")
	client := ca.Issue(t, "rep")
	clientCert, clientKey := client.CertFile, client.KeyFile
	rogueCA := tlstest.NewCA(t, "rogue")
	rogue := rogueCA.Issue(t, "intruder")
	rogueCert, rogueKey := rogue.CertFile, rogue.KeyFile

	require.True(t, serverFiles.Enabled())
	srvCfg, err := serverFiles.Server()
	require.NoError(t, err)
	assert.Equal(t, tls.RequireAndVerifyClientCert, srvCfg.ClientAuth)
	assert.Equal(t, uint16(tls.VersionTLS12), srvCfg.MinVersion)
	addr := serve(t, srvCfg)

	t.Run("client with a certificate from the CA", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: ca.File, CertFile: clientCert, KeyFile: clientKey}.Client("bbs.service")
		require.NoError(t, err)
		require.NoError(t, roundTrip(addr, cfg))
	})
	t.Run("client without a certificate is refused", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: ca.File}.Client("bbs.service")
		require.NoError(t, err)
		assert.Error(t, roundTrip(addr, cfg))
	})
	t.Run("client with a certificate from another CA is refused", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: ca.File, CertFile: rogueCert, KeyFile: rogueKey}.Client("bbs.service")
		require.NoError(t, err)
		assert.Error(t, roundTrip(addr, cfg))
	})
	t.Run("client refuses a server name the certificate does not cover", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: ca.File, CertFile: clientCert, KeyFile: clientKey}.Client("other.service")
		require.NoError(t, err)
		assert.Error(t, roundTrip(addr, cfg))
	})
	t.Run("client refuses a server from an unknown CA", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: rogueCA.File, CertFile: clientCert, KeyFile: clientKey}.Client("bbs.service")
		require.NoError(t, err)
		assert.Error(t, roundTrip(addr, cfg))
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		cfg, err := tlsconfig.Files{CAFile: ca.File, CertFile: clientCert, KeyFile: clientKey}.Client("bbs.service")
		require.NoError(t, err)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		assert.Error(t, roundTrip(addr, cfg))
	})
}

func TestServerWithoutCADoesNotAskForClientCerts(t *testing.T) {
	ca := tlstest.NewCA(t, "gavel")
	files := ca.Issue(t, "bbs.service")
	srvCfg, err := tlsconfig.Files{CertFile: files.CertFile, KeyFile: files.KeyFile}.Server()
	require.NoError(t, err)
	addr := serve(t, srvCfg)
	cfg, err := tlsconfig.Files{CAFile: ca.File}.Client("bbs.service")
	require.NoError(t, err)
	require.NoError(t, roundTrip(addr, cfg))
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not pem"), 0o600))
	ca := tlstest.NewCA(t, "gavel")
	files := ca.Issue(t, "x")
	cert, key := files.CertFile, files.KeyFile

	assert.False(t, tlsconfig.Files{}.Enabled())

	_, err := tlsconfig.Files{CAFile: ca.File}.Server()
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
