// Package app wires the auctioneer daemon: its config ([Config], loaded
// by [Load] and checked by [Config.Validate]) and the ordered group of
// runners that cmd/auctioneer runs ([Auctioneer.Runner]):
//
//	debug server (metrics, pprof)
//	  ─► etcd client (locks, cell presences)
//	  ─► gRPC API (answers Unavailable until the lock is held)
//	  ─► auctioneer lock (its value is the gRPC address, which the BBS reads)
//	  ─► auction runner (one auction at a time)
//
// A signal stops them in reverse order: the auction in flight is
// cancelled, the lock released, the API drained. Losing the lock ends the
// group with an error, so the process exits and its supervisor restarts it
// as a standby.
package app
