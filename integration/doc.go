// Package integration holds Gavel's end-to-end suite; it has no code of its
// own outside tests.
//
// TestMain builds the real binaries once (go build ./cmd/..., without -race
// even when the suite runs with it) plus two helpers from testdata/: an etcd
// server process (internal/etcdtest) and a tiny HTTP app. Each scenario then
// starts its own cluster of separate OS processes — etcd, one or more BBS
// replicas, the auctioneer, several process-backend reps and optionally the
// route emitter, every gRPC hop mutual TLS with certificates from one test
// CA — with accelerated timings, on its own ports and data directories under
// t.TempDir(), and kills every process (and every app process left in its
// directory) when it ends, dumping the daemons' logs if it failed.
//
// README.md lists the scenarios and how long each took.
package integration
