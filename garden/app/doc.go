// Package app wires the gavel-garden daemon: its JSON config, and one
// ordered group of runners: the debug server (metrics, pprof), the
// container backend (runc by default, or process), the Garden HTTP server
// over it (garden/server), and a gRPC health service whose status follows
// the backend's Ping. On SIGTERM the server stops and the containers keep
// running for the next start to serve (or are destroyed when
// destroy_containers_on_exit is set).
package app
