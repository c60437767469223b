// Package tlsconfig is the public face of the TLS file loader every Gavel
// daemon uses, for programs that talk to Gavel: name a CA bundle, a client
// certificate and its key, and get a *tls.Config for bbs/client.Config.TLS
// that presents the certificate and verifies the server against the CA
// (TLS 1.2 or newer). Files is the very type of the daemons' configs, so
// a "tls" section of a Gavel JSON config decodes into it.
package tlsconfig

import (
	"crypto/tls"

	internal "github.com/gavelhq/gavel/internal/tlsconfig"
)

// Files names PEM files for TLS: CAFile (the CAs to trust), CertFile and
// KeyFile (this side's certificate and key). Its methods are Enabled,
// Server and Client.
type Files = internal.Files

// Client returns a client config from the three files, verifying the
// server against caFile under serverName ("" takes the host dialled).
func Client(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	return Files{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}.Client(serverName)
}
