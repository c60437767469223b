package integration_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// taskDef is a small task definition running script.
func taskDef(guid, script string) *modelsv1.TaskDefinition {
	return &modelsv1.TaskDefinition{
		RootFs: "preloaded:cflinuxfs4", MemoryMb: 32, DiskMb: 32, Action: shAction(script),
		LogGuid: guid, LogSource: "TASK",
	}
}

func (c *cluster) desireTask(guid string, def *modelsv1.TaskDefinition) {
	c.t.Helper()
	if _, err := c.client().DesireTask(ctx(c.t), &bbsv1.DesireTaskRequest{TaskGuid: guid, Domain: "it", Definition: def}); err != nil {
		c.t.Fatalf("desire task %s: %v", guid, err)
	}
}

// waitTask waits until the task is in state and returns it.
func (c *cluster) waitTask(guid string, state modelsv1.TaskState, timeout time.Duration) *modelsv1.Task {
	c.t.Helper()
	var task *modelsv1.Task
	waitFor(c.t, timeout, fmt.Sprintf("task %s %s", guid, models.TaskStateName(state)), func() error {
		resp, err := c.client().GetTask(ctx(c.t), &bbsv1.GetTaskRequest{TaskGuid: guid})
		if err != nil {
			return err
		}
		task = resp.GetTask()
		if task.GetState() != state {
			return fmt.Errorf("now %s on %q (failed=%v %q)", models.TaskStateName(task.GetState()), task.GetCellId(), task.GetFailed(), task.GetFailureReason())
		}
		return nil
	})
	return task
}

// A task runs on a cell, its result file becomes its result, its completion
// callback receives the result, and the task is then deleted.
func TestTaskResultAndCallback(t *testing.T) {
	t.Parallel()
	c := start(t, options{})
	callbacks := make(chan *modelsv1.TaskCallbackResponse, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var cb modelsv1.TaskCallbackResponse
		if r.Method != http.MethodPost || protojson.Unmarshal(body, &cb) != nil {
			t.Errorf("callback: %s %s", r.Method, body)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		callbacks <- &cb
	}))
	defer srv.Close()

	// Without a callback the completed task keeps its result for polling.
	c.desireTask("polled", func() *modelsv1.TaskDefinition {
		d := taskDef("polled", `printf 'answer=%s' "$((6*7))" > out.txt`)
		d.ResultFile = "/out.txt"
		return d
	}())
	polled := c.waitTask("polled", models.TaskCompleted, placeTimeout)
	if polled.GetFailed() || polled.GetResult() != "answer=42" || polled.GetCellId() == "" {
		t.Errorf("polled task: failed=%v reason=%q result=%q cell=%q", polled.GetFailed(), polled.GetFailureReason(), polled.GetResult(), polled.GetCellId())
	}

	def := taskDef("called-back", `echo -n "from $CF_INSTANCE_IP" > result.txt`)
	def.ResultFile = "/result.txt"
	def.CompletionCallbackUrl = srv.URL + "/done"
	def.Annotation = "note"
	c.desireTask("called-back", def)
	select {
	case cb := <-callbacks:
		if cb.GetTaskGuid() != "called-back" || cb.GetFailed() || cb.GetResult() != "from 127.0.0.1" || cb.GetAnnotation() != "note" {
			t.Errorf("callback: %v", cb)
		}
	case <-time.After(placeTimeout):
		t.Fatal("the completion callback was not called")
	}
	waitFor(t, 10*time.Second, "the called-back task is deleted", func() error {
		_, err := c.client().GetTask(ctx(t), &bbsv1.GetTaskRequest{TaskGuid: "called-back"})
		if errors.Is(err, models.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("GetTask: %v", err)
	})
	select {
	case cb := <-callbacks:
		t.Errorf("a second callback: %v", cb)
	default:
	}
}

// Cancelling a running task stops its process (within the grace time) and
// completes it as failed.
func TestCancelTaskStopsItsProcess(t *testing.T) {
	t.Parallel()
	c := start(t, options{})
	pidFile := filepath.Join(c.dir, "task.pid")
	c.desireTask("sleeper", taskDef("sleeper", "echo $$ > "+pidFile+"; exec sleep 600"))
	c.waitTask("sleeper", models.TaskRunning, placeTimeout)
	var pid int
	waitFor(t, 10*time.Second, "the task writes its pid", func() error {
		data, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err
	})
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the task's process %d is not running: %v", pid, err)
	}

	out, err := c.gavel("cancel-task", "sleeper")
	if err != nil {
		t.Fatalf("gavel cancel-task: %v\n%s", err, out)
	}
	waitFor(t, graceTime+5*time.Second, fmt.Sprintf("the task's process %d is gone", pid), func() error {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return errors.New("still running")
	})
	done := c.waitTask("sleeper", models.TaskCompleted, 10*time.Second)
	if !done.GetFailed() || done.GetFailureReason() == "" {
		t.Errorf("a cancelled task completes failed with a reason: failed=%v reason=%q", done.GetFailed(), done.GetFailureReason())
	}
	t.Logf("cancelled: %q", done.GetFailureReason())
}
