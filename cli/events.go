package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

var eventKinds = map[string]bbsv1.EventKind{
	"desired_lrp": bbsv1.EventKind_EVENT_KIND_DESIRED_LRP, "actual_lrp": bbsv1.EventKind_EVENT_KIND_ACTUAL_LRP,
	"task": bbsv1.EventKind_EVENT_KIND_TASK, "cell": bbsv1.EventKind_EVENT_KIND_CELL,
}

func newEventsCommand() *cobra.Command {
	var since int64
	var cell string
	var kinds []string
	cmd := &cobra.Command{Use: "events [--since REV] [--cell C]", Short: "Stream the BBS's events (Ctrl-C stops)", Args: cobra.NoArgs}
	c := addConnFlags(cmd)
	cmd.Flags().Int64Var(&since, "since", 0, "resume after this revision (0: from now)")
	cmd.Flags().StringVar(&cell, "cell", "", "only this cell's instance and task events")
	cmd.Flags().StringSliceVar(&kinds, "kind", nil, "desired_lrp, actual_lrp, task, cell (default all)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req := &bbsv1.SubscribeEventsRequest{SinceRevision: since, CellId: cell}
		for _, k := range kinds {
			v, ok := eventKinds[k]
			if !ok {
				return fmt.Errorf("--kind: want desired_lrp, actual_lrp, task or cell (got %q)", k)
			}
			req.Kinds = append(req.Kinds, v)
		}
		bbs, err := c.client(cmd)
		if err != nil {
			return err
		}
		defer bbs.Close()
		stream, err := bbs.SubscribeEvents(cmd.Context(), req)
		if err != nil {
			return c.explain(err)
		}
		for {
			resp, err := stream.Recv()
			if streamEnded(cmd.Context(), err) {
				return nil
			}
			if err != nil {
				return c.explain(err)
			}
			if c.json {
				if err := c.printJSON(resp.GetEvent()); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintln(c.out, describeEvent(resp.GetEvent()))
		}
	}
	return cmd
}

func lrpRef(a *modelsv1.ActualLRP) string {
	return fmt.Sprintf("%s/%d %s %s cell=%s", a.GetKey().GetProcessGuid(), a.GetKey().GetIndex(),
		models.PresenceName(a.GetPresence()), models.StateName(a.GetState()), a.GetInstanceKey().GetCellId())
}

// streamEnded says whether a stream's error is its normal end: EOF, or the
// caller's own context ending (gRPC may report the deadline a moment before
// the context's timer marks it).
func streamEnded(ctx context.Context, err error) bool {
	switch {
	case errors.Is(err, io.EOF) || ctx.Err() != nil:
		return true
	case status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Canceled:
		_, hasDeadline := ctx.Deadline()
		return hasDeadline || status.Code(err) == codes.Canceled
	}
	return false
}

// describeEvent is one line for people.
func describeEvent(e *modelsv1.Event) string {
	var s string
	switch x := e.GetEvent().(type) {
	case *modelsv1.Event_DesiredLrpCreated:
		s = fmt.Sprintf("desired_lrp_created %s instances=%d", x.DesiredLrpCreated.GetDesiredLrp().GetKey().GetProcessGuid(), x.DesiredLrpCreated.GetDesiredLrp().GetInstances())
	case *modelsv1.Event_DesiredLrpChanged:
		s = fmt.Sprintf("desired_lrp_changed %s instances=%d->%d", x.DesiredLrpChanged.GetAfter().GetKey().GetProcessGuid(), x.DesiredLrpChanged.GetBefore().GetInstances(), x.DesiredLrpChanged.GetAfter().GetInstances())
	case *modelsv1.Event_DesiredLrpRemoved:
		s = "desired_lrp_removed " + x.DesiredLrpRemoved.GetDesiredLrp().GetKey().GetProcessGuid()
	case *modelsv1.Event_ActualLrpInstanceCreated:
		s = "actual_lrp_instance_created " + lrpRef(x.ActualLrpInstanceCreated.GetActualLrp())
	case *modelsv1.Event_ActualLrpInstanceChanged:
		s = fmt.Sprintf("actual_lrp_instance_changed %s (was %s)", lrpRef(x.ActualLrpInstanceChanged.GetAfter()), models.StateName(x.ActualLrpInstanceChanged.GetBefore().GetState()))
	case *modelsv1.Event_ActualLrpInstanceRemoved:
		s = "actual_lrp_instance_removed " + lrpRef(x.ActualLrpInstanceRemoved.GetActualLrp())
	case *modelsv1.Event_ActualLrpCrashed:
		cr := x.ActualLrpCrashed
		s = fmt.Sprintf("actual_lrp_crashed %s/%d cell=%s crash_count=%d reason=%q", cr.GetKey().GetProcessGuid(), cr.GetKey().GetIndex(), cr.GetInstanceKey().GetCellId(), cr.GetCrashCount(), cr.GetCrashReason())
	case *modelsv1.Event_TaskCreated:
		s = "task_created " + x.TaskCreated.GetTask().GetTaskGuid()
	case *modelsv1.Event_TaskChanged:
		s = fmt.Sprintf("task_changed %s %s->%s", x.TaskChanged.GetAfter().GetTaskGuid(), models.TaskStateName(x.TaskChanged.GetBefore().GetState()), models.TaskStateName(x.TaskChanged.GetAfter().GetState()))
	case *modelsv1.Event_TaskRemoved:
		s = "task_removed " + x.TaskRemoved.GetTask().GetTaskGuid()
	case *modelsv1.Event_CellAppeared:
		s = "cell_appeared " + x.CellAppeared.GetCell().GetCellId()
	case *modelsv1.Event_CellDisappeared:
		s = "cell_disappeared " + x.CellDisappeared.GetCell().GetCellId()
	default:
		s = "unknown event"
	}
	return strings.TrimSpace(fmt.Sprintf("%d %s", e.GetRevision(), s))
}
