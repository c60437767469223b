// Package app holds the configs and ifrit wiring of the cc-bridge daemons:
// stager, tps-listener, tps-watcher, cc-uploader and file-server. Each has a
// Config with JSON tags, Default*Config, Validate (side-effect free, errors
// name the field) and Load*; New* builds the daemon, whose Runner is one
// ordered ifrit group: the debug server (metrics and pprof), then the
// daemon's clients and API (the watcher: the tps_watcher lock, then the
// watcher). The HTTP APIs answer GET /health. The cmd/ mains and gavel dev
// both use these constructors.
//
// The APIs the controller and cells call are plain HTTP on loopback by
// default (listen_tls serves HTTPS); every BBS connection is mutual TLS
// unless insecure_plaintext, with certificate paths in bbs_tls (and, for
// tps-listener's calls to the reps, rep_client_tls).
package app
