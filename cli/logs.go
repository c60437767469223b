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
	var follow, task, recent, previous bool
	var index int32
	cmd := &cobra.Command{
		Use:   "logs PROCESS_GUID [--recent | --previous | --follow]",
		Short: "Print an LRP's (or, with --task, a task's) log lines from every cell: live ones, and with --recent those of ended instances",
		Long: `Print an LRP's log lines from every cell, each with its time, source, index and stream.
Cells keep the output of ended containers (crashed or stopped instances, finished tasks) across rep restarts:
--recent shows it before the live lines, --previous shows only the last ended container's per index (why did
index 2 crash?), --task GUID shows a task's output whether it runs or ended. --follow keeps printing new
lines of every instance on every cell, including instances that start later.`,
		Args: cobra.ExactArgs(1),
	}
	c := addConnFlags(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines, of new instances too (Ctrl-C stops)")
	cmd.Flags().BoolVar(&task, "task", false, "the argument is a task guid (its output is shown after it ended too)")
	cmd.Flags().BoolVar(&recent, "recent", false, "also the lines of ended instances, oldest first")
	cmd.Flags().BoolVar(&previous, "previous", false, "only the lines of the last ended instance of each index (with --index, of that one)")
	cmd.Flags().Int32Var(&index, "index", -1, "only this instance")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if previous && follow {
			return errors.New("--previous, --follow: --previous shows ended instances, which print nothing new; use one of them")
		}
		bbs, err := c.client(cmd)
		if err != nil {
			return err
		}
		defer bbs.Close()
		ctx, cancel := c.ctx(cmd)
		present, err := bbs.ListCells(ctx, &bbsv1.ListCellsRequest{})
		cancel()
		if err != nil {
			return c.explain(err)
		}
		// Every live cell: an app's ended instances and a task's output may be
		// on cells that run none of it now, and a follow sees new instances.
		var addrs []string
		for _, cell := range present.GetCells() {
			addrs = append(addrs, cell.GetRepAddress())
		}
		if len(addrs) == 0 {
			return errors.New("no live cell: nothing to show")
		}
		req := &repv1.StreamLogsRequest{Follow: follow, Recent: recent || task, Previous: previous}
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
		printed := 0
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
					printed++
					printLogLine(c, resp.GetLine())
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		if printed == 0 && !follow && !c.json {
			switch {
			case previous:
				fmt.Fprintf(c.out, "no ended instance of %s left output on a live cell\n", args[0])
			case task:
				fmt.Fprintf(c.out, "no live cell has output of task %s\n", args[0])
			case !recent:
				fmt.Fprintf(c.out, "no live lines of %s (--recent adds those of ended instances)\n", args[0])
			}
		}
		return nil
	}
	return cmd
}

func printLogLine(c *conn, l *repv1.LogLine) {
	if c.json {
		_ = c.printJSON(l)
		return
	}
	ended := ""
	if l.GetEnded() {
		ended = " (ended)"
	}
	fmt.Fprintf(c.out, "%s [%s/%d]%s %s %s\n", time.Unix(0, l.GetTimestamp()).Format("15:04:05.000"), l.GetSource(), l.GetIndex(), ended, l.GetStream(), l.GetMessage())
}
