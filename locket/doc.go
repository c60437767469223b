// Package locket provides locks and presences over leased keys, Gavel's
// counterpart of Diego's Locket.
//
// A [Lock] is an ifrit runner that blocks until it holds a named lock (the
// BBS's "bbs" lock, the auctioneer's "auctioneer" lock whose value carries
// its address), closes ready, keeps the lock alive, and returns [ErrLockLost]
// as soon as it loses it, so the daemon exits and its supervisor restarts it.
// A [Presence] registers a cell (key = cell id, value = the caller's bytes,
// the rep stores a protobuf CellPresence) and keeps it alive; unlike a lock
// it never gives up: when the record is lost it registers again.
//
// Readers use [FetchLock], [FetchPresence] and [FetchPresences] (etcd), or
// [FetchLockFrom], [FetchPresenceFrom] and [FetchPresencesFrom] over any
// [Reader] (both backends are readers); the key layout lives in keys.go
// ([LockKey], [PresenceKey], [PresencePrefix]).
//
// # Backends
//
// The runners talk to a [Backend] (acquire a leased record, wait for it to
// be released) and the [Lease] it returns (lost notification, release).
// etcd is the default backend ([NewEtcdBackend], used when the options
// carry a clientv3 client): a record is a key bound to an etcd lease of the
// TTL, created by a transaction only when the key is absent and kept alive
// on a keep-alive stream of its own (a renewal about a third of the TTL after
// the last answer; see keepalive.go). A lease is lost when etcd answers that it
// expired, when no renewal was answered within the TTL, or when the key is
// deleted or overwritten. The client must have a connection: etcd's
// in-process client cannot keep leases alive.
//
// [NewConsulBackend] is the Consul option: a record is a Consul session
// (TTL, behavior "delete", a configurable lock-delay, no health checks)
// holding the key by KV acquire, renewed every TTL/3 and watched with
// blocking queries; see [ConsulBackend]. Consul KV keys have no leading '/'
// ([ConsulKey]). Its tests run against an in-process double of Consul's
// HTTP API, since no Consul server runs where Gavel is built.
package locket
