package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files names PEM files for TLS. All paths are optional; see each method.
type Files struct {
	// CAFile is a PEM bundle of CA certificates: for a server, the CAs
	// client certificates must chain to (enabling mTLS); for a client, the
	// CAs the server's certificate must chain to.
	CAFile string `json:"ca_file"`
	// CertFile is this side's PEM certificate (chain).
	CertFile string `json:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `json:"key_file"`
}

// Enabled reports whether any file is set, i.e. TLS is wanted.
func (f Files) Enabled() bool {
	return f.CAFile != "" || f.CertFile != "" || f.KeyFile != ""
}

// Server returns a server config: CertFile and KeyFile are required; when
// CAFile is set, clients must present a certificate signed by one of its
// CAs (mTLS). The minimum version is TLS 1.2.
func (f Files) Server() (*tls.Config, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("tlsconfig: a server needs cert_file and key_file")
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: loading cert_file %s and key_file %s: %w", f.CertFile, f.KeyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.NoClientCert,
	}
	if f.CAFile != "" {
		pool, err := loadPool(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Client returns a client config verifying the server as serverName (empty
// means the host dialled) against CAFile, or the system roots when CAFile
// is empty, and presenting CertFile/KeyFile when set (both or neither).
// The minimum version is TLS 1.2.
func (f Files) Client(serverName string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
	}
	switch {
	case f.CertFile != "" && f.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tlsconfig: loading cert_file %s and key_file %s: %w", f.CertFile, f.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case f.CertFile != "" || f.KeyFile != "":
		return nil, errors.New("tlsconfig: cert_file and key_file must be set together")
	}
	if f.CAFile != "" {
		pool, err := loadPool(f.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: reading ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tlsconfig: ca_file %s holds no PEM certificate", path)
	}
	return pool, nil
}
