// Package server implements the RepService gRPC API of one cell over its
// executor: State (capacity and what the cell runs; Unavailable while the
// container backend is unhealthy), Perform (atomic reservations; the work
// that does not fit is returned), StopLRPInstance, CancelTask and Ping.
//
// Perform only reserves: claiming, running and reporting to the BBS follow
// asynchronously from the executor's events (package rep/harmonizer).
//
// Errors: a Perform for another cell id is FailedPrecondition; State while
// the backend is unhealthy is Unavailable; a request missing its keys is
// InvalidArgument. Stopping or cancelling something the cell does not run
// succeeds (the BBS may repeat requests).
package server
