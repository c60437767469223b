package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func newRunTaskCommand() *cobra.Command {
	var file, command, memory, disk, domain, resultFile, callback, rootfs, guid string
	cmd := &cobra.Command{
		Use:   "run-task [NAME --command CMD | -f SPEC]",
		Short: "Run a one-off task, from flags or a spec file ({task_guid, domain, definition})",
		Args:  cobra.MaximumNArgs(1),
	}
	c := addConnFlags(cmd)
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "spec file: DesireTaskRequest with proto field names")
	f.StringVar(&command, "command", "", "shell command to run")
	f.StringVar(&memory, "memory", "64M", "memory")
	f.StringVar(&disk, "disk", "128M", "disk")
	f.StringVar(&domain, "domain", "gavel", "domain")
	f.StringVar(&resultFile, "result-file", "", "file whose first 10 KiB become the task's result")
	f.StringVar(&callback, "callback-url", "", "URL that receives the completed task")
	f.StringVar(&rootfs, "rootfs", "preloaded:cflinuxfs4", "root filesystem URL")
	f.StringVar(&guid, "guid", "", "task guid (default NAME-<random>)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		req := &bbsv1.DesireTaskRequest{}
		switch {
		case file != "":
			if len(args) > 0 || command != "" {
				return fmt.Errorf("give either -f SPEC or NAME --command CMD")
			}
			if err := loadSpec(file, req); err != nil {
				return err
			}
		case len(args) == 1 && command != "":
			mem, err := parseMB("memory", memory)
			if err != nil {
				return err
			}
			dsk, err := parseMB("disk", disk)
			if err != nil {
				return err
			}
			if guid == "" {
				guid = args[0] + "-" + uuid.NewString()[:8]
			}
			req = &bbsv1.DesireTaskRequest{TaskGuid: guid, Domain: domain, Definition: &modelsv1.TaskDefinition{
				RootFs: rootfs, MemoryMb: mem, DiskMb: dsk, Action: shellAction(command), ResultFile: resultFile,
				CompletionCallbackUrl: callback, LogGuid: args[0], LogSource: "TASK",
			}}
		default:
			return fmt.Errorf("give NAME --command CMD, or -f SPEC")
		}
		if err := models.ValidateTask(req.GetTaskGuid(), req.GetDomain(), req.GetDefinition()); err != nil {
			if file != "" {
				return fmt.Errorf("%s: %w", file, err)
			}
			return err
		}
		var resp *bbsv1.DesireTaskResponse
		if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) (err error) {
			resp, err = bbs.DesireTask(ctx, req)
			return err
		}); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(resp.GetTask())
		}
		fmt.Fprintf(c.out, "task %s is PENDING\n", resp.GetTask().GetTaskGuid())
		return nil
	}
	return cmd
}

func printTasks(c *conn, tasks []*modelsv1.Task) error {
	if c.json {
		return printEach(c, tasks)
	}
	w := newTable(c)
	fmt.Fprintln(w, "TASK_GUID\tDOMAIN\tSTATE\tCELL\tFAILED\tAGE\tRESULT/REASON")
	for _, t := range tasks {
		detail := t.GetResult()
		if t.GetFailed() {
			detail = t.GetFailureReason()
		}
		detail = strings.ReplaceAll(detail, "\n", " ")
		if len(detail) > 60 {
			detail = detail[:57] + "..."
		}
		age := time.Since(time.Unix(0, t.GetCreatedAt())).Round(time.Second)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%s\t%s\n", t.GetTaskGuid(), t.GetDomain(), models.TaskStateName(t.GetState()), t.GetCellId(), t.GetFailed(), age, detail)
	}
	return w.Flush()
}

func newTasksCommand() *cobra.Command {
	var domain, cell string
	cmd := &cobra.Command{Use: "tasks", Short: "List tasks", Args: cobra.NoArgs}
	c := addConnFlags(cmd)
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain")
	cmd.Flags().StringVar(&cell, "cell", "", "only this cell's tasks")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var resp *bbsv1.ListTasksResponse
		if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) (err error) {
			resp, err = bbs.ListTasks(ctx, &bbsv1.ListTasksRequest{Domain: domain, CellId: cell})
			return err
		}); err != nil {
			return err
		}
		return printTasks(c, resp.GetTasks())
	}
	return cmd
}

func newTaskCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "task TASK_GUID", Short: "Show a task", Args: cobra.ExactArgs(1)}
	c := addConnFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var resp *bbsv1.GetTaskResponse
		if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) (err error) {
			resp, err = bbs.GetTask(ctx, &bbsv1.GetTaskRequest{TaskGuid: args[0]})
			return err
		}); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(resp.GetTask())
		}
		t := resp.GetTask()
		fmt.Fprintf(c.out, "task guid:   %s\ndomain:      %s\nstate:       %s\ncell:        %s\nfailed:      %v\n",
			t.GetTaskGuid(), t.GetDomain(), models.TaskStateName(t.GetState()), t.GetCellId(), t.GetFailed())
		if t.GetFailureReason() != "" {
			fmt.Fprintf(c.out, "reason:      %s\n", t.GetFailureReason())
		}
		if t.GetRejectionCount() > 0 {
			fmt.Fprintf(c.out, "rejections:  %d (%s)\n", t.GetRejectionCount(), t.GetRejectionReason())
		}
		fmt.Fprintf(c.out, "result:      %s\n", t.GetResult())
		return nil
	}
	return cmd
}

func newCancelTaskCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cancel-task TASK_GUID", Short: "Cancel a pending or running task", Args: cobra.ExactArgs(1)}
	c := addConnFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return c.act(cmd, func(ctx context.Context, bbs *client.Client) error {
			_, err := bbs.CancelTask(ctx, &bbsv1.CancelTaskRequest{TaskGuid: args[0]})
			return err
		}, "cancelled %s", args[0])
	}
	return cmd
}
