// Package auctionrunner is the auctioneer daemon's placement loop: the
// batch that collects start requests, and the runner that turns each batch
// into one auction.
//
// A [Batch] collects LRP instances and tasks, de-duplicates them (an LRP
// instance by process guid and index, a task by guid; the first request
// wins) and wakes the runner through a channel of capacity one, so many
// requests collapse into one wake-up.
//
// A [Runner] runs one auction at a time (reference auction.md §1.2–§1.3):
//
//	wake ─► live cells (locket presences) ─► State from every cell in
//	parallel (per-cell timeout, worker cap; failed, evacuating and
//	mismatched cells skipped; retried when no cell answered) ─► drain the
//	batch ─► auctioneer.Run (the pure engine) ─► one Perform per winning
//	cell, in parallel ─► failures written back to the BBS (FailActualLRP,
//	RejectTask)
//
// With Options.StateMaxAge the runner keeps each cell's state between
// auctions, with its own placements applied, and asks only the cells whose
// kept state is stale, changed presence, handed work back or failed; see
// the option.
//
// With Options.MinInterval an auction starts no sooner than the interval
// after the last one started: a wake-up after a quiet interval runs at once,
// one during it waits for the rest (or until the work waiting reaches
// FullBatchPerCell per cell) and takes everything that arrived. With
// Options.MaxInterval a busy runner (its last auction took longer than half
// of MinInterval) holds a batch of fewer than SparseBatchPerCell items per
// cell past MinInterval, up to MaxInterval after the last start.
//
// Requests that arrive while the state fetch runs join the current batch;
// those that arrive later join the next one. The runner never writes
// successes: the winning cell claims its work.
package auctionrunner
