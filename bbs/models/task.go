package models

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Task state short names.
const (
	TaskPending   = modelsv1.TaskState_TASK_STATE_PENDING
	TaskRunning   = modelsv1.TaskState_TASK_STATE_RUNNING
	TaskCompleted = modelsv1.TaskState_TASK_STATE_COMPLETED
	TaskResolving = modelsv1.TaskState_TASK_STATE_RESOLVING
)

// Failure reasons the BBS writes on tasks.
const (
	TaskCancelledReason = "task was cancelled"
)

// TaskStateName is a short name of a task state for messages ("RUNNING").
func TaskStateName(s modelsv1.TaskState) string {
	switch s {
	case TaskPending:
		return "PENDING"
	case TaskRunning:
		return "RUNNING"
	case TaskCompleted:
		return "COMPLETED"
	case TaskResolving:
		return "RESOLVING"
	}
	return s.String()
}

func invalidTask(t *modelsv1.Task, action string) error {
	return fmt.Errorf("%w: cannot %s task %s: it is %s", ErrInvalidTransition, action, t.GetTaskGuid(), TaskStateName(t.GetState()))
}

func touch(t *modelsv1.Task, now time.Time) *modelsv1.Task {
	next := proto.Clone(t).(*modelsv1.Task)
	next.UpdatedAt = now.UnixNano()
	next.ModificationTag = NextTag(t.GetModificationTag())
	return next
}

// NewTask builds a PENDING task.
func NewTask(guid, domain string, def *modelsv1.TaskDefinition, now time.Time) *modelsv1.Task {
	return &modelsv1.Task{
		TaskGuid:        guid,
		Domain:          domain,
		Definition:      proto.Clone(def).(*modelsv1.TaskDefinition),
		State:           TaskPending,
		CreatedAt:       now.UnixNano(),
		UpdatedAt:       now.UnixNano(),
		ModificationTag: NewTag(),
	}
}

// StartTask moves a PENDING task to RUNNING on a cell (shouldStart true). A
// repeat by the same cell is answered shouldStart false with no change.
func StartTask(cur *modelsv1.Task, cellID string, now time.Time) (next *modelsv1.Task, shouldStart bool, err error) {
	switch {
	case cur.GetState() == TaskPending:
		next = touch(cur, now)
		next.State = TaskRunning
		next.CellId = cellID
		return next, true, nil
	case cur.GetState() == TaskRunning && cur.GetCellId() == cellID:
		return cur, false, nil
	}
	return nil, false, invalidTask(cur, "start")
}

func complete(cur *modelsv1.Task, failed bool, reason, result string, now time.Time) *modelsv1.Task {
	next := touch(cur, now)
	next.State = TaskCompleted
	next.Failed = failed
	next.FailureReason = Truncate(reason)
	next.Result = result
	next.FirstCompletedAt = now.UnixNano()
	return next
}

// CompleteTask records a RUNNING task's outcome; it must come from the task's cell.
func CompleteTask(cur *modelsv1.Task, cellID string, failed bool, reason, result string, now time.Time) (*modelsv1.Task, error) {
	if cur.GetState() != TaskRunning {
		return nil, invalidTask(cur, "complete")
	}
	if cur.GetCellId() != cellID {
		return nil, fmt.Errorf("%w: task %s is running on a different cell (%q, not %q)", ErrInvalidTransition, cur.GetTaskGuid(), cur.GetCellId(), cellID)
	}
	if len(result) > MaxTaskResultBytes {
		result = result[:MaxTaskResultBytes]
	}
	return complete(cur, failed, reason, result, now), nil
}

// FailTask completes a PENDING or RUNNING task as failed (cancel uses it with TaskCancelledReason).
func FailTask(cur *modelsv1.Task, reason string, now time.Time) (*modelsv1.Task, error) {
	if cur.GetState() != TaskPending && cur.GetState() != TaskRunning {
		return nil, invalidTask(cur, "fail")
	}
	return complete(cur, true, reason, "", now), nil
}

// RejectTask hands a PENDING or RUNNING task back for another placement. A
// task already rejected maxRetries times is failed with the reason instead.
func RejectTask(cur *modelsv1.Task, reason string, maxRetries int32, now time.Time) (next *modelsv1.Task, retry bool, err error) {
	if cur.GetState() != TaskPending && cur.GetState() != TaskRunning {
		return nil, false, invalidTask(cur, "reject")
	}
	if cur.GetRejectionCount() >= maxRetries {
		next = complete(cur, true, reason, "", now)
		next.RejectionReason = Truncate(reason)
		return next, false, nil
	}
	next = touch(cur, now)
	next.State = TaskPending
	next.CellId = ""
	next.RejectionCount++
	next.RejectionReason = Truncate(reason)
	return next, true, nil
}

// ResolvingTask moves a COMPLETED task to RESOLVING.
func ResolvingTask(cur *modelsv1.Task, now time.Time) (*modelsv1.Task, error) {
	if cur.GetState() != TaskCompleted {
		return nil, invalidTask(cur, "resolve")
	}
	next := touch(cur, now)
	next.State = TaskResolving
	return next, nil
}

// CheckDeleteTask says whether a task may be deleted: it must be RESOLVING.
func CheckDeleteTask(cur *modelsv1.Task) error {
	if cur.GetState() != TaskResolving {
		return invalidTask(cur, "delete")
	}
	return nil
}
