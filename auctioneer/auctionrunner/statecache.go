package auctionrunner

import (
	"context"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/auctioneer"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// cachedCell is what the runner keeps of one cell between auctions: the
// cell as it last answered State, with every placement the runner sent it
// since applied on top.
type cachedCell struct {
	cell      liveCell
	skip      string    // skipEvacuating: left out until refreshed
	fetchedAt time.Time // when State answered
	dirty     bool      // ask State again before the next use
}

// cellStates returns the state of every present cell. A cell's cached
// state is reused while it is younger than StateMaxAge, its presence is
// unchanged and nothing marked it dirty; the other cells (all of them when
// refreshAll, or when StateMaxAge is 0) are asked for their State in
// parallel. A cell whose State fails is dropped from the cache, so it is
// asked again next time. Cells that fail, evacuate or report another cell
// id are left out. The result lists the cells in presence order.
func (r *Runner) cellStates(ctx context.Context, presences []*modelsv1.CellPresence, refreshAll bool) fetchResult {
	now := r.opts.Clock.Now()
	present := make(map[string]struct{}, len(presences))
	var ask []*modelsv1.CellPresence
	var askAt []int
	for i, p := range presences {
		present[p.GetCellId()] = struct{}{}
		if refreshAll || !r.reusable(r.cache[p.GetCellId()], p, now) {
			ask = append(ask, p)
			askAt = append(askAt, i)
		}
	}
	for id := range r.cache {
		if _, ok := present[id]; !ok {
			delete(r.cache, id)
		}
	}
	fetchStart := r.opts.Clock.Now()
	answers := r.fetchAnswers(ctx, ask)
	if len(ask) > 0 {
		r.metrics.FetchStatesDuration.Observe(r.opts.Clock.Since(fetchStart).Seconds())
	}
	asked := make([]*stateAnswer, len(presences))
	for j, i := range askAt {
		a := &answers[j]
		asked[i] = a
		id := presences[i].GetCellId()
		if a.err != nil || a.skip == skipMismatch {
			delete(r.cache, id)
			continue
		}
		r.cache[id] = &cachedCell{cell: a.cell, skip: a.skip, fetchedAt: now}
	}

	res := fetchResult{presences: len(presences), fetched: len(ask), reused: len(presences) - len(ask)}
	for i, p := range presences {
		log := lager.Data{"cell_id": p.GetCellId(), "rep_address": p.GetRepAddress()}
		var a stateAnswer
		if asked[i] != nil {
			a = *asked[i]
		} else {
			c := r.cache[p.GetCellId()]
			a = stateAnswer{cell: c.cell, skip: c.skip}
			a.cell.cached = true
		}
		switch {
		case a.err != nil:
			res.failed++
			r.logger.Error("cell-state-failed", a.err, log)
		case a.skip == skipEvacuating:
			res.evacuating++
		case a.skip == skipMismatch:
			res.mismatched++
			log["reported_cell_id"] = a.cell.state.CellID
			r.logger.Info("cell-state-id-mismatch", log)
		default:
			res.cells = append(res.cells, a.cell)
		}
	}
	r.metrics.FailedCellStates.Add(float64(res.failed))
	r.metrics.CellStatesFetched.Add(float64(res.fetched))
	r.metrics.CellStatesReused.Add(float64(res.reused))
	return res
}

// reusable reports whether a cached state may stand in for a State call.
func (r *Runner) reusable(c *cachedCell, p *modelsv1.CellPresence, now time.Time) bool {
	return c != nil && !c.dirty && r.opts.StateMaxAge > 0 &&
		now.Sub(c.fetchedAt) < r.opts.StateMaxAge &&
		proto.Equal(c.cell.presence, p)
}

// markDirty makes the next auction ask the cell for its State.
func (r *Runner) markDirty(cellID string) {
	if c := r.cache[cellID]; c != nil {
		c.dirty = true
	}
}

// applyPlacement records in the cache what a cell took, the way the cell
// accounts for it: memory (plus the proxy allowance for an LRP), disk, one
// container and one more starting container. The cell's own changes since
// (containers that started, ended or crashed) are seen at its next State.
func (r *Runner) applyPlacement(a *auctioneer.Auction, p auctioneer.Placement) {
	c := r.cache[p.CellID]
	if c == nil {
		return
	}
	st := &c.cell.state
	if p.Kind == auctioneer.KindTask {
		t := &a.Tasks[p.Request]
		st.Available.MemoryMB -= t.MemoryMB
		st.Available.DiskMB -= t.DiskMB
		st.Tasks = append(st.Tasks, auctioneer.RunningTask{TaskGUID: t.TaskGUID, MemoryMB: t.MemoryMB, DiskMB: t.DiskMB})
	} else {
		l := &a.LRPs[p.Request]
		st.Available.MemoryMB -= l.MemoryMB + st.ProxyMemoryMB
		st.Available.DiskMB -= l.DiskMB
		st.LRPs = append(st.LRPs, auctioneer.RunningLRP{ProcessGUID: l.ProcessGUID, Index: l.Index, MemoryMB: l.MemoryMB, DiskMB: l.DiskMB})
	}
	st.Available.Containers--
	st.StartingContainers++
}
