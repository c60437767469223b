// Package certgen generates the certificates Gavel's components use for
// mutual TLS: a certificate authority ([NewAuthority]) and, signed by it,
// leaf certificates usable both as a server and as a client ([Authority.Issue]),
// all ECDSA P-256, PEM encoded. [WriteDir] writes a whole set — the CA and one
// certificate per component — into a directory; it is what `gavel certs`
// runs, and internal/tlstest issues its throwaway certificates with the same
// code.
package certgen
