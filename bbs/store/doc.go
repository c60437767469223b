// Package store keeps the BBS's state in etcd. Every change is an etcd
// transaction guarded by the mod revisions of the records it read, written
// through a group committer that packs concurrent requests into one
// transaction (each request a nested transaction with its own guard, so one
// lost compare fails only its own request), built as etcd's own request
// messages and sent through etcd's KV API (Options.KV). Reads are answered
// from a watch cache fed by a single etcd watch, with indexes by process
// guid, cell, domain and state. Events for subscribers come from etcd
// watches, in revision order, resumable after any revision etcd has not
// compacted.
//
// Every transaction fits etcd's --max-txn-ops and --max-request-bytes
// (Options.MaxTxnOps, Options.MaxRequestBytes): the committer packs by them,
// and writes that grow with their input (a desire, a scale, a removal) are
// split into ordered, guarded chunks that convergence can complete if
// interrupted (desired.go). A write that can never fit fails with
// models.ErrTooLarge, which is not retryable.
//
// The key layout is in keys.go; records are protobuf-encoded.
package store
