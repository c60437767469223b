// Package strategyfile reads placement strategies written as data: a JSON
// or YAML file that either names a compiled strategy (diego, binpack,
// spread) with its weights, or gives a score as a CEL expression over the
// cell and the item being placed (README.md documents every variable).
//
// A file is parsed, validated and compiled once (Load, Parse); each run
// gets its own auctioneer.Strategy from File.New, so the same file serves
// the simulator (gavel sim --strategy FILE) and the auctioneer daemon
// (config strategy_file). A score is evaluated once per (item, fitting
// cell) through a pre-bound activation that computes only the variables
// the expression reads; its length and estimated cost are bounded, and an
// evaluation that fails or is not a finite number scores the cell +Inf and
// is reported by Scorer.Err, so Score never returns NaN.
package strategyfile
