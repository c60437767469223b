// Package bench is Gavel's scale benchmark, run by `gavel bench` and
// `make bench`.
//
// [Run] starts the real stack as separate OS processes talking gRPC over
// loopback, exactly as in production: etcd, the BBS, the auctioneer, and a
// farm of simulated cells (rep daemons with sim_cells, the
// cells split over a few processes; the cells to be killed in processes of
// their own). Nothing is written into etcd behind the BBS's back and no call
// crosses a component boundary in-process. The one departure from a
// production setup: every daemon runs with insecure_plaintext (no mTLS), so
// the figures measure scheduling, not TLS.
//
// By default etcd is embedded in the BBS and called in-process, so the
// BBS's CPU figure includes etcd's. EtcdProcess (`--etcd process`) runs etcd
// as its own process (cmd/gavel-etcd: internal/etcdserver standalone) and
// the BBS uses it as an external cluster with the limits and commit batch
// size it gives its embedded one, so etcd's CPU per placed instance is
// reported apart from the BBS's. The cost: the BBS reaches etcd over
// loopback gRPC instead of in-process, which adds CPU on both sides.
//
// One run has four phases:
//
//  1. raw etcd: single-key compare-and-put transactions against the same
//     etcd, from as many goroutines as the BBS keeps in flight, for a few
//     seconds. Every later rate is reported as a ratio of this one, so the
//     result does not depend on the machine's mood. Then the batched
//     ceiling: nested transactions of guarded puts (BatchedKeysPerTxn per
//     transaction, BatchedClients in flight), as the BBS's committer
//     writes; placements/s is also reported as a share of its keys/s
//     divided by the run's etcd writes per placed instance. The CPU of the
//     process serving etcd (the BBS when embedded) is read over each of the
//     two, per transaction and per batched key; the latter times the writes
//     per placed instance is etcd's least CPU per placement, shown beside
//     the BBS+etcd figure so that the BBS's own share can be told apart. It
//     includes what the idle cluster costs that process meanwhile (the cells'
//     presence keep-alives and bulk syncs, a few % of it), so it errs high.
//     Every process's CPU per placed instance is also given in etcd keys:
//     over the batched measurement's CPU per key. A slow stretch of a shared
//     host raises both, so that figure moves less between runs than the µs.
//  2. placement: the LRPs are desired (DesireLRP over gRPC, a few calls in
//     flight) and every instance is timed from its DesireLRP call to its
//     RUNNING event on the BBS event stream (no polling). Throughput is
//     reported overall and for each tenth of the instances; etcd writes per
//     placed instance come from etcd's own counters (etcd_mvcc_put_total and
//     etcd_mvcc_delete_total, with transactions and raft proposals beside
//     them); the BBS's and the auctioneer's CPU seconds and peak RSS come from
//     /proc; auction batch sizes and durations from the auctioneer's metrics.
//  3. recovery (optional): a share of the cells is SIGKILLed and the time
//     until every displaced instance runs again elsewhere is measured.
//  4. check: a consistent list of every actual LRP confirms that each index
//     has exactly one ORDINARY row and that it is RUNNING, and counts the
//     SUSPECT rows left.
//
// The [Result] is JSON-encodable (`--out`), has a short human summary
// ([Result.WriteSummary]) and draws instances desired and running over time
// as SVG ([Result.WriteSVG]). Every process started is stopped when Run returns,
// and killed if it does not stop.
package bench
