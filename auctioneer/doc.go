// Package auctioneer is Gavel's placement engine: a pure function from a
// snapshot of cell states and a batch of LRP and task start requests to
// placements, failures and metrics. It does no I/O; the auctioneer daemon
// fetches cell states and commits the result, and the simulator
// (package auctioneer/sim) feeds it scenarios.
//
// The algorithm is Cloud Foundry Diego's auction (see
// shared/reference/auction.md §1): work is ordered (index-0 LRPs, then
// tasks, then LRPs with index ≥ 1; larger memory first), every cell is
// filtered (rootfs, volume drivers, placement tags), checked for fit
// (memory plus proxy allowance, disk, one container slot) and scored by a
// Strategy; the lowest score wins and its reservation is applied to the
// in-memory snapshot before the next item is placed. Failures carry
// Diego's exact placement error strings.
//
// Scoring is pluggable: a Strategy is a Score method and a flag that asks
// for Diego's zone-first walk. Strategies are built by name from a
// Registry ("diego", the default, "binpack" and "spread" ship built in).
// Runs are deterministic for a given Options.Seed.
package auctioneer
