package harmonizer

import (
	"context"
	"fmt"

	"code.cloudfoundry.org/lager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/executor"
)

// Sync runs one bulk sync (see the package doc). The operations it queues
// finish in the background; it returns the error of a failed listing.
func (h *Harmonizer) Sync(ctx context.Context) error {
	start := h.opts.Clock.Now()
	defer func() {
		h.opts.Metrics.BulkSyncDuration.Observe(h.opts.Clock.Since(start).Seconds())
	}()
	before := h.exec.List()
	cctx, cancel := h.callCtx(ctx)
	lrpResp, err := h.bbs.ListActualLRPs(cctx, &bbsv1.ListActualLRPsRequest{CellId: h.opts.CellID})
	cancel()
	if h.observe("ListActualLRPs", err) != nil {
		return fmt.Errorf("bulk sync: list actual LRPs: %w", err)
	}
	cctx, cancel = h.callCtx(ctx)
	taskResp, err := h.bbs.ListTasks(cctx, &bbsv1.ListTasksRequest{CellId: h.opts.CellID})
	cancel()
	if h.observe("ListTasks", err) != nil {
		return fmt.Errorf("bulk sync: list tasks: %w", err)
	}
	after := h.exec.List()

	rows := map[string]*modelsv1.ActualLRP{} // by instance guid, claimed or running here
	for _, row := range lrpResp.GetActualLrps() {
		st := row.GetState()
		if (st == models.Claimed || st == models.Running) && row.GetInstanceKey().GetCellId() == h.opts.CellID {
			rows[row.GetInstanceKey().GetInstanceGuid()] = row
		}
	}
	tasks := map[string]*modelsv1.Task{} // running here
	for _, t := range taskResp.GetTasks() {
		if t.GetState() == models.TaskRunning && t.GetCellId() == h.opts.CellID {
			tasks[t.GetTaskGuid()] = t
		}
	}

	for _, c := range before {
		if c.State == executor.StateReserved && !h.opts.Evacuation.Evacuating() {
			continue // its claim or start is under way
		}
		wanted := true
		if c.State != executor.StateCompleted && c.State != executor.StateReserved {
			switch {
			case rep.IsLRP(c):
				row := rows[c.Guid]
				wanted = row != nil && row.GetKey().GetProcessGuid() == c.Tags[rep.TagProcessGuid]
			case rep.IsTask(c):
				wanted = tasks[c.Guid] != nil
			}
		}
		guid := c.Guid
		if !wanted {
			h.logger.Info("deleting-unwanted-container", lager.Data{"guid": guid, "state": c.State})
			h.queue.push(ctx, guid, func(ctx context.Context) { h.delete(ctx, executor.Container{Guid: guid}) })
			continue
		}
		if h.reported(c, rows[guid]) {
			continue
		}
		h.queue.push(ctx, guid, func(ctx context.Context) { h.process(ctx, guid) })
	}

	present := make(map[string]bool, len(after))
	for _, c := range after {
		present[c.Guid] = true
	}
	for guid, row := range rows {
		if present[guid] {
			continue
		}
		h.logger.Info("removing-instance-without-container", lager.Data{"process_guid": row.GetKey().GetProcessGuid(), "index": row.GetKey().GetIndex(), "instance_guid": guid})
		h.removeLRP(ctx, row.GetKey(), row.GetInstanceKey())
	}
	for guid := range tasks {
		if present[guid] {
			continue
		}
		h.logger.Info("failing-task-without-container", lager.Data{"task_guid": guid})
		h.completeTask(ctx, guid, true, ReasonCellLostTask, "")
	}
	h.syncs.Add(1)
	return nil
}

// reported says whether the BBS row already holds what a running LRP
// container would report, so its start report would change nothing (the
// BBS would take it as a heartbeat): the sync skips it, where Diego's rep
// re-posts every running instance each pass. Never while evacuating.
func (h *Harmonizer) reported(c executor.Container, row *modelsv1.ActualLRP) bool {
	if row == nil || c.State != executor.StateRunning || !rep.IsLRP(c) || h.opts.Evacuation.Evacuating() {
		return false
	}
	req := h.startRequest(c)
	if !proto.Equal(row.GetKey(), req.GetActualLrpKey()) {
		return false
	}
	return models.StartRepeats(row, models.StartInfo{
		InstanceKey: req.GetInstanceKey(), NetInfo: req.GetNetInfo(), Routable: req.Routable, AvailabilityZone: req.GetAvailabilityZone(),
	})
}
