// Package server is the BBS's gRPC API: it validates each request once,
// calls the store, maps errors to status codes with the table in package
// models, and carries out what a change leaves to do (asking the auctioneer
// to place new work, stopping instances and cancelling tasks on their cells,
// delivering task completions). Only the holder of the bbs lock serves
// writes; a passive replica answers them Unavailable and still serves reads
// and events from its own watch cache. Every read first waits until the
// replica's cache reflects etcd's revision at the time of the read
// (store.Sync), so no replica answers with state older than an acknowledged
// write.
package server
