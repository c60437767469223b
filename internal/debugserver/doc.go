// Package debugserver serves a daemon's operational HTTP endpoints as an
// ifrit runner: Prometheus metrics at /metrics and the Go profiler at
// /debug/pprof/. Without TLS it listens only on a loopback address (it
// refuses any other), since it answers anyone who reaches it; with TLS
// (a daemon's debug_tls: certificate, key and client CA) it requires a
// client certificate and answers only the role operator (internal/authz).
package debugserver
