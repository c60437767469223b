package harmonizer

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"code.cloudfoundry.org/lager/v3"

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
	// The containers present after the lists: one made since is not
	// missing from the BBS's answer.
	present := map[string]bool{}
	h.exec.Visit(func(c *executor.Container) { present[c.Guid] = true })

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
		if _, ok := h.unclaimed.Load(c.Guid); ok {
			// Run before its claim: its own operation claims or starts it
			// (the BBS row is UNCLAIMED until then, so the row cannot say).
			// Often that operation is in flight: this one then finds the
			// mark gone and does nothing, rather than report it again.
			guid := c.Guid
			h.queue.pushUnlessWaiting(ctx, guid, func(ctx context.Context) { h.processIfUnclaimed(ctx, guid) })
			continue
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
		if !wanted && h.runBeforeClaimAndForgotten(c) {
			h.logger.Info("taking-back-container-run-before-its-claim", lager.Data{"guid": guid, "state": c.State})
			h.unclaimed.Store(guid, markUnreported)
			h.enqueueProcess(ctx, guid)
			continue
		}
		if !wanted {
			h.logger.Info("deleting-unwanted-container", lager.Data{"guid": guid, "state": c.State})
			h.queue.push(ctx, guid, func(ctx context.Context) { h.delete(ctx, executor.Container{Guid: guid}) })
			continue
		}
		if h.reported(c, rows[guid]) {
			continue
		}
		h.enqueueProcess(ctx, guid)
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

// unclaimedWindow is how long an UNCLAIMED instance stays unauctioned
// (the converger's default stale_unclaimed): the time within which a
// container run before its claim may still make the row its own.
const unclaimedWindow = 30 * time.Second

// runBeforeClaimAndForgotten says whether a container the BBS lists no row
// of this cell for may be one run before its claim whose mark (h.unclaimed)
// a rep restart lost: the cell runs before claiming, the container's auction
// named a run info version, and it was placed within unclaimedWindow. Its
// own operation then claims or starts it as before the restart; a start the
// BBS refuses (the row is another cell's, or the instance is no longer
// desired at that version and index) stops it, removing nothing.
func (h *Harmonizer) runBeforeClaimAndForgotten(c executor.Container) bool {
	if h.opts.ClaimDelay <= 0 || !rep.IsLRP(c) || c.State == executor.StateCompleted || h.opts.Evacuation.Evacuating() {
		return false
	}
	if _, _, ok := rep.RunInfoVersion(c); !ok {
		return false
	}
	return time.Since(c.AllocatedAt) < unclaimedWindow
}

// reported says whether the BBS row already holds what a running LRP
// container would report, so its start report would change nothing (the
// BBS would take it as a heartbeat): the sync skips it, where Diego's rep
// re-posts every running instance each pass. Never while evacuating.
func (h *Harmonizer) reported(c executor.Container, row *modelsv1.ActualLRP) bool {
	if row == nil || c.State != executor.StateRunning || !rep.IsLRP(c) || h.opts.Evacuation.Evacuating() {
		return false
	}
	key := row.GetKey()
	if key.GetProcessGuid() != c.Tags[rep.TagProcessGuid] || key.GetDomain() != c.Tags[rep.TagDomain] ||
		strconv.Itoa(int(key.GetIndex())) != c.Tags[rep.TagProcessIndex] {
		return false
	}
	routable := c.Routable
	return models.StartRepeats(row, models.StartInfo{
		InstanceKey: rep.InstanceKey(c, h.opts.CellID), NetInfo: rep.NetInfo(c), Routable: &routable, AvailabilityZone: h.opts.Zone,
	})
}
