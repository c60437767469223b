package client

import (
	"context"

	"fmt"
	"iter"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Events subscribes to the BBS's events and returns them as an iterator:
//
//	for ev, err := range bbs.Events(ctx, &bbsv1.SubscribeEventsRequest{}) {
//		if err != nil { ... } // the last value: the stream failed
//		...
//	}
//
// The sequence ends when ctx ends (without an error), when the loop
// breaks, or after one final error. To resume after an error, subscribe
// again with since_revision set to the last event's revision.
func (c *Client) Events(ctx context.Context, req *bbsv1.SubscribeEventsRequest) iter.Seq2[*modelsv1.Event, error] {
	return func(yield func(*modelsv1.Event, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.SubscribeEvents(ctx, req)
		if err != nil {
			if ctx.Err() == nil {
				yield(nil, err)
			}
			return
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				// The server enforces the caller's deadline too and may end
				// the stream a moment before the caller's own timer fires:
				// that is the context ending, not an error.
				if dl, ok := ctx.Deadline(); ok && status.Code(err) == codes.DeadlineExceeded && time.Until(dl) < time.Second {
					<-ctx.Done()
				}
				if ctx.Err() == nil {
					yield(nil, err)
				}
				return
			}
			if !yield(resp.GetEvent(), nil) {
				return
			}
		}
	}
}

// CrashingError is WaitForRunning's error when instances crashed past the
// crash policy's immediate restarts: they will not all run soon.
type CrashingError struct {
	ProcessGUID string
	Running     int
	Want        int
	// Crashing describes each such instance: index, crash count and reason.
	Crashing []string
}

func (e *CrashingError) Error() string {
	return fmt.Sprintf("%d of %d instances of %s running, and they will not all be soon: %s", e.Running, e.Want, e.ProcessGUID, strings.Join(e.Crashing, "; "))
}

// waitPoll is the time between WaitForRunning's looks.
const waitPoll = 250 * time.Millisecond

// WaitForRunning waits until at least n instances of processGUID are
// RUNNING, or ctx ends. It fails at once when the LRP is not desired
// (errors.Is models.ErrNotFound), when it desires fewer than n instances
// (models.ErrInvalid), and with a *CrashingError once an instance has
// crashed past the crash policy's immediate restarts.
func (c *Client) WaitForRunning(ctx context.Context, processGUID string, n int) error {
	desired, err := c.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: processGUID})
	if err != nil {
		return fmt.Errorf("wait for %s: %w", processGUID, err)
	}
	if want := int(desired.GetDesiredLrp().GetInstances()); n > want {
		return fmt.Errorf("wait for %d instances of %s: %w: it desires %d", n, processGUID, models.ErrInvalid, want)
	}
	immediate := models.DefaultCrashPolicy().ImmediateRestarts
	for {
		resp, err := c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{processGUID}})
		if err != nil {
			return fmt.Errorf("wait for %s: %w", processGUID, err)
		}
		running := 0
		var crashing []string
		for _, a := range resp.GetActualLrps() {
			if a.GetPresence() != models.Ordinary {
				continue
			}
			switch {
			case a.GetState() == models.Running:
				running++
			case a.GetState() == models.Crashed && a.GetCrashCount() >= immediate:
				crashing = append(crashing, fmt.Sprintf("index %d CRASHED %d times (%s)", a.GetKey().GetIndex(), a.GetCrashCount(), a.GetCrashReason()))
			}
		}
		if running >= n {
			return nil
		}
		if len(crashing) > 0 {
			return &CrashingError{ProcessGUID: processGUID, Running: running, Want: n, Crashing: crashing}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d instances of %s: %d running: %w", n, processGUID, running, ctx.Err())
		case <-time.After(waitPoll):
		}
	}
}
