// Package debugserver serves a daemon's operational HTTP endpoints as an
// ifrit runner: Prometheus metrics at /metrics and the Go profiler at
// /debug/pprof/. It is meant for a loopback or otherwise private address.
package debugserver
