package server

import (
	"context"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/gavelhq/gavel/bbs/auctionrequest"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/store"
	"github.com/gavelhq/gavel/internal/authz"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// DesireTask creates a task and asks for its placement.
func (s *Server) DesireTask(ctx context.Context, req *bbsv1.DesireTaskRequest) (*bbsv1.DesireTaskResponse, error) {
	if err := models.ValidateTask(req.GetTaskGuid(), req.GetDomain(), req.GetDefinition()); err != nil {
		return nil, err
	}
	task, err := s.store.DesireTask(ctx, req.GetTaskGuid(), req.GetDomain(), req.GetDefinition())
	if err != nil {
		return nil, err
	}
	s.opts.Auctions.RequestTasks(auctionrequest.TaskStart(task))
	return &bbsv1.DesireTaskResponse{Task: task}, nil
}

// GetTask returns a task.
func (s *Server) GetTask(ctx context.Context, req *bbsv1.GetTaskRequest) (*bbsv1.GetTaskResponse, error) {
	if err := models.ValidateTaskGUID(req.GetTaskGuid()); err != nil {
		return nil, err
	}
	task, err := s.store.GetTask(req.GetTaskGuid())
	if err != nil {
		return nil, err
	}
	return &bbsv1.GetTaskResponse{Task: task}, nil
}

// ListTasks lists tasks.
func (s *Server) ListTasks(ctx context.Context, req *bbsv1.ListTasksRequest) (*bbsv1.ListTasksResponse, error) {
	tasks, rev := s.store.ListTasks(store.TaskFilter{Domain: req.GetDomain(), CellID: req.GetCellId(), State: req.GetState()})
	return &bbsv1.ListTasksResponse{Tasks: tasks, Revision: rev}, nil
}

// completed hands a task that just completed to the callback delivery.
func (s *Server) completed(task *modelsv1.Task) {
	if task != nil && task.GetState() == models.TaskCompleted && task.GetDefinition().GetCompletionCallbackUrl() != "" && s.opts.Completions != nil {
		s.opts.Completions.Submit(task)
	}
}

// CancelTask fails a task as cancelled and stops it on its cell.
func (s *Server) CancelTask(ctx context.Context, req *bbsv1.CancelTaskRequest) (*bbsv1.CancelTaskResponse, error) {
	if err := models.ValidateTaskGUID(req.GetTaskGuid()); err != nil {
		return nil, err
	}
	before, after, err := s.store.FailTask(ctx, req.GetTaskGuid(), models.TaskCancelledReason)
	if err != nil {
		return nil, err
	}
	if before.GetState() == models.TaskRunning {
		s.goBackground(ctx, 30*time.Second, func(ctx context.Context) {
			cell, err := s.store.GetCell(before.GetCellId())
			if err != nil {
				return // the cell is gone, and its task with it
			}
			if err := s.opts.Cells.CancelTask(ctx, cell, before.GetTaskGuid()); err != nil {
				s.logger.Error("cancel-task-on-cell-failed", err, lager.Data{"task_guid": before.GetTaskGuid(), "cell_id": before.GetCellId()})
			}
		})
	}
	s.completed(after)
	return &bbsv1.CancelTaskResponse{}, nil
}

// ResolvingTask moves a completed task to RESOLVING.
func (s *Server) ResolvingTask(ctx context.Context, req *bbsv1.ResolvingTaskRequest) (*bbsv1.ResolvingTaskResponse, error) {
	if err := models.ValidateTaskGUID(req.GetTaskGuid()); err != nil {
		return nil, err
	}
	if _, err := s.store.ResolvingTask(ctx, req.GetTaskGuid()); err != nil {
		return nil, err
	}
	return &bbsv1.ResolvingTaskResponse{}, nil
}

// DeleteTask deletes a RESOLVING task.
func (s *Server) DeleteTask(ctx context.Context, req *bbsv1.DeleteTaskRequest) (*bbsv1.DeleteTaskResponse, error) {
	if err := models.ValidateTaskGUID(req.GetTaskGuid()); err != nil {
		return nil, err
	}
	if err := s.store.DeleteTask(ctx, req.GetTaskGuid()); err != nil {
		return nil, err
	}
	return &bbsv1.DeleteTaskResponse{}, nil
}

// StartTask moves a PENDING task to RUNNING on a cell.
func (s *Server) StartTask(ctx context.Context, req *bbsv1.StartTaskRequest) (*bbsv1.StartTaskResponse, error) {
	if err := models.ValidateTaskCell(req.GetTaskGuid(), req.GetCellId()); err != nil {
		return nil, err
	}
	if err := authz.CheckCell(ctx, bbsv1.BBSService_StartTask_FullMethodName, "cell_id", req.GetCellId()); err != nil {
		return nil, err
	}
	should, err := s.store.StartTask(ctx, req.GetTaskGuid(), req.GetCellId())
	if err != nil {
		return nil, err
	}
	return &bbsv1.StartTaskResponse{ShouldStart: should}, nil
}

// CompleteTask records a task's outcome.
func (s *Server) CompleteTask(ctx context.Context, req *bbsv1.CompleteTaskRequest) (*bbsv1.CompleteTaskResponse, error) {
	if err := models.ValidateTaskCell(req.GetTaskGuid(), req.GetCellId()); err != nil {
		return nil, err
	}
	if err := authz.CheckCell(ctx, bbsv1.BBSService_CompleteTask_FullMethodName, "cell_id", req.GetCellId()); err != nil {
		return nil, err
	}
	task, err := s.store.CompleteTask(ctx, req.GetTaskGuid(), req.GetCellId(), req.GetFailed(), req.GetFailureReason(), req.GetResult())
	if err != nil {
		return nil, err
	}
	s.completed(task)
	return &bbsv1.CompleteTaskResponse{}, nil
}

// FailTask fails a task.
func (s *Server) FailTask(ctx context.Context, req *bbsv1.FailTaskRequest) (*bbsv1.FailTaskResponse, error) {
	if err := models.ValidateTaskGUID(req.GetTaskGuid()); err != nil {
		return nil, err
	}
	_, after, err := s.store.FailTask(ctx, req.GetTaskGuid(), req.GetFailureReason())
	if err != nil {
		return nil, err
	}
	s.completed(after)
	return &bbsv1.FailTaskResponse{}, nil
}

// RejectTask hands a task back for another placement, or fails it after its retries.
func (s *Server) RejectTask(ctx context.Context, req *bbsv1.RejectTaskRequest) (*bbsv1.RejectTaskResponse, error) {
	if err := models.ValidateTaskGUID(req.GetTaskGuid()); err != nil {
		return nil, err
	}
	if id, ok := authz.FromContext(ctx); ok && id.Role == authz.Rep {
		// A rep hands back only a task of its own cell.
		task, err := s.store.GetTask(req.GetTaskGuid())
		if err != nil {
			return nil, err
		}
		if err := authz.CheckCell(ctx, bbsv1.BBSService_RejectTask_FullMethodName, "the task's cell_id", task.GetCellId()); err != nil {
			return nil, err
		}
	}
	after, retry, err := s.store.RejectTask(ctx, req.GetTaskGuid(), req.GetRejectionReason())
	if err != nil {
		return nil, err
	}
	if retry {
		s.opts.Auctions.RequestTasks(auctionrequest.TaskStart(after))
	} else {
		s.completed(after)
	}
	return &bbsv1.RejectTaskResponse{}, nil
}
