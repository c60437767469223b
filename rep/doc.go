// Package rep holds what the cell agent's packages share: the names of the
// tags the rep puts on containers, the evacuation flag, and conversions
// between the executor's container records and the API messages.
//
// The cell agent is built from:
//
//   - rep/backend (and process, sim): where containers run;
//   - rep/executor: reservations, the container lifecycle, action trees;
//   - rep/server: the RepService gRPC API (State, Perform, StopLRPInstance,
//     CancelTask, Ping) over an executor;
//   - rep/harmonizer: the BBS interplay, event-driven per container plus the
//     periodic bulk sync;
//   - rep/app: the daemon's config and runners, and the farm of simulated
//     cells.
package rep
