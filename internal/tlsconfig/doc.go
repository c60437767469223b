// Package tlsconfig builds crypto/tls configurations from PEM files named in
// daemon configs.
//
// [Files] names a CA bundle, a certificate and its key. [Files.Server]
// requires and verifies client certificates whenever a CA is given (mutual
// TLS, Gavel's default outside `gavel dev`); [Files.Client] presents the
// certificate, if any, and verifies the server against the CA. Both refuse
// anything older than TLS 1.2.
package tlsconfig
