// Package routingtable is the route emitter's model: a pure, single-threaded
// routing table built from desired LRPs (their cf-router routes) and running,
// routable actual LRPs, and the gorouter registry messages it implies.
//
// The table is keyed by (process guid, container port); each key has the
// routes (hostnames) desired on that port and the endpoints (instance guid,
// evacuating) that serve it. Every mutation returns the messages it implies
// as a diff of the registrations before and after, by gorouter's identity of
// a registration (URI and address): a removed pair becomes an unregister, a
// new or changed pair a register. A change that keeps a pair's message equal
// (a new modification tag, an ordinary instance turned evacuating on the same
// address) emits nothing.
//
// Ordering: desired updates apply only when their modification tag succeeds
// the stored one (a removal accepts an equal tag), likewise actual updates.
// A desired instance count that drops trims endpoints with index >= instances
// at once, and such instances are never added.
//
// A Table is not safe for concurrent use; the watcher owns it on one goroutine.
package routingtable
