// Package app wires the route emitter daemon: its config and the ordered
// group of runners that cmd/route-emitter runs (and that `gavel dev` can
// embed): debug server, NATS connection, the route_emitter lock (global
// mode), then the emitter itself (unregistration re-sender, BBS watcher and
// broadcast scheduler).
//
// The NATS connection retries forever with exponential back-off, from the
// first connect on; each (re)connection re-broadcasts the whole table, so a
// restarted NATS server (or one that was down when the emitter started)
// learns every route at once.
package app
