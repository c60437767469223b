package cli

import (
	"context"
	"fmt"
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
		return nil
	}
	return cmd
}
