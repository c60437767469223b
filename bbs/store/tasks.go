package store

import (
	"context"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// DesireTask stores a new PENDING task.
func (s *Store) DesireTask(ctx context.Context, guid, domain string, def *modelsv1.TaskDefinition) (*modelsv1.Task, error) {
	if err := s.checkDecodable(s.keys.Task(guid)); err != nil {
		return nil, err
	}
	task := models.NewTask(guid, domain, def, s.now())
	err := s.apply(ctx, func(st *cacheState) (*mutation, error) {
		if _, ok := st.tasks[guid]; ok {
			return nil, fmt.Errorf("%w: task %s", models.ErrAlreadyExists, guid)
		}
		m := &mutation{}
		m.guard(s.keys.Task(guid), 0)
		return m, s.putProto(m, s.keys.Task(guid), task)
	})
	if err != nil {
		return nil, err
	}
	return task, nil
}

// GetTask returns a task.
func (s *Store) GetTask(guid string) (*modelsv1.Task, error) {
	var out *modelsv1.Task
	s.cache.read(func(st *cacheState) {
		if t, ok := st.tasks[guid]; ok {
			out = t.val
		}
	})
	if out == nil {
		if err := s.checkDecodable(s.keys.Task(guid)); err != nil {
			return nil, err
		}
		return nil, notFound("task %s", guid)
	}
	return out, nil
}

// TaskFilter selects tasks; empty fields match everything.
type TaskFilter struct {
	Domain string
	CellID string
	State  modelsv1.TaskState
}

// ListTasks lists tasks sorted by guid, with the cache revision.
func (s *Store) ListTasks(f TaskFilter) ([]*modelsv1.Task, int64) {
	var out []*modelsv1.Task
	var rev int64
	s.cache.read(func(st *cacheState) {
		rev = st.rev
		var guids []string
		switch {
		case f.CellID != "":
			for g := range st.tasksByCell[f.CellID] {
				guids = append(guids, g)
			}
		case f.State != modelsv1.TaskState_TASK_STATE_UNSPECIFIED:
			for g := range st.tasksByState[f.State] {
				guids = append(guids, g)
			}
		default:
			guids = make([]string, 0, len(st.tasks))
			for g := range st.tasks {
				guids = append(guids, g)
			}
		}
		sort.Strings(guids)
		for _, g := range guids {
			t := st.tasks[g].val
			if (f.Domain == "" || t.GetDomain() == f.Domain) && (f.State == 0 || t.GetState() == f.State) && (f.CellID == "" || t.GetCellId() == f.CellID) {
				out = append(out, t)
			}
		}
	})
	return out, rev
}

// changeTask applies a transition to a task under its guard; change returns
// nil for no change. It returns the task before and after.
func (s *Store) changeTask(ctx context.Context, guid string, change func(cur *modelsv1.Task) (*modelsv1.Task, error)) (before, after *modelsv1.Task, err error) {
	err = s.apply(ctx, func(st *cacheState) (*mutation, error) {
		cur, ok := st.tasks[guid]
		if !ok {
			return nil, notFound("task %s", guid)
		}
		before = cur.val
		next, err := change(cur.val)
		after = next
		if err != nil || next == nil {
			return nil, err
		}
		m := &mutation{}
		m.guard(s.keys.Task(guid), cur.rev)
		return m, s.putProto(m, s.keys.Task(guid), next)
	})
	return before, after, err
}

// StartTask moves a PENDING task to RUNNING on a cell.
func (s *Store) StartTask(ctx context.Context, guid, cellID string) (shouldStart bool, err error) {
	_, _, err = s.changeTask(ctx, guid, func(cur *modelsv1.Task) (*modelsv1.Task, error) {
		next, start, err := models.StartTask(cur, cellID, s.now())
		shouldStart = start
		if !start {
			return nil, err
		}
		return next, err
	})
	return shouldStart, err
}

// CompleteTask records a RUNNING task's outcome.
func (s *Store) CompleteTask(ctx context.Context, guid, cellID string, failed bool, reason, result string) (*modelsv1.Task, error) {
	_, after, err := s.changeTask(ctx, guid, func(cur *modelsv1.Task) (*modelsv1.Task, error) {
		return models.CompleteTask(cur, cellID, failed, reason, result, s.now())
	})
	return after, err
}

// FailTask completes a PENDING or RUNNING task as failed; it returns the task before and after.
func (s *Store) FailTask(ctx context.Context, guid, reason string) (before, after *modelsv1.Task, err error) {
	return s.changeTask(ctx, guid, func(cur *modelsv1.Task) (*modelsv1.Task, error) {
		return models.FailTask(cur, reason, s.now())
	})
}

// RejectTask hands a task back; retry says whether it is PENDING again (else it failed).
func (s *Store) RejectTask(ctx context.Context, guid, reason string) (after *modelsv1.Task, retry bool, err error) {
	_, after, err = s.changeTask(ctx, guid, func(cur *modelsv1.Task) (*modelsv1.Task, error) {
		next, r, err := models.RejectTask(cur, reason, s.maxTask, s.now())
		retry = r
		return next, err
	})
	return after, retry, err
}

// ResolvingTask moves a COMPLETED task to RESOLVING.
func (s *Store) ResolvingTask(ctx context.Context, guid string) (*modelsv1.Task, error) {
	_, after, err := s.changeTask(ctx, guid, func(cur *modelsv1.Task) (*modelsv1.Task, error) {
		return models.ResolvingTask(cur, s.now())
	})
	return after, err
}

// DeleteTask deletes a RESOLVING task.
func (s *Store) DeleteTask(ctx context.Context, guid string) error {
	return s.apply(ctx, func(st *cacheState) (*mutation, error) {
		cur, ok := st.tasks[guid]
		if !ok {
			return nil, notFound("task %s", guid)
		}
		if err := models.CheckDeleteTask(cur.val); err != nil {
			return nil, err
		}
		m := &mutation{}
		m.guard(s.keys.Task(guid), cur.rev)
		m.del(s.keys.Task(guid))
		return m, nil
	})
}

// UpsertDomain marks a domain fresh for ttl (0: forever), binding its key to an etcd lease.
func (s *Store) UpsertDomain(ctx context.Context, name string, ttl time.Duration) error {
	d := &modelsv1.Domain{Name: name, TtlSeconds: int64(ttl / time.Second)}
	var opts []clientv3.OpOption
	if ttl > 0 {
		d.ExpiresAt = s.now().Add(ttl).UnixNano()
		lease, err := s.client.Grant(ctx, int64(ttl/time.Second))
		if err != nil {
			return fmt.Errorf("grant a lease for domain %s: %w", name, classify(err))
		}
		opts = append(opts, clientv3.WithLease(lease.ID))
	}
	b, err := s.marshal(s.keys.Domain(name), d)
	if err != nil {
		return err
	}
	resp, err := s.client.Put(ctx, s.keys.Domain(name), string(b), opts...)
	if err != nil {
		return fmt.Errorf("put domain %s: %w", name, classify(err))
	}
	return s.cache.WaitForRevision(ctx, resp.Header.Revision)
}

// ListDomains lists the fresh domains sorted by name.
func (s *Store) ListDomains() ([]*modelsv1.Domain, int64) {
	var out []*modelsv1.Domain
	var rev int64
	now := s.now().UnixNano()
	s.cache.read(func(st *cacheState) {
		rev = st.rev
		for _, d := range st.domains {
			if d.val.GetExpiresAt() == 0 || d.val.GetExpiresAt() > now {
				out = append(out, d.val)
			}
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, rev
}

// ListCells lists the live cells sorted by id.
func (s *Store) ListCells() ([]*modelsv1.CellPresence, int64) {
	var out []*modelsv1.CellPresence
	var rev int64
	s.cache.read(func(st *cacheState) {
		rev = st.rev
		for _, c := range st.cells {
			out = append(out, c.val)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].GetCellId() < out[j].GetCellId() })
	return out, rev
}

// GetCell returns a live cell's presence.
func (s *Store) GetCell(id string) (*modelsv1.CellPresence, error) {
	var out *modelsv1.CellPresence
	s.cache.read(func(st *cacheState) {
		if c, ok := st.cells[id]; ok {
			out = c.val
		}
	})
	if out == nil {
		return nil, notFound("cell %s", id)
	}
	return out, nil
}

// LockValue returns the raw record of a lock, as package locket stores it.
func (s *Store) LockValue(name string) ([]byte, bool) {
	var out []byte
	var ok bool
	s.cache.read(func(st *cacheState) {
		var l item[[]byte]
		l, ok = st.locks[name]
		out = l.val
	})
	return out, ok
}
