package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

func newDrainCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drain CELL_ID",
		Short: "Evacuate a cell: its LRPs move elsewhere with no downtime, its tasks are handed back, then its rep exits",
		Long: "drain asks a cell's rep to evacuate (as SIGUSR1 does). The cell stops taking work; each LRP instance\n" +
			"keeps running until its replacement runs elsewhere; tasks are handed back to the BBS. The rep exits 0\n" +
			"once empty, or non-zero at its evacuation timeout naming what was stranded. Follow the progress with\n" +
			"gavel cell-state CELL_ID.",
		Args: cobra.ExactArgs(1),
	}
	c := addConnFlags(cmd)
	var wait bool
	var waitTimeout time.Duration
	cmd.Flags().BoolVar(&wait, "wait", false, "show the progress until the cell is empty and gone")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 15*time.Minute, "with --wait, give up after this long")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var resp *repv1.DrainResponse
		if err := c.callRep(cmd, args[0], func(ctx context.Context, rep repv1.RepServiceClient) (err error) {
			resp, err = rep.Drain(ctx, &repv1.DrainRequest{})
			return err
		}); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(resp)
		}
		what := "draining"
		if resp.GetAlreadyDraining() {
			what = "already draining"
		}
		fmt.Fprintf(c.out, "cell %s %s; gives up at %s (gavel cell-state %s shows what remains)\n",
			args[0], what, time.Unix(0, resp.GetDeadline()).Format(time.RFC3339), args[0])
		if !wait {
			return nil
		}
		return waitDrained(cmd, c, args[0], waitTimeout)
	}
	return cmd
}

// drainPoll is the time between --wait's looks at the cell.
const drainPoll = 500 * time.Millisecond

// waitDrained prints what the cell still runs whenever that changes, until
// the cell is empty or no longer present.
func waitDrained(cmd *cobra.Command, c *conn, cellID string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		var state *repv1.StateResponse
		err := c.callRep(cmd, cellID, func(ctx context.Context, rep repv1.RepServiceClient) (err error) {
			state, err = rep.State(ctx, &repv1.StateRequest{})
			return err
		})
		var unreachable *repUnreachableError
		switch {
		case err == nil:
		case strings.Contains(err.Error(), "is not present"):
			fmt.Fprintf(c.out, "cell %s is drained and gone\n", cellID)
			return nil
		case errors.As(err, &unreachable):
			// A drained rep stops serving and then withdraws its presence
			// (an empty cell does so at once): wait for the presence to go
			// rather than report the gap between the two as a failure.
			now := fmt.Sprintf("cell %s: its rep stopped answering; waiting for its presence to leave the BBS", cellID)
			if now != last {
				fmt.Fprintln(c.out, now)
				last = now
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("--wait-timeout %s: %w", timeout, err)
			}
			time.Sleep(drainPoll)
			continue
		default:
			return err
		}
		now := fmt.Sprintf("cell %s: %d LRP instance(s), %d task(s) left", cellID, len(state.GetLrps()), len(state.GetTasks()))
		if now != last {
			fmt.Fprintln(c.out, now)
			last = now
		}
		if len(state.GetLrps()) == 0 && len(state.GetTasks()) == 0 {
			fmt.Fprintf(c.out, "cell %s is empty\n", cellID)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("--wait-timeout %s: %s", timeout, now)
		}
		time.Sleep(drainPoll)
	}
}
