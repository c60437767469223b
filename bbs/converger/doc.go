// Package converger keeps the BBS's actual state converging on its desired
// state. It is in three parts:
//
//   - [Plan] is a pure function of a [store.Snapshot], the time and a
//     [Config]: it decides, without I/O, which instances to create, retire,
//     re-auction, restart, mark suspect or promote, and which tasks to fail,
//     re-auction, re-kick or delete (Diego's rules, reference/bbs.md §3–§4).
//   - The applier turns a plan into guarded store changes, each guarded by
//     the mod revisions the plan read, commits them in batches through the
//     store's group committer, then sends one batch of start requests to the
//     auctioneer, hands completed tasks to the callback worker and asks cells
//     to stop retired instances. A change that lost its guard to a concurrent
//     lifecycle write is dropped; the next pass plans again.
//   - [Converger] is the ifrit runner: on the bbs lock holder only, it runs a
//     pass at start, every interval, and at once when a cell's presence
//     disappears from the watch cache. Passes never overlap.
//
// Two ORDINARY rows for one index cannot exist: the ordinary row of an index
// is the single etcd key actual/<guid>/<index>/ordinary (see store/keys.go),
// and every convergence write to it is guarded by the revision it was planned
// on, so a replacement, a promotion and a lifecycle write can only replace
// that row, never add a second one.
//
// See README.md for the pipeline and BENCHMARKS.md for the cost of a pass.
package converger
