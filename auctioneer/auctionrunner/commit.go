package auctionrunner

import (
	"context"
	"sync"

	"code.cloudfoundry.org/lager/v3"

	"github.com/gavelhq/gavel/auctioneer"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// cellWork is what one winning cell receives.
type cellWork struct {
	cell       *liveCell
	placements []auctioneer.Placement
	req        *repv1.PerformRequest
	refused    []bool // per placement: handed back by the cell
	err        error  // Perform failed
}

// committed is what the cells did with one auction's placements.
type committed struct {
	kept    []auctioneer.Placement // taken, or assumed taken (Perform failed)
	refused []auctioneer.Placement // handed back by the cell
	errored map[string]error       // cells whose Perform failed
}

// commit sends one Perform per winning cell, in parallel, and returns the
// placements the cells kept and those they handed back. As in Diego
// (reference §1.9), when Perform itself fails the work is assumed started:
// resending part of it could start it twice, and the BBS convergence
// re-auctions instances left UNCLAIMED.
func (r *Runner) commit(ctx context.Context, a *auctioneer.Auction, placements []auctioneer.Placement, cells map[string]*liveCell) committed {
	var order []string
	work := map[string]*cellWork{}
	for _, p := range placements {
		w, ok := work[p.CellID]
		if !ok {
			w = &cellWork{cell: cells[p.CellID], req: &repv1.PerformRequest{CellId: p.CellID}}
			work[p.CellID] = w
			order = append(order, p.CellID)
		}
		w.placements = append(w.placements, p)
		if p.Kind == auctioneer.KindTask {
			w.req.Tasks = append(w.req.Tasks, repTask(&a.Tasks[p.Request]))
		} else {
			w.req.Lrps = append(w.req.Lrps, repLRP(&a.LRPs[p.Request]))
		}
	}

	var wg sync.WaitGroup
	for _, id := range order {
		w := work[id]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.perform(ctx, w)
		}()
	}
	wg.Wait()

	out := committed{errored: map[string]error{}}
	for _, id := range order {
		w := work[id]
		if w.err != nil {
			out.errored[id] = w.err
		}
		for i, p := range w.placements {
			if w.refused[i] {
				out.refused = append(out.refused, p)
			} else {
				out.kept = append(out.kept, p)
			}
		}
	}
	return out
}

// refusedFailure is the failure written back for work a cell handed back.
func refusedFailure(a *auctioneer.Auction, p auctioneer.Placement) Failure {
	if p.Kind == auctioneer.KindTask {
		return Failure{Kind: p.Kind, TaskGUID: p.TaskGUID, Error: MsgCellRefused}
	}
	l := &a.LRPs[p.Request]
	return Failure{Kind: p.Kind, ProcessGUID: l.ProcessGUID, Index: l.Index, Domain: l.Domain, Error: MsgCellRefused}
}

// perform sends one cell its work and marks what the cell handed back.
func (r *Runner) perform(ctx context.Context, w *cellWork) {
	w.refused = make([]bool, len(w.placements))
	log := lager.Data{"cell_id": w.req.GetCellId(), "rep_address": w.cell.presence.GetRepAddress(),
		"lrps": len(w.req.GetLrps()), "tasks": len(w.req.GetTasks())}
	cctx, cancel := context.WithTimeout(ctx, r.opts.CommunicationTimeout)
	defer cancel()
	resp, err := w.cell.rep.Perform(cctx, w.req)
	if err != nil {
		w.err = err
		r.metrics.PerformErrors.Inc()
		r.logger.Error("perform-failed-work-assumed-started", err, log)
		return
	}
	type lrpKey struct {
		guid  string
		index int
	}
	lrps := map[lrpKey]struct{}{}
	for _, l := range resp.GetFailedLrps() {
		lrps[lrpKey{l.GetKey().GetProcessGuid(), int(l.GetKey().GetIndex())}] = struct{}{}
	}
	tasks := map[string]struct{}{}
	for _, t := range resp.GetFailedTasks() {
		tasks[t.GetTaskGuid()] = struct{}{}
	}
	n := 0
	for i, p := range w.placements {
		if p.Kind == auctioneer.KindTask {
			_, w.refused[i] = tasks[p.TaskGUID]
		} else {
			_, w.refused[i] = lrps[lrpKey{p.ProcessGUID, p.Index}]
		}
		if w.refused[i] {
			n++
		}
	}
	if n > 0 {
		log["refused"] = n
		r.logger.Info("cell-refused-work", log)
	}
}

// writeBack records every failure in the BBS, WriteBackWorkers at a time:
// FailActualLRP for LRP instances, RejectTask for tasks. Errors are logged
// and counted; convergence retries whatever is left.
func (r *Runner) writeBack(ctx context.Context, failures []Failure) {
	sem := make(chan struct{}, WriteBackWorkers)
	var wg sync.WaitGroup
	for _, f := range failures {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, r.opts.CommunicationTimeout)
			defer cancel()
			var err error
			if f.Kind == auctioneer.KindTask {
				_, err = r.opts.BBS.RejectTask(cctx, &bbsv1.RejectTaskRequest{TaskGuid: f.TaskGUID, RejectionReason: f.Error})
			} else {
				_, err = r.opts.BBS.FailActualLRP(cctx, &bbsv1.FailActualLRPRequest{
					ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: f.ProcessGUID, Index: int32(f.Index), Domain: f.Domain},
					ErrorMessage: f.Error,
				})
			}
			if err != nil {
				r.metrics.WriteBackErrors.Inc()
				r.logger.Error("write-back-failed", err, lager.Data{
					"kind": f.Kind, "process_guid": f.ProcessGUID, "index": f.Index, "task_guid": f.TaskGUID, "placement_error": f.Error,
				})
			}
		}()
	}
	wg.Wait()
}
