// Package emitter publishes the routing table's messages to gorouter over
// NATS: router.register and router.unregister, one URI per message, as JSON
// with gorouter's field names. It keeps every unregister it sent in a cache
// and re-sends it every UnregisterInterval (30 s) up to UnregisterCount (20)
// times, unless the same registration (URI and address) is registered again
// meanwhile: NATS is at-most-once and a lost unregister would leave a router
// sending traffic to an address another app may reuse. It also owns the
// route emitter's Prometheus metrics.
package emitter
