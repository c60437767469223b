// Package sim is Gavel's placement simulator: it runs the real auction
// engine (package auctioneer) on a scenario file and reports what happened,
// so researchers can compare strategies on identical workloads.
//
// A scenario (Parse) lists cells with the work already on them and the
// LRP instances and tasks to place; its JSON field names are a contract.
// Omitted fields take these defaults: options.strategy "diego",
// options.starting_container_weight 0.25, options.bin_pack_first_fit_weight
// 0, options.max_inflight_starts 0 (unlimited), options.seed 0; a cell's
// zone "", index 0, rootfs_providers {"preloaded": ["cflinuxfs4"],
// "docker": []}, tags, drivers, lrps and tasks empty, proxy_memory_mb and
// starting_containers 0, evacuating false; a request's rootfs
// "preloaded:cflinuxfs4", memory, disk and index 0. Required: cell_id
// (unique), total.memory_mb, total.disk_mb and total.containers (> 0),
// process_guid and task_guid ((process_guid, index) and task_guid unique).
// A bad scenario is refused as a whole with the JSON path of every bad
// field, e.g. "cells[3].total.memory_mb: must be > 0".
//
// Parse and ParseReader stream the document: memory follows the scenario,
// not the file (a scenario file may be up to MaxScenarioBytes). Their
// errors are, field for field, those of the reference parse that decodes
// the whole document into a generic tree (kept for tests and the fuzzer).
//
// Generate builds scenarios from a few knobs; Run and Compare place them
// with a named strategy or a strategy file (RunOptions.StrategyFile,
// package auctioneer/strategyfile); Sweep runs strategies over seeds and
// parameter grids. A Report is written as text, as JSON (WriteJSON: issue
// 4's shape plus the run's inputs, free and stranded capacity and the
// starting distribution; README.md), or as an SVG picture (WriteSVG, one
// panel per strategy); compare and sweep rows as CSV or JSON (Row).
//
// The figure prints: every number it draws is also written as text. A
// panel has a summary (no wall time: it is the machine's, not the
// placement's), then memory, disk and container sections: per zone
// totals and, up to SVGMaxCellRows cells, one bar per cell with
// "existing + placed of total, free" beside it (evacuating cells
// outlined); beyond that, a histogram per zone of how many cells are in
// each tenth of use after the run, each count written above its bar, and
// the figure says it aggregated. Then the spread of selected apps
// (SVGOptions.Apps, "gavel sim run|compare --svg-apps", default the three
// with the most instances placed): instances per zone and how many cells
// hold 1, 2, … of them, each cell listed when few hold the app.
//
// A dynamic run (RunTimeline) replays a Timeline (ParseTimeline,
// CheckTimeline, GenerateTimeline) of arrivals, scales, removals, crashes,
// cell failures, drains and rolling deploys on a scenario's cluster through
// the same engine on a virtual clock; TIMELINE.md describes the format.
package sim
