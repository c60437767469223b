package converger

import (
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/auctionrequest"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/store"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Action names, as metric labels.
const (
	actionCreate      = "create"
	actionRestart     = "restart"
	actionSuspect     = "suspect"
	actionUnclaim     = "unclaim"
	actionPromote     = "promote"
	actionDelete      = "delete"
	actionFailTask    = "fail_task"
	actionDemoteTask  = "demote_task"
	actionDeleteTask  = "delete_task"
	actionAuctionLRP  = "auction_stale"
	actionAuctionTask = "auction_task"
	actionKickTask    = "kick_task"
	actionStop        = "stop"
)

// step is one guarded change and what follows once it commits.
type step struct {
	change store.Change
	action string
	// auction, when set, is auctioned for index once the change commits.
	auction *modelsv1.DesiredLRPSchedulingInfo
	index   int32
	// submit, when set, goes to the callback worker once the change commits.
	submit *modelsv1.Task
}

func actualKey(keys store.Keys, r store.ActualRow) string {
	return keys.Actual(r.ProcessGUID, r.Index, r.Presence)
}

func asPresence(row *modelsv1.ActualLRP, p modelsv1.ActualLRPPresence) *modelsv1.ActualLRP {
	next := proto.Clone(row).(*modelsv1.ActualLRP)
	next.Presence = p
	next.ModificationTag = models.NextTag(row.GetModificationTag())
	return next
}

// demoteTask moves a RESOLVING task back to COMPLETED, so its callback can be retried.
func demoteTask(t *modelsv1.Task, now int64) *modelsv1.Task {
	next := proto.Clone(t).(*modelsv1.Task)
	next.State = models.TaskCompleted
	next.UpdatedAt = now
	next.ModificationTag = models.NextTag(t.GetModificationTag())
	return next
}

func hasCallback(t *modelsv1.Task) bool {
	return t.GetDefinition().GetCompletionCallbackUrl() != ""
}

// steps turns the plan's writes into guarded changes, each guarded by the
// revisions the plan read.
func (p *Plan) steps(keys store.Keys) []step {
	now := p.Now
	out := make([]step, 0, p.Writes())
	for _, c := range p.Create {
		key := &modelsv1.ActualLRPKey{ProcessGuid: c.Desired.GetKey().GetProcessGuid(), Index: c.Index, Domain: c.Desired.GetKey().GetDomain()}
		k := keys.Actual(key.GetProcessGuid(), c.Index, models.Ordinary)
		out = append(out, step{
			change: store.Change{Guards: []store.Guard{{Key: k}}, Writes: []store.Write{{Key: k, Value: models.NewUnclaimed(key, now)}}},
			action: actionCreate, auction: c.Desired, index: c.Index,
		})
	}
	unclaim := func(a RowAction, action string) {
		k := actualKey(keys, a.Row)
		out = append(out, step{
			change: store.Change{Guards: []store.Guard{{Key: k, Rev: a.Row.Rev}}, Writes: []store.Write{{Key: k, Value: models.Unclaim(a.Row.LRP, now)}}},
			action: action, auction: a.Desired, index: a.Row.Index,
		})
	}
	for _, a := range p.Restart {
		unclaim(a, actionRestart)
	}
	for _, a := range p.Unclaim {
		unclaim(a, actionUnclaim)
	}
	for _, a := range p.Suspect {
		ord := actualKey(keys, a.Row)
		sus := keys.Actual(a.Row.ProcessGUID, a.Row.Index, models.Suspect)
		replacement := models.NewUnclaimed(a.Row.LRP.GetKey(), now)
		out = append(out, step{
			change: store.Change{
				Guards: []store.Guard{{Key: ord, Rev: a.Row.Rev}, {Key: sus}},
				// The suspect is written first, so a watcher sees the instance
				// as routable throughout.
				Writes: []store.Write{{Key: sus, Value: asPresence(a.Row.LRP, models.Suspect)}, {Key: ord, Value: replacement}},
			},
			action: actionSuspect, auction: a.Desired, index: a.Row.Index,
		})
	}
	for _, pr := range p.Promote {
		sus := actualKey(keys, pr.Suspect)
		ord := keys.Actual(pr.Suspect.ProcessGUID, pr.Suspect.Index, models.Ordinary)
		var ordRev int64
		if pr.Replacement != nil {
			ordRev = pr.Replacement.Rev
		}
		out = append(out, step{
			change: store.Change{
				Guards: []store.Guard{{Key: sus, Rev: pr.Suspect.Rev}, {Key: ord, Rev: ordRev}},
				Writes: []store.Write{{Key: ord, Value: asPresence(pr.Suspect.LRP, models.Ordinary)}, {Key: sus}},
			},
			action: actionPromote,
		})
	}
	for _, a := range p.Delete {
		k := actualKey(keys, a.Row)
		out = append(out, step{
			change: store.Change{Guards: []store.Guard{{Key: k, Rev: a.Row.Rev}}, Writes: []store.Write{{Key: k}}},
			action: actionDelete,
		})
	}
	for _, f := range p.FailTasks {
		next, err := models.FailTask(f.Row.Task, f.Reason, now)
		if err != nil {
			continue // the planner only fails PENDING and RUNNING tasks
		}
		k := keys.Task(f.Row.Task.GetTaskGuid())
		s := step{change: store.Change{Guards: []store.Guard{{Key: k, Rev: f.Row.Rev}}, Writes: []store.Write{{Key: k, Value: next}}}, action: actionFailTask}
		if hasCallback(next) {
			s.submit = next
		}
		out = append(out, s)
	}
	for _, t := range p.DemoteTasks {
		next := demoteTask(t.Task, now.UnixNano())
		k := keys.Task(t.Task.GetTaskGuid())
		s := step{change: store.Change{Guards: []store.Guard{{Key: k, Rev: t.Rev}}, Writes: []store.Write{{Key: k, Value: next}}}, action: actionDemoteTask}
		if hasCallback(next) {
			s.submit = next
		}
		out = append(out, s)
	}
	for _, t := range p.DeleteTasks {
		k := keys.Task(t.Task.GetTaskGuid())
		out = append(out, step{change: store.Change{Guards: []store.Guard{{Key: k, Rev: t.Rev}}, Writes: []store.Write{{Key: k}}}, action: actionDeleteTask})
	}
	return out
}

// lrpAuctions groups the indices to auction by process guid into one start
// request per desired LRP, indices ascending, requests by process guid.
type lrpAuctions struct {
	byGUID map[string]*auctioneerv1.LRPStartRequest
	n      int
}

func (a *lrpAuctions) add(d *modelsv1.DesiredLRPSchedulingInfo, index int32) {
	if d == nil {
		return
	}
	if a.byGUID == nil {
		a.byGUID = map[string]*auctioneerv1.LRPStartRequest{}
	}
	guid := d.GetKey().GetProcessGuid()
	req := a.byGUID[guid]
	if req == nil {
		req = auctionrequest.LRPRepair(d)
		a.byGUID[guid] = req
	}
	req.Indices = append(req.Indices, index)
	a.n++
}

func (a *lrpAuctions) requests() []*auctioneerv1.LRPStartRequest {
	out := make([]*auctioneerv1.LRPStartRequest, 0, len(a.byGUID))
	for _, req := range a.byGUID {
		sort.Slice(req.Indices, func(i, j int) bool { return req.Indices[i] < req.Indices[j] })
		out = append(out, req)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetProcessGuid() < out[j].GetProcessGuid() })
	return out
}
