package certgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/gavelhq/gavel/internal/authz"
)

// Clock skew tolerated by every certificate: NotBefore is this long before
// the moment it is issued.
const backdate = time.Hour

// DefaultValidity is how long certificates are valid unless told otherwise
// (one year).
const DefaultValidity = 365 * 24 * time.Hour

// DefaultHosts are the names and addresses a certificate is valid for unless
// told otherwise: this machine only.
func DefaultHosts() []string { return []string{"localhost", "127.0.0.1", "::1"} }

// Authority is a certificate authority: its certificate and key, kept in
// memory and as PEM. It is safe for concurrent use (Issue only reads it).
type Authority struct {
	// CertPEM is the CA certificate, PEM encoded: the ca_file of every config.
	CertPEM []byte
	// KeyPEM is the CA's PKCS #8 private key, PEM encoded.
	KeyPEM []byte

	cert *x509.Certificate
	key  crypto.Signer
}

// Leaf is an issued certificate and its key, PEM encoded.
type Leaf struct {
	// CertPEM is the certificate: a cert_file.
	CertPEM []byte
	// KeyPEM is its PKCS #8 private key: a key_file.
	KeyPEM []byte
}

// NewAuthority creates a self-signed CA named commonName, valid from an hour
// before now for validity.
func NewAuthority(commonName string, validity time.Duration) (*Authority, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("certgen: CA %s: validity must be > 0 (got %s)", commonName, validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certgen: CA %s: generating key: %w", commonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("certgen: CA %s: %w", commonName, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certgen: CA %s: signing: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certgen: CA %s: parsing: %w", commonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("certgen: CA %s: %w", commonName, err)
	}
	return &Authority{CertPEM: encodeCert(der), KeyPEM: keyPEM, cert: cert, key: key}, nil
}

// LoadAuthority is an existing CA, from its PEM certificate and PEM private
// key (PKCS #8, SEC 1 "EC PRIVATE KEY" or PKCS #1 "RSA PRIVATE KEY"), so that
// certificates for new hosts or cells chain to the CA every component
// already trusts. The certificate must be a CA allowed to sign certificates,
// valid now, and the key must be its key.
func LoadAuthority(certPEM, keyPEM []byte) (*Authority, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	switch now := time.Now(); {
	case !cert.IsCA || !cert.BasicConstraintsValid:
		return nil, fmt.Errorf("CA certificate %q: is not a CA (basic constraints CA:TRUE is required)", cert.Subject.CommonName)
	case cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("CA certificate %q: its key usage does not allow signing certificates", cert.Subject.CommonName)
	case now.After(cert.NotAfter):
		return nil, fmt.Errorf("CA certificate %q: expired at %s", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return nil, fmt.Errorf("CA certificate %q: not valid before %s", cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("CA key: it is not the key of CA certificate %q", cert.Subject.CommonName)
	}
	return &Authority{CertPEM: encodeCert(cert.Raw), KeyPEM: keyPEM, cert: cert, key: key}, nil
}

// parseKey reads the first PEM private key of data.
func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key block (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue // EC PARAMETERS and the like
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: a %T cannot sign", block.Type, key)
		}
		return signer, nil
	}
}

// Issue signs a certificate for commonName valid for hosts (each an IP
// address or a DNS name; at least one) for both server and client
// authentication, from an hour before now for validity (capped at the
// CA's own expiry). It carries no role: every Gavel server refuses it all
// but health checks; IssueFor issues the certificates components use.
func (a *Authority) Issue(commonName string, hosts []string, validity time.Duration) (Leaf, error) {
	return a.issue(commonName, nil, hosts, validity)
}

// IssueFor signs the certificate of a Gavel identity: like Issue, named
// id.Name(), with the identity as its SAN URI (spiffe://gavel/<role>[/<cell>])
// and the role as the subject's organizational unit.
func (a *Authority) IssueFor(id authz.Identity, hosts []string, validity time.Duration) (Leaf, error) {
	if err := id.Validate(); err != nil {
		return Leaf{}, fmt.Errorf("certgen: %w", err)
	}
	return a.issue(id.Name(), &id, hosts, validity)
}

func (a *Authority) issue(commonName string, id *authz.Identity, hosts []string, validity time.Duration) (Leaf, error) {
	if validity <= 0 {
		return Leaf{}, fmt.Errorf("certgen: %s: validity must be > 0 (got %s)", commonName, validity)
	}
	var ips []net.IP
	var names []string
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch ip := net.ParseIP(h); {
		case h == "":
		case ip != nil:
			ips = append(ips, ip)
		default:
			names = append(names, h)
		}
	}
	if len(ips)+len(names) == 0 {
		return Leaf{}, fmt.Errorf("certgen: %s: at least one host is required", commonName)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Leaf{}, fmt.Errorf("certgen: %s: generating key: %w", commonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return Leaf{}, fmt.Errorf("certgen: %s: %w", commonName, err)
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     names,
		IPAddresses:  ips,
	}
	if id != nil {
		tmpl.URIs = []*url.URL{id.URI()}
		tmpl.Subject.OrganizationalUnit = []string{string(id.Role)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return Leaf{}, fmt.Errorf("certgen: %s: signing: %w", commonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Leaf{}, fmt.Errorf("certgen: %s: %w", commonName, err)
	}
	return Leaf{CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// newSerial is a random positive serial number of at most 128 bits, as
// RFC 5280 recommends.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
