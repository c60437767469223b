// Package etcdserver runs an embedded, single-member etcd as an ifrit runner.
//
// It is the default store of `gavel dev` and of a BBS started without etcd
// endpoints: [New] builds an [Embedded] from a [Config] with named defaults
// sized for the BBS (large transactions and requests, an 8 GiB quota), and
// [Embedded.Run] starts etcd, closes ready once it serves clients, and stops
// it cleanly on a signal. If etcd fails while running, Run returns the error
// so the process group shuts down.
//
// etcd's own zap logging is kept at warn level by default (or sent to a
// file) so the daemon's lager logs stay readable.
package etcdserver
