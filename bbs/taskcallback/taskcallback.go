// Package taskcallback delivers completed tasks to their completion callback
// URLs: it marks the task RESOLVING, POSTs it as JSON, and deletes it unless
// the callback answered 503 or 504 or could not be reached, in which case it
// retries (3 attempts) and then leaves the task for convergence to kick again.
package taskcallback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// TaskStore is what delivery changes.
type TaskStore interface {
	ResolvingTask(ctx context.Context, guid string) (*modelsv1.Task, error)
	DeleteTask(ctx context.Context, guid string) error
}

// Options configure a Worker.
type Options struct {
	Store  TaskStore
	Client *http.Client
	Logger lager.Logger
	// Workers is how many callbacks run at once (default 100).
	Workers int
	// Attempts is how often a callback is tried per delivery (default 3).
	Attempts int
	// RetryDelay is the wait between attempts (default 1 s).
	RetryDelay time.Duration
}

// Worker delivers callbacks in a bounded pool. Safe for concurrent use.
type Worker struct {
	opts  Options
	queue chan *modelsv1.Task
	wg    sync.WaitGroup
}

// New returns a worker; Run must be running.
func New(opts Options) *Worker {
	if opts.Workers <= 0 {
		opts.Workers = 100
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 3
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &Worker{opts: opts, queue: make(chan *modelsv1.Task, 10000)}
}

// Submit queues a completed task; when the queue is full the task waits for convergence.
func (w *Worker) Submit(task *modelsv1.Task) {
	select {
	case w.queue <- task:
	default:
		w.opts.Logger.Info("callback-queue-full", lager.Data{"task_guid": task.GetTaskGuid()})
	}
}

// Run delivers until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	for i := 0; i < w.opts.Workers; i++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for {
				select {
				case t := <-w.queue:
					if err := w.Deliver(ctx, t); err != nil {
						w.opts.Logger.Error("task-callback-failed", err, lager.Data{"task_guid": t.GetTaskGuid()})
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	w.wg.Wait()
	return ctx.Err()
}

// errRetryable marks a callback answer that asks to be tried again.
var errRetryable = errors.New("callback asked to retry")

// Deliver runs one delivery of a COMPLETED task.
func (w *Worker) Deliver(ctx context.Context, task *modelsv1.Task) error {
	guid := task.GetTaskGuid()
	if _, err := w.opts.Store.ResolvingTask(ctx, guid); err != nil {
		if errors.Is(err, models.ErrInvalidTransition) || errors.Is(err, models.ErrNotFound) {
			return nil // someone else is resolving it
		}
		return fmt.Errorf("mark task %s resolving: %w", guid, err)
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(&modelsv1.TaskCallbackResponse{
		TaskGuid: guid, Failed: task.GetFailed(), FailureReason: task.GetFailureReason(), Result: task.GetResult(),
		Annotation: task.GetDefinition().GetAnnotation(), CreatedAt: task.GetCreatedAt(),
	})
	if err != nil {
		return fmt.Errorf("encode callback of task %s: %w", guid, err)
	}
	url := task.GetDefinition().GetCompletionCallbackUrl()
	var last error
	for attempt := 1; attempt <= w.opts.Attempts; attempt++ {
		last = w.post(ctx, url, body)
		if last == nil {
			return w.opts.Store.DeleteTask(ctx, guid)
		}
		if attempt < w.opts.Attempts {
			select {
			case <-time.After(w.opts.RetryDelay):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return fmt.Errorf("callback of task %s to %s after %d attempts: %w (left RESOLVING for convergence)", guid, url, w.opts.Attempts, last)
}

func (w *Worker) post(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", errRetryable, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout {
		return fmt.Errorf("%w: status %d", errRetryable, resp.StatusCode)
	}
	return nil
}
