package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/gavelhq/gavel/internal/grpcclient"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
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
		bbs, err := c.client(cmd)
		if err != nil {
			return err
		}
		defer bbs.Close()
		ctx, cancel := c.ctx(cmd)
		defer cancel()
		cells, err := bbs.ListCells(ctx, &bbsv1.ListCellsRequest{})
		if err != nil {
			return c.explain(err)
		}
		addr := ""
		for _, cell := range cells.GetCells() {
			if cell.GetCellId() == args[0] {
				addr = cell.GetRepAddress()
			}
		}
		if addr == "" {
			return fmt.Errorf("cell %s is not present (gavel cells lists the live ones)", args[0])
		}
		pool := grpcclient.NewPool(nil)
		defer pool.Close()
		conn, err := pool.Get(addr)
		if err != nil {
			return err
		}
		resp, err := repv1.NewRepServiceClient(conn).Drain(ctx, &repv1.DrainRequest{})
		if err != nil {
			return fmt.Errorf("drain cell %s at %s: %w", args[0], addr, c.explain(err))
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
