package sim

import (
	"fmt"
)

// Static cell states while checking a timeline: a drain is taken as done
// at once, since when it completes depends on the run.
const (
	checkCellUp = iota
	checkCellFailed
	checkCellDrained
)

// CheckTimeline checks a parsed timeline against the scenario it will run
// on: every app, task and cell an event names must exist at that time
// (apps come from the scenario's cells and LRPs and from earlier
// desire_lrp and deploy events; a remove_lrp or a deploy retires the old
// name), new names must be new, cell events must follow fail/drain →
// recover, a crash's index must be below the app's instance count, and the
// apps' instances together stay within MaxWork. Errors name the event.
func CheckTimeline(s *Scenario, tl *Timeline) error {
	var errs fieldErrors
	apps := map[string]int{} // live app → instances
	total := 0
	addIndex := func(guid string, index int) {
		if n, ok := apps[guid]; !ok || index+1 > n {
			total += index + 1 - n
			apps[guid] = index + 1
		}
	}
	cells := make(map[string]int, len(s.Cells))
	tasks := map[string]bool{}
	for _, c := range s.Cells {
		cells[c.CellID] = checkCellUp
		if c.Evacuating {
			cells[c.CellID] = checkCellDrained
		}
		for _, l := range c.LRPs {
			addIndex(l.ProcessGUID, l.Index)
		}
		for _, t := range c.Tasks {
			tasks[t.TaskGUID] = true
		}
	}
	for _, l := range s.LRPs {
		addIndex(l.ProcessGUID, l.Index)
	}
	for _, t := range s.Tasks {
		tasks[t.TaskGUID] = true
	}
	for i := range tl.Events {
		e := &tl.Events[i]
		path := fmt.Sprintf("events[%d]", i)
		knownApp := func() (int, bool) {
			n, ok := apps[e.ProcessGUID]
			if !ok {
				errs.add(path+".process_guid", "unknown app %q at %d ms (not in the scenario, not desired earlier, or removed or replaced by a deploy before)", e.ProcessGUID, e.AtMS)
			}
			return n, ok
		}
		knownCell := func() (int, bool) {
			st, ok := cells[e.CellID]
			if !ok {
				errs.add(path+".cell_id", "unknown cell %q (not in the scenario)", e.CellID)
			}
			return st, ok
		}
		switch e.Type {
		case EventDesireLRP:
			if _, dup := apps[e.ProcessGUID]; dup {
				errs.add(path+".process_guid", "app %q already exists at %d ms", e.ProcessGUID, e.AtMS)
				continue
			}
			apps[e.ProcessGUID] = *e.Instances
			total += *e.Instances
		case EventDesireTask:
			if tasks[e.TaskGUID] {
				errs.add(path+".task_guid", "task %q already exists", e.TaskGUID)
			}
			tasks[e.TaskGUID] = true
		case EventScale:
			if n, ok := knownApp(); ok {
				total += *e.Instances - n
				apps[e.ProcessGUID] = *e.Instances
			}
		case EventRemoveLRP:
			if n, ok := knownApp(); ok {
				total -= n
				delete(apps, e.ProcessGUID)
			}
		case EventCrash:
			if n, ok := knownApp(); ok && *e.Index >= n {
				errs.add(path+".index", "app %q has %d instances at %d ms", e.ProcessGUID, n, e.AtMS)
			}
		case EventDeploy:
			n, ok := knownApp()
			if _, dup := apps[e.NewProcessGUID]; dup {
				errs.add(path+".new_process_guid", "app %q already exists at %d ms", e.NewProcessGUID, e.AtMS)
				continue
			}
			if ok {
				delete(apps, e.ProcessGUID)
				apps[e.NewProcessGUID] = n
			}
		case EventCellFail:
			if st, ok := knownCell(); ok {
				if st == checkCellFailed {
					errs.add(path+".cell_id", "cell %q has already failed at %d ms", e.CellID, e.AtMS)
				}
				cells[e.CellID] = checkCellFailed
			}
		case EventCellDrain:
			if st, ok := knownCell(); ok {
				if st != checkCellUp {
					errs.add(path+".cell_id", "cell %q is not up at %d ms (failed or drained before)", e.CellID, e.AtMS)
				}
				cells[e.CellID] = checkCellDrained
			}
		case EventCellRecover:
			if st, ok := knownCell(); ok {
				if st == checkCellUp {
					errs.add(path+".cell_id", "cell %q is up at %d ms: only a failed or drained cell recovers", e.CellID, e.AtMS)
				}
				cells[e.CellID] = checkCellUp
			}
		}
		if total > MaxWork {
			errs.add(path, "the apps' instances add up to %d at %d ms; at most %d", total, e.AtMS, MaxWork)
			break
		}
	}
	return errs.err()
}
