package harmonizer

import (
	"context"
	"errors"
	"fmt"

	"code.cloudfoundry.org/lager/v3"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/executor"
)

// ReasonEvacuating is the rejection reason of a task handed back by a draining cell.
const ReasonEvacuating = "cell is evacuating"

// evacuateLRP brings the BBS in line with one LRP container of an
// evacuating cell (Diego's evacuation processor):
//   - reserved, initializing or created (not running yet): EvacuateClaimed, then delete;
//   - running: EvacuateRunning; keep the container while the BBS says
//     keep_container (the instance stays routable until its replacement
//     runs), stop it once it says not to;
//   - completed: EvacuateStopped or EvacuateCrashed, then delete.
//
// A failed call is retried at the next poll.
func (h *Harmonizer) evacuateLRP(ctx context.Context, c executor.Container) {
	key, ik := rep.ActualLRPKey(c), rep.InstanceKey(c, h.opts.CellID)
	logger := h.logger.Session("evacuate", lager.Data{"process_guid": key.GetProcessGuid(), "index": key.GetIndex(), "instance_guid": c.Guid})
	if h.refused(c.Guid) && c.State != executor.StateCompleted {
		return // stopping after a refusal; its completion deletes it
	}
	if _, ok := h.unclaimed.Load(c.Guid); ok && !h.reportBeforeEvacuating(ctx, c) {
		return
	}
	switch c.State {
	case executor.StateReserved, executor.StateInitializing, executor.StateCreated:
		_, err := h.evacuate(ctx, "EvacuateClaimedActualLRP", &bbsv1.EvacuationReport{Report: &bbsv1.EvacuationReport_Claimed{
			Claimed: &bbsv1.EvacuateClaimedActualLRPRequest{ActualLrpKey: key, InstanceKey: ik}}})
		if err != nil {
			logger.Error("evacuate-claimed-failed", err)
			return
		}
		h.delete(ctx, c)
	case executor.StateRunning:
		routable := c.Routable
		keep, err := h.evacuate(ctx, "EvacuateRunningActualLRP", &bbsv1.EvacuationReport{Report: &bbsv1.EvacuationReport_Running{
			Running: &bbsv1.EvacuateRunningActualLRPRequest{
				ActualLrpKey: key, InstanceKey: ik, NetInfo: rep.NetInfo(c), Routable: &routable, AvailabilityZone: h.opts.Zone,
			}}})
		if err != nil {
			logger.Error("evacuate-running-failed", err)
			return
		}
		if !keep {
			logger.Info("stopping-evacuated-instance")
			if err := h.exec.Stop(c.Guid); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
				logger.Error("stop-failed", err)
			}
		}
	case executor.StateCompleted:
		var err error
		if c.RunResult.Stopped {
			_, err = h.evacuate(ctx, "EvacuateStoppedActualLRP", &bbsv1.EvacuationReport{Report: &bbsv1.EvacuationReport_Stopped{
				Stopped: &bbsv1.EvacuateStoppedActualLRPRequest{ActualLrpKey: key, InstanceKey: ik}}})
		} else {
			_, err = h.evacuate(ctx, "EvacuateCrashedActualLRP", &bbsv1.EvacuationReport{Report: &bbsv1.EvacuationReport_Crashed{
				Crashed: &bbsv1.EvacuateCrashedActualLRPRequest{ActualLrpKey: key, InstanceKey: ik, ErrorMessage: crashReason(c.RunResult)}}})
		}
		if err != nil {
			logger.Error("evacuate-completed-failed", err)
			return
		}
		h.delete(ctx, c)
	}
}

// reportBeforeEvacuating makes a container run before its claim this
// cell's in the BBS before it is evacuated, so the evacuation unclaims (or
// keeps) a row the cell holds: a running container reports its start, any
// other is claimed. It returns false when the container is not to be
// evacuated now: the report failed (a bulk sync retries), or it was
// refused and the container is stopped or deleted.
func (h *Harmonizer) reportBeforeEvacuating(ctx context.Context, c executor.Container) bool {
	if c.State == executor.StateRunning {
		return h.reportStart(ctx, c) == nil // a refused one is stopped
	}
	if c.State == executor.StateCompleted {
		h.delete(ctx, c) // neither claimed nor started: the row is not this cell's
		return false
	}
	err := h.claimNow(ctx, c)
	if err != nil && !transient(err) && ctx.Err() == nil {
		h.delete(ctx, c)
	}
	return err == nil
}

// evacItem is one evacuation report of a batch and, once done, its answer.
type evacItem struct {
	report *bbsv1.EvacuationReport
	keep   bool
}

// evacuate sends one evacuation report; the reports of the cell's
// containers made meanwhile go together in one BatchEvacuateActualLRPs call
// (at most Options.MaxBatch, and never more than the BBS takes). It returns
// keep_container. call names the report in the error metric.
func (h *Harmonizer) evacuate(ctx context.Context, call string, report *bbsv1.EvacuationReport) (bool, error) {
	it := &evacItem{report: report}
	if err := h.evacs.do(ctx, it); err != nil {
		// do may have returned at ctx's end while the call still runs and
		// writes it.keep: only a successful do has an answer to read.
		return false, h.observe(call, err)
	}
	return it.keep, nil
}

func (h *Harmonizer) batchEvacuate(ctx context.Context, items []*evacItem) []error {
	cctx, cancel := h.callCtx(ctx)
	defer cancel()
	reports := make([]*bbsv1.EvacuationReport, len(items))
	for i, it := range items {
		reports[i] = it.report
	}
	countBatch(h.opts.Metrics, "BatchEvacuateActualLRPs", len(reports))
	resp, err := h.bbs.BatchEvacuateActualLRPs(cctx, &bbsv1.BatchEvacuateActualLRPsRequest{Reports: reports})
	results := make([]*bbsv1.BatchItemResult, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		results[i] = &bbsv1.BatchItemResult{Code: r.GetCode(), Message: r.GetMessage()}
		if i < len(items) {
			items[i].keep = r.GetKeepContainer() // read by the caller after do returns
		}
	}
	if err != nil {
		err = fmt.Errorf("batch evacuate %d instances: %w", len(items), err)
	}
	return batchErrors(len(items), results, err)
}

// evacuateTask hands a task of an evacuating cell back to the BBS
// (RejectTask: PENDING again for another cell, or failed after the maximum
// rejections) and stops its container; a completed task reports its outcome
// as usual.
func (h *Harmonizer) evacuateTask(ctx context.Context, c executor.Container) {
	if c.State == executor.StateCompleted {
		h.processTask(ctx, c)
		return
	}
	logger := h.logger.Session("evacuate", lager.Data{"task_guid": c.Guid})
	cctx, cancel := h.callCtx(ctx)
	task, err := h.bbs.GetTask(cctx, &bbsv1.GetTaskRequest{TaskGuid: c.Guid})
	cancel()
	if h.observe("GetTask", err) != nil && !errors.Is(err, models.ErrNotFound) {
		logger.Error("get-task-failed", err)
		return
	}
	t := task.GetTask()
	if err != nil || !(t.GetState() == models.TaskPending || (t.GetState() == models.TaskRunning && t.GetCellId() == h.opts.CellID)) {
		h.delete(ctx, c) // gone, completed, or handed back already and placed elsewhere
		return
	}
	cctx, cancel = h.callCtx(ctx)
	_, err = h.bbs.RejectTask(cctx, &bbsv1.RejectTaskRequest{TaskGuid: c.Guid, RejectionReason: fmt.Sprintf("%s: cell %s", ReasonEvacuating, h.opts.CellID)})
	cancel()
	if h.observe("RejectTask", err) != nil && !errors.Is(err, models.ErrNotFound) && !errors.Is(err, models.ErrInvalidTransition) {
		logger.Error("hand-back-failed", err)
		return
	}
	logger.Info("task-handed-back")
	if c.State == executor.StateReserved {
		h.delete(ctx, c)
		return
	}
	if err := h.exec.Stop(c.Guid); err != nil && !errors.Is(err, executor.ErrContainerNotFound) {
		logger.Error("stop-failed", err)
	}
}

// Reclaim ends the evacuation of the instances of the given containers that
// have no replacement placed yet: each becomes its index's ordinary instance
// again (ReclaimEvacuatingActualLRP), so an instance that could not be moved
// is not lost when the cell stops at its evacuation timeout. From then on
// the harmonizer processes no container (the cell is about to stop). It
// returns the keys reclaimed and the first error.
func (h *Harmonizer) Reclaim(ctx context.Context, containers []executor.Container) ([]*modelsv1.ActualLRPKey, error) {
	// No evacuation call may follow a reclaim: freeze the processing of
	// containers and wait for the calls in flight.
	h.frozen.Store(true)
	h.inFlight.Lock()
	defer h.inFlight.Unlock()
	var out []*modelsv1.ActualLRPKey
	var first error
	for _, c := range containers {
		if !rep.IsLRP(c) || c.State != executor.StateRunning {
			continue
		}
		key := rep.ActualLRPKey(c)
		cctx, cancel := h.callCtx(ctx)
		resp, err := h.bbs.ReclaimEvacuatingActualLRP(cctx, &bbsv1.ReclaimEvacuatingActualLRPRequest{ActualLrpKey: key, InstanceKey: rep.InstanceKey(c, h.opts.CellID)})
		cancel()
		if h.observe("ReclaimEvacuatingActualLRP", err) != nil {
			if first == nil {
				first = fmt.Errorf("reclaim %s/%d: %w", key.GetProcessGuid(), key.GetIndex(), err)
			}
			continue
		}
		if resp.GetReclaimed() {
			out = append(out, key)
		}
	}
	return out, first
}
