package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
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
	var reconnect time.Duration
	cmd := &cobra.Command{
		Use:   "events [--since REV] [--cell C]",
		Short: "Stream the BBS's events (Ctrl-C stops)",
		Long: `Stream the BBS's events, one per line (or JSON with --json). When the stream breaks (the BBS
restarted, failed over to another replica, or cut off a slow reader) it is resumed after the
last event received, for up to --reconnect, so no event is missed or shown twice; a note on
stderr says so. A resume the BBS can no longer serve (etcd compacted past it) ends the command.`,
		Args: cobra.NoArgs,
	}
	c := addConnFlags(cmd)
	cmd.Flags().Int64Var(&since, "since", 0, "resume after this revision (0: from now)")
	cmd.Flags().StringVar(&cell, "cell", "", "only this cell's instance and task events")
	cmd.Flags().StringSliceVar(&kinds, "kind", nil, "desired_lrp, actual_lrp, task, cell (default all)")
	cmd.Flags().DurationVar(&reconnect, "reconnect", 30*time.Second, "how long to keep trying to resume a broken stream (0: exit at once)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req := &bbsv1.SubscribeEventsRequest{SinceRevision: since, CellId: cell}
		for _, k := range kinds {
			v, ok := eventKinds[k]
			if !ok {
				return fmt.Errorf("--kind: want desired_lrp, actual_lrp, task or cell (got %q)", k)
			}
			req.Kinds = append(req.Kinds, v)
		}
		if reconnect < 0 {
			return fmt.Errorf("--reconnect: must not be negative (got %s)", reconnect)
		}
		bbs, err := c.client(cmd)
		if err != nil {
			return err
		}
		defer bbs.Close()
		// A BBS that cannot be reached at all is an error at once; only a
		// stream that broke later is resumed.
		pingCtx, cancel := c.ctx(cmd)
		_, err = bbs.Ping(pingCtx, &bbsv1.PingRequest{})
		cancel()
		if err != nil {
			return c.explain(err)
		}
		ctx := cmd.Context()
		var broken time.Time // when the stream broke; zero while it flows
		for delay := 100 * time.Millisecond; ; {
			received, err := streamEvents(ctx, bbs, req, func(ev *modelsv1.Event) error {
				req.SinceRevision = ev.GetRevision()
				if c.json {
					return c.printJSON(ev)
				}
				_, err := fmt.Fprintln(c.out, describeEvent(ev))
				return err
			})
			if streamEnded(ctx, err) {
				return nil
			}
			if received {
				broken, delay = time.Time{}, 100*time.Millisecond
			}
			if broken.IsZero() {
				broken = time.Now()
			}
			if !resumable(err) || time.Since(broken) >= reconnect {
				return c.explain(err)
			}
			from := fmt.Sprintf("after revision %d", req.GetSinceRevision())
			if req.GetSinceRevision() == 0 {
				from = "from now (no event was received, so none can be named to resume after)"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "gavel events: stream broken (%v); resuming %s\n", err, from)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			delay = min(2*delay, 2*time.Second)
		}
	}
	return cmd
}

// eventSubscriber is the one call of the BBS client that streamEvents needs.
type eventSubscriber interface {
	SubscribeEvents(ctx context.Context, in *bbsv1.SubscribeEventsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[bbsv1.SubscribeEventsResponse], error)
}

// streamEvents subscribes once and hands each event to show until the
// stream ends; received says whether any event arrived.
func streamEvents(ctx context.Context, bbs eventSubscriber, req *bbsv1.SubscribeEventsRequest, show func(*modelsv1.Event) error) (received bool, err error) {
	stream, err := bbs.SubscribeEvents(ctx, req)
	if err != nil {
		return false, err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return received, err
		}
		received = true
		if err := show(resp.GetEvent()); err != nil {
			return received, err
		}
	}
}

// resumable says whether a broken event stream may be picked up again: the
// BBS went away or is not serving yet (Unavailable), or it cut off a slow
// reader (ResourceExhausted). A compacted revision cannot be resumed.
func resumable(err error) bool {
	return errors.Is(err, models.ErrUnavailable) || errors.Is(err, models.ErrResourceExhausted) ||
		status.Code(err) == codes.Unavailable || status.Code(err) == codes.ResourceExhausted
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
