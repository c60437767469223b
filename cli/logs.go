package cli

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/gavelhq/gavel/internal/grpcclient"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

func newLogsCommand() *cobra.Command {
	var follow, task bool
	var index int32
	cmd := &cobra.Command{
		Use:   "logs PROCESS_GUID [--follow]",
		Short: "Print an LRP's (or, with --task, a task's) recent log lines from its cells",
		Args:  cobra.ExactArgs(1),
	}
	c := addConnFlags(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines (Ctrl-C stops)")
	cmd.Flags().BoolVar(&task, "task", false, "the argument is a task guid")
	cmd.Flags().Int32Var(&index, "index", -1, "only this instance")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		bbs, err := c.client(cmd)
		if err != nil {
			return err
		}
		defer bbs.Close()
		ctx, cancel := c.ctx(cmd)
		cells := map[string]bool{}
		if task {
			t, err := bbs.GetTask(ctx, &bbsv1.GetTaskRequest{TaskGuid: args[0]})
			if err != nil {
				cancel()
				return c.explain(err)
			}
			cells[t.GetTask().GetCellId()] = true
		} else {
			rows, err := bbs.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{args[0]}})
			if err != nil {
				cancel()
				return c.explain(err)
			}
			for _, a := range rows.GetActualLrps() {
				if cell := a.GetInstanceKey().GetCellId(); cell != "" && (index < 0 || a.GetKey().GetIndex() == index) {
					cells[cell] = true
				}
			}
		}
		present, err := bbs.ListCells(ctx, &bbsv1.ListCellsRequest{})
		cancel()
		if err != nil {
			return c.explain(err)
		}
		var addrs []string
		for _, cell := range present.GetCells() {
			if cells[cell.GetCellId()] {
				addrs = append(addrs, cell.GetRepAddress())
			}
		}
		if len(addrs) == 0 {
			return fmt.Errorf("%s runs on no live cell: nothing to show", args[0])
		}
		req := &repv1.StreamLogsRequest{Follow: follow}
		if task {
			req.TaskGuid = args[0]
		} else {
			req.ProcessGuid = args[0]
			if index >= 0 {
				req.Index = &index
			}
		}
		pool := grpcclient.NewPool(nil)
		defer pool.Close()
		streamCtx := cmd.Context()
		if !follow {
			var cancelStreams func()
			streamCtx, cancelStreams = c.ctx(cmd)
			defer cancelStreams()
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make([]error, len(addrs))
		for i, addr := range addrs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := pool.Get(addr)
				if err != nil {
					errs[i] = err
					return
				}
				stream, err := repv1.NewRepServiceClient(conn).StreamLogs(streamCtx, req)
				if err != nil {
					errs[i] = err
					return
				}
				for {
					resp, err := stream.Recv()
					if streamEnded(streamCtx, err) {
						return
					}
					if err != nil {
						errs[i] = fmt.Errorf("cell at %s: %w", addr, err)
						return
					}
					mu.Lock()
					printLogLine(c, resp.GetLine())
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	return cmd
}

func printLogLine(c *conn, l *repv1.LogLine) {
	if c.json {
		_ = c.printJSON(l)
		return
	}
	fmt.Fprintf(c.out, "%s [%s/%d] %s %s\n", time.Unix(0, l.GetTimestamp()).Format("15:04:05.000"), l.GetSource(), l.GetIndex(), l.GetStream(), l.GetMessage())
}
