// Package tlsconfig builds crypto/tls configurations from PEM files named in
// daemon configs, and holds the rule every daemon config follows.
//
// [Files] names a CA bundle, a certificate and its key. [Files.Server]
// requires and verifies client certificates whenever a CA is given (mutual
// TLS); [Files.Client] presents the certificate, if any, and verifies the
// server against the CA. Both refuse anything older than TLS 1.2.
//
// [CheckMutual] is the rule: mutual TLS on every gRPC hop a daemon serves
// or dials is the default, so each hop needs all three files, unless the
// daemon's config sets insecure_plaintext ([InsecurePlaintextField]), in
// which case naming files as well is refused as contradictory.
package tlsconfig
