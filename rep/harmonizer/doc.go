// Package harmonizer keeps the BBS and a cell's executor in agreement, as
// Diego's rep does with its event consumer and bulker.
//
// Event-driven, per container (every executor event queues one operation for
// its container; a container has at most one operation running and one
// waiting, so operations on it never interleave):
//
//	LRP  reserved   → claim (many claims in one BatchClaimActualLRPs) → desired LRP → Run;
//	                  a refused claim deletes the reservation, a failed run removes the instance
//	     running    → StartActualLRP with net info and routable (batched); refused → stop
//	     completed  → RemoveActualLRP when stopped, else CrashActualLRP(reason); then delete
//	task reserved   → StartTask; should_start false or refused → delete; else GetTask → Run
//	     completed  → stopped: delete; retryable failure: RejectTask; else CompleteTask
//	                  (result from the result file); then delete
//
// An operation waiting for its batched claim or start holds no goroutine:
// the batch's result continues it (a claim's on a worker, which then fetches
// the run info and runs the container). During a large placement a rep
// process has thousands of claims and starts waiting on the BBS at once, and
// a goroutine each made their stacks a large share of the garbage
// collector's work.
//
// A claim, desired-LRP fetch or start report that fails transiently (timed
// out, Unavailable, conflict) is tried again after 0.5 s, 1 s and 2 s before
// the operation gives up: a timed-out claim may have been committed, and
// deleting its reservation would strand a CLAIMED row without a container.
//
// The desired LRP comes from the RunInfoCache, shared by the cells of a
// process, when it holds the run info version the claim's answer names
// (desired epoch + run record revision); else from one GetDesiredLRP per
// process guid, which every cell of the process waiting for it shares and
// whose answer is cached (LRU, DefaultRunInfoCacheSize entries).
//
// Bulk sync, at start and every Options.BulkSyncInterval, lists the
// containers, this cell's actual LRPs and tasks, and the containers again:
//
//   - a container past reserved whose instance has no actual LRP row with its
//     instance key, or whose task is not RUNNING on this cell, is deleted;
//   - every other container gets its operation again (a completed one is
//     reported; a running LRP re-posts its start unless its row already holds
//     exactly that report, models.StartRepeats — Diego's rep re-posts every
//     running instance, which the BBS takes as a heartbeat and writes nothing);
//   - an actual LRP CLAIMED or RUNNING here with no container is removed
//     (RemoveActualLRP); a task RUNNING here with no container is completed
//     as failed ("cell lost the task").
//
// Rows are listed between the two container listings so that a container
// created meanwhile is never mistaken for one the BBS does not want, nor a
// row for one the cell lost.
//
// Evacuation (evacuation.go): once Options.Evacuation is set (a drain), every
// container is processed by the evacuation rules instead, at once and then
// every Options.EvacuationPollInterval:
//
//	LRP  reserved, initializing, created → EvacuateClaimedActualLRP; delete
//	     running    → EvacuateRunningActualLRP; keep_container false → stop
//	                  (true: the instance stays routable; the next poll asks again,
//	                  and the BBS answers false once the replacement runs)
//	     completed  → EvacuateStoppedActualLRP or EvacuateCrashedActualLRP; delete
//	task not completed → RejectTask (handed back for another cell); stop
//
// The evacuation reports of a cell's containers made meanwhile go together in
// one BatchEvacuateActualLRPs call (at most Options.MaxBatch and the BBS's
// models.MaxEvacuationBatch), as claims and starts do.
//
// Reclaim ends an evacuation that timed out: instances with no replacement
// placed become ordinary instances again, and no container is processed after.
package harmonizer
