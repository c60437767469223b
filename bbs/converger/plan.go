package converger

import (
	"time"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/store"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Why a row is deleted or an instance retired.
const (
	ReasonExtra              = "index above the desired instance count"
	ReasonOrphan             = "no desired LRP"
	ReasonCellGone           = "cell gone"
	ReasonReplacementRunning = "replacement running"
)

// NewInstance is a missing index: an UNCLAIMED ordinary row to create and auction.
type NewInstance struct {
	Desired *modelsv1.DesiredLRPSchedulingInfo
	Index   int32
}

// RowAction is an action on one instance row, planned at the row's revision.
type RowAction struct {
	Row store.ActualRow
	// Desired is the row's desired LRP (nil for an orphan); set on every action that auctions.
	Desired *modelsv1.DesiredLRPSchedulingInfo
	// Reason says why (deletions and retirements).
	Reason string
}

// Promotion is a suspect whose cell came back: it becomes the ordinary row
// again, replacing the replacement (if any) in the same transaction.
type Promotion struct {
	Suspect     store.ActualRow
	Replacement *store.ActualRow
}

// Stop is a CLAIMED or RUNNING instance on a live cell to stop through its rep
// (the rep then removes the row).
type Stop struct {
	Row    store.ActualRow
	Cell   *modelsv1.CellPresence
	Reason string
}

// TaskAction is an action on one task, planned at the task's revision.
type TaskAction struct {
	Row    store.TaskRow
	Reason string
}

// Counts are the state a pass saw, for metrics.
type Counts struct {
	// Desired is the sum of desired instances; Running, Claimed, Unclaimed and
	// Crashed count ordinary rows; Missing and Extra are ordinary indices
	// missing below, and present at or above, the desired count; Suspect counts
	// suspect rows; Evacuating counts evacuating rows.
	Desired, Running, Claimed, Unclaimed, Crashed int
	Missing, Extra, Suspect, Evacuating           int
	// Tasks counts tasks by state.
	Tasks map[modelsv1.TaskState]int
	// Cells counts live cells; FreshDomains counts fresh domains.
	Cells, FreshDomains int
}

// Plan is what one convergence pass does. Every write it implies is guarded
// by the revision of the rows it was planned from; no two write actions of a
// plan touch the same key.
type Plan struct {
	// Now is the time the plan was made for; rows it writes are stamped with it.
	Now time.Time

	// Create holds missing indices: create UNCLAIMED, then auction.
	Create []NewInstance
	// AuctionStale holds UNCLAIMED rows older than the stale duration: auction again, no write.
	AuctionStale []RowAction
	// Restart holds CRASHED rows the crash policy restarts: UNCLAIMED, then auction.
	Restart []RowAction
	// Suspect holds ordinary CLAIMED/RUNNING rows on a vanished cell with no
	// suspect yet: the row moves to SUSPECT (same state and instance, so it
	// stays routable) and a new UNCLAIMED ordinary replacement is auctioned.
	Suspect []RowAction
	// Unclaim holds ordinary CLAIMED/RUNNING rows on a vanished cell whose index
	// already has a suspect (the replacement's cell vanished too): UNCLAIMED, then auction.
	Unclaim []RowAction
	// Promote holds suspects whose cell is back.
	Promote []Promotion
	// Delete holds rows to delete: extra and orphaned UNCLAIMED/CRASHED rows
	// and rows on gone cells (fresh domains only), suspects whose replacement
	// runs (a suspect on a gone cell is otherwise kept: it is routable until
	// then, and is promoted back if its cell returns), orphaned or extra suspects (fresh domains only), evacuating rows
	// whose cell is gone, and orphaned evacuating rows (fresh domains only).
	Delete []RowAction
	// Stop holds extra and orphaned CLAIMED/RUNNING instances on live cells
	// (fresh domains only), to stop through their reps.
	Stop []Stop

	// FailTasks holds PENDING tasks past their expiry and RUNNING tasks whose
	// cell vanished: COMPLETED, failed with the reason.
	FailTasks []TaskAction
	// AuctionTasks holds every other PENDING task: auction again, no write.
	AuctionTasks []store.TaskRow
	// DemoteTasks holds RESOLVING tasks not updated within the kick duration:
	// back to COMPLETED, and their callback is submitted again.
	DemoteTasks []store.TaskRow
	// KickTasks holds COMPLETED tasks with a callback URL not updated within
	// the kick duration: submitted to the callback worker again, no write.
	KickTasks []store.TaskRow
	// DeleteTasks holds COMPLETED and RESOLVING tasks first completed longer
	// than the completed-task expiry ago.
	DeleteTasks []store.TaskRow

	Counts Counts
}

// Writes is how many guarded changes the plan implies.
func (p *Plan) Writes() int {
	return len(p.Create) + len(p.Restart) + len(p.Suspect) + len(p.Unclaim) + len(p.Promote) + len(p.Delete) +
		len(p.FailTasks) + len(p.DemoteTasks) + len(p.DeleteTasks)
}

// slot is the rows of one index of one process guid.
type slot struct {
	ord, sus, evac *store.ActualRow
}

// MakePlan decides one convergence pass over snap at now. It is pure: it reads
// snap (and never modifies it) and returns the actions; [Converger] applies
// them. Its cost is linear in the number of desired instances, rows and tasks.
func MakePlan(snap *store.Snapshot, now time.Time, cfg Config) *Plan {
	cfg = cfg.withDefaults()
	p := &Plan{Now: now, Counts: Counts{Tasks: map[modelsv1.TaskState]int{}, Cells: len(snap.Cells)}}
	fresh := freshDomains(snap.Domains, now)
	p.Counts.FreshDomains = len(fresh)

	slots := map[int32]*slot{}
	pool := make([]slot, 0, 16)
	lrp := func(guid string, d *modelsv1.DesiredLRPSchedulingInfo, rows []store.ActualRow) {
		clear(slots)
		pool = pool[:0]
		if cap(pool) < len(rows) {
			pool = make([]slot, 0, len(rows))
		}
		for i := range rows {
			r := &rows[i]
			s := slots[r.Index]
			if s == nil {
				pool = append(pool, slot{})
				s = &pool[len(pool)-1]
				slots[r.Index] = s
			}
			switch r.Presence {
			case models.Ordinary:
				s.ord = r
			case models.Suspect:
				s.sus = r
			case models.Evacuating:
				s.evac = r
			}
		}
		p.planLRP(snap, fresh, cfg, guid, d, slots)
	}
	for guid, d := range snap.Desired {
		lrp(guid, d.Info, snap.Actuals[guid])
	}
	for guid, rows := range snap.Actuals {
		if _, ok := snap.Desired[guid]; !ok {
			lrp(guid, nil, rows)
		}
	}
	for _, t := range snap.Tasks {
		p.planTask(snap, cfg, t)
	}
	return p
}

// freshDomains is the set of domains whose freshness has not expired.
func freshDomains(domains map[string]*modelsv1.Domain, now time.Time) map[string]bool {
	out := make(map[string]bool, len(domains))
	for name, d := range domains {
		if d.GetExpiresAt() == 0 || d.GetExpiresAt() > now.UnixNano() {
			out[name] = true
		}
	}
	return out
}

func cellOf(r *store.ActualRow) string { return r.LRP.GetInstanceKey().GetCellId() }

// live says whether the row's cell is present.
func live(snap *store.Snapshot, r *store.ActualRow) bool {
	_, ok := snap.Cells[cellOf(r)]
	return ok
}

func placed(r *store.ActualRow) bool {
	s := r.LRP.GetState()
	return s == models.Claimed || s == models.Running
}

func (p *Plan) planLRP(snap *store.Snapshot, fresh map[string]bool, cfg Config, guid string, d *modelsv1.DesiredLRPSchedulingInfo, slots map[int32]*slot) {
	var instances int32
	var domain string
	if d != nil {
		instances = d.GetInstances()
		domain = d.GetKey().GetDomain()
		p.Counts.Desired += int(instances)
		for i := int32(0); i < instances; i++ {
			if s := slots[i]; s == nil || s.ord == nil {
				if s != nil && s.sus != nil {
					continue // handled with the suspect below (promotion or a new replacement)
				}
				p.Create = append(p.Create, NewInstance{Desired: d, Index: i})
				p.Counts.Missing++
			}
		}
	}
	isFresh := fresh[domain]
	for index, s := range slots {
		if d == nil {
			// An orphan's domain is the one its rows carry.
			for _, r := range []*store.ActualRow{s.ord, s.sus, s.evac} {
				if r != nil {
					domain = r.LRP.GetKey().GetDomain()
					break
				}
			}
			isFresh = fresh[domain]
		}
		wanted := d != nil && index < instances
		reason := ReasonExtra
		if d == nil {
			reason = ReasonOrphan
		}
		ordTaken := false // the ordinary key already has a write planned

		if sus := s.sus; sus != nil {
			p.Counts.Suspect++
			_, cellUp := snap.Cells[cellOf(sus)]
			switch {
			case !wanted:
				if isFresh {
					p.Delete = append(p.Delete, RowAction{Row: *sus, Desired: d, Reason: reason})
				}
			case s.ord != nil && s.ord.LRP.GetState() == models.Running && live(snap, s.ord):
				// The replacement is up (StartActualLRP deletes the suspect too; this catches the rest).
				p.Delete = append(p.Delete, RowAction{Row: *sus, Desired: d, Reason: ReasonReplacementRunning})
			case cellUp:
				p.Promote = append(p.Promote, Promotion{Suspect: *sus, Replacement: s.ord})
				ordTaken = true
			case s.ord == nil:
				// The replacement is gone (say, deleted by an operator): create another.
				p.Create = append(p.Create, NewInstance{Desired: d, Index: index})
				p.Counts.Missing++
				ordTaken = true
			}
		}

		if ev := s.evac; ev != nil {
			p.Counts.Evacuating++
			if _, cellUp := snap.Cells[cellOf(ev)]; !cellUp {
				p.Delete = append(p.Delete, RowAction{Row: *ev, Desired: d, Reason: ReasonCellGone})
			} else if d == nil && isFresh {
				p.Delete = append(p.Delete, RowAction{Row: *ev, Desired: d, Reason: ReasonOrphan})
			}
		}

		ord := s.ord
		if ord == nil {
			continue
		}
		state := ord.LRP.GetState()
		switch state {
		case models.Running:
			p.Counts.Running++
		case models.Claimed:
			p.Counts.Claimed++
		case models.Unclaimed:
			p.Counts.Unclaimed++
		case models.Crashed:
			p.Counts.Crashed++
		}
		if ordTaken {
			continue
		}
		if !wanted {
			if d != nil {
				p.Counts.Extra++
			}
			if isFresh {
				p.retire(snap, ord, d, reason)
			}
			continue
		}
		switch state {
		case models.Unclaimed:
			if now := p.Now.UnixNano(); now-ord.LRP.GetSince() >= int64(cfg.StaleUnclaimed) {
				p.AuctionStale = append(p.AuctionStale, RowAction{Row: *ord, Desired: d})
			}
		case models.Crashed:
			if cfg.CrashPolicy.ShouldRestart(ord.LRP.GetCrashCount(), time.Unix(0, ord.LRP.GetSince()), p.Now) {
				p.Restart = append(p.Restart, RowAction{Row: *ord, Desired: d})
			}
		case models.Claimed, models.Running:
			if _, cellUp := snap.Cells[cellOf(ord)]; cellUp {
				break
			}
			if s.sus == nil {
				p.Suspect = append(p.Suspect, RowAction{Row: *ord, Desired: d, Reason: ReasonCellGone})
			} else {
				p.Unclaim = append(p.Unclaim, RowAction{Row: *ord, Desired: d, Reason: ReasonCellGone})
			}
		}
	}
}

// retire plans the end of an instance that is not desired: UNCLAIMED and
// CRASHED rows, and rows on gone cells, are deleted; the others are stopped
// on their cells.
func (p *Plan) retire(snap *store.Snapshot, r *store.ActualRow, d *modelsv1.DesiredLRPSchedulingInfo, reason string) {
	if placed(r) {
		if cell, ok := snap.Cells[cellOf(r)]; ok {
			p.Stop = append(p.Stop, Stop{Row: *r, Cell: cell, Reason: reason})
			return
		}
	}
	p.Delete = append(p.Delete, RowAction{Row: *r, Desired: d, Reason: reason})
}

func (p *Plan) planTask(snap *store.Snapshot, cfg Config, t store.TaskRow) {
	task := t.Task
	now := p.Now.UnixNano()
	p.Counts.Tasks[task.GetState()]++
	switch task.GetState() {
	case models.TaskPending:
		if now-task.GetCreatedAt() >= int64(cfg.ExpirePendingTask) {
			p.FailTasks = append(p.FailTasks, TaskAction{Row: t, Reason: TaskExpiredReason})
		} else {
			p.AuctionTasks = append(p.AuctionTasks, t)
		}
	case models.TaskRunning:
		if _, ok := snap.Cells[task.GetCellId()]; !ok {
			p.FailTasks = append(p.FailTasks, TaskAction{Row: t, Reason: TaskCellGoneReason})
		}
	case models.TaskCompleted, models.TaskResolving:
		first := task.GetFirstCompletedAt()
		if first == 0 {
			first = task.GetUpdatedAt()
		}
		kick := now-task.GetUpdatedAt() >= int64(cfg.KickTask)
		switch {
		case now-first >= int64(cfg.ExpireCompletedTask):
			p.DeleteTasks = append(p.DeleteTasks, t)
		case task.GetState() == models.TaskResolving && kick:
			p.DemoteTasks = append(p.DemoteTasks, t)
		case task.GetState() == models.TaskCompleted && kick && task.GetDefinition().GetCompletionCallbackUrl() != "":
			p.KickTasks = append(p.KickTasks, t)
		}
	}
}
