// Package tps is Diego's tps for Gavel: the listener, which answers the
// controller's questions about an app's instances (status, stats with
// per-container CPU, memory and disk from each instance's cell, and bulk
// status), and the watcher, which turns the BBS's instance events into the
// controller's crashed, rescheduling (evacuation) and readiness_changed
// callbacks.
//
// The listener answers from one BBS list per request (a bulk request of
// many guids is one list, not one per guid), resolves each index to one
// instance (Resolve) and maps BBS states to the controller's (StateOf).
// Stats ask each instance's cell, found through the BBS's cell presences,
// with the rep's ContainerMetrics RPC, one call per cell, concurrently.
//
// The watcher runs alone (the app wiring holds the tps_watcher lock), reads
// events from the BBS revision current when it starts, resumes after the
// last revision on a broken stream, and posts callbacks through a bounded
// queue and worker pool, retrying transport errors and 5xx answers (Diego's
// watcher does not retry). A full queue holds the event stream back; it
// never drops a callback.
package tps
