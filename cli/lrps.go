package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func newTable(c *conn) *tabwriter.Writer {
	return tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
}

// parseMB reads sizes like 64M, 1G, 512 (megabytes).
func parseMB(field, s string) (int32, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := 1
	switch {
	case strings.HasSuffix(u, "G"), strings.HasSuffix(u, "GB"):
		mult = 1024
		u = strings.TrimRight(u, "GB")
	case strings.HasSuffix(u, "M"), strings.HasSuffix(u, "MB"):
		u = strings.TrimRight(u, "MB")
	}
	n, err := strconv.Atoi(u)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--%s: want a size such as 64M or 1G (got %q)", field, s)
	}
	return int32(n * mult), nil
}

func shellAction(command string) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/sh", Args: []string{"-c", command}}}}
}

func newPushCommand() *cobra.Command {
	var (
		command, memory, disk, domain, health, rootfs string
		updateStrategy                                string
		instances                                     int32
		port                                          uint32
		env, tags, routes                             []string
	)
	cmd := &cobra.Command{
		Use:   "push NAME --command CMD",
		Short: "Run a command as a long-running process (builds a desired LRP from flags)",
		Args:  cobra.ExactArgs(1),
	}
	c := addConnFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&command, "command", "", "shell command to run (required); it should listen on $PORT")
	f.Int32Var(&instances, "instances", 1, "number of instances")
	f.StringVar(&memory, "memory", "64M", "memory per instance")
	f.StringVar(&disk, "disk", "128M", "disk per instance")
	f.Uint32Var(&port, "port", 8080, "container port the app listens on (0: none)")
	f.StringArrayVar(&env, "env", nil, "environment variable K=V (repeatable)")
	f.StringVar(&domain, "domain", "gavel", "domain")
	f.StringVar(&health, "health-check", "port", "health check: port, http or none")
	f.StringArrayVar(&tags, "tag", nil, "placement tag a cell must have (repeatable)")
	f.StringArrayVar(&routes, "route", nil, "hostname routed to the app's port (repeatable)")
	f.StringVar(&rootfs, "rootfs", "preloaded:cflinuxfs4", "root filesystem URL")
	f.StringVar(&updateStrategy, "update-strategy", "rolling", "how instances leave a draining cell: rolling (the old one runs until its replacement does) or recreate (stop, then start elsewhere, one at a time: for apps that cannot run twice)")
	_ = cmd.MarkFlagRequired("command")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		mem, err := parseMB("memory", memory)
		if err != nil {
			return err
		}
		dsk, err := parseMB("disk", disk)
		if err != nil {
			return err
		}
		d := &modelsv1.DesiredLRP{
			ProcessGuid: args[0], Domain: domain, RootFs: rootfs, Instances: instances, MemoryMb: mem, DiskMb: dsk,
			Action: shellAction(command), PlacementTags: tags, LogGuid: args[0], LogSource: "APP/PROC/WEB",
		}
		switch updateStrategy {
		case "rolling":
			d.UpdateStrategy = modelsv1.UpdateStrategy_UPDATE_STRATEGY_ROLLING
		case "recreate":
			d.UpdateStrategy = modelsv1.UpdateStrategy_UPDATE_STRATEGY_RECREATE
		default:
			return fmt.Errorf("--update-strategy: want rolling or recreate (got %q)", updateStrategy)
		}
		for _, kv := range env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--env: want K=V (got %q)", kv)
			}
			d.EnvironmentVariables = append(d.EnvironmentVariables, &modelsv1.EnvironmentVariable{Name: k, Value: v})
		}
		if port > 0 {
			d.Ports = []uint32{port}
			switch health {
			case "port":
				d.CheckDefinition = &modelsv1.CheckDefinition{Checks: []*modelsv1.Check{{Check: &modelsv1.Check_TcpCheck{TcpCheck: &modelsv1.TCPCheck{Port: port}}}}}
			case "http":
				d.CheckDefinition = &modelsv1.CheckDefinition{Checks: []*modelsv1.Check{{Check: &modelsv1.Check_HttpCheck{HttpCheck: &modelsv1.HTTPCheck{Port: port, Path: "/"}}}}}
			case "none":
			default:
				return fmt.Errorf("--health-check: want port, http or none (got %q)", health)
			}
			if len(routes) > 0 {
				doc, _ := json.Marshal([]map[string]any{{"hostnames": routes, "port": port}})
				d.Routes = map[string]string{"cf-router": string(doc)}
			}
		} else if len(routes) > 0 || health != "none" && health != "port" {
			return fmt.Errorf("--route and --health-check %s need --port", health)
		}
		return desire(cmd, c, d)
	}
	return cmd
}

func desire(cmd *cobra.Command, c *conn, d *modelsv1.DesiredLRP) error {
	if err := models.ValidateDesiredLRP(d); err != nil {
		return err
	}
	var resp *bbsv1.DesireLRPResponse
	if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) (err error) {
		resp, err = bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
		return err
	}); err != nil {
		if strings.Contains(err.Error(), models.ErrAlreadyExists.Error()) {
			g := d.GetProcessGuid()
			return fmt.Errorf("%s already exists: change it with gavel scale %s N, gavel update-lrp %s -f PATCH (instances, routes, annotation, metric tags) or gavel apply -f SPEC; anything else (command, memory, rootfs...) needs gavel remove-lrp %s first", g, g, g, g)
		}
		return err
	}
	if c.json {
		return c.printJSON(resp.GetDesiredLrp())
	}
	fmt.Fprintf(c.out, "desired %s: %d instance(s) of %d MB in domain %s\n", d.GetProcessGuid(), d.GetInstances(), d.GetMemoryMb(), d.GetDomain())
	return nil
}

func newDesireLRPCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{Use: "desire-lrp -f SPEC.json|yaml", Short: "Desire an LRP from a spec file (DesiredLRP with proto field names)", Args: cobra.NoArgs}
	c := addConnFlags(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "spec file (required)")
	_ = cmd.MarkFlagRequired("file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		d := &modelsv1.DesiredLRP{}
		if err := loadSpec(file, d); err != nil {
			return err
		}
		if err := models.ValidateDesiredLRP(d); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		return desire(cmd, c, d)
	}
	return cmd
}

func update(cmd *cobra.Command, c *conn, guid string, u *modelsv1.DesiredLRPUpdate) error {
	if err := models.ValidateDesiredLRPUpdate(guid, u); err != nil {
		return err
	}
	var resp *bbsv1.UpdateDesiredLRPResponse
	if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) (err error) {
		resp, err = bbs.UpdateDesiredLRP(ctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: guid, Update: u})
		return err
	}); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(resp.GetSchedulingInfo())
	}
	fmt.Fprintf(c.out, "updated %s: %d instance(s)\n", guid, resp.GetSchedulingInfo().GetInstances())
	return nil
}

func newUpdateLRPCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{Use: "update-lrp PROCESS_GUID -f PATCH", Short: "Change instances, routes, annotation or metric tags (DesiredLRPUpdate file)", Args: cobra.ExactArgs(1)}
	c := addConnFlags(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "patch file (required)")
	_ = cmd.MarkFlagRequired("file")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		u := &modelsv1.DesiredLRPUpdate{}
		if err := loadSpec(file, u); err != nil {
			return err
		}
		if len(u.GetRoutes()) > 0 {
			u.SetRoutes = true
		}
		if len(u.GetMetricTags()) > 0 {
			u.SetMetricTags = true
		}
		return update(cmd, c, args[0], u)
	}
	return cmd
}

func newScaleCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "scale PROCESS_GUID N", Short: "Set the number of instances", Args: cobra.ExactArgs(2)}
	c := addConnFlags(cmd)
	// "scale web -1" parses -1 as a flag: answer with the count's rule.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		if _, tok, ok := strings.Cut(err.Error(), " in "); ok && negativeNumber.MatchString(tok) {
			return fmt.Errorf("instance count: want a number >= 0 (got %q)", tok)
		}
		return err
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 0 {
			return fmt.Errorf("instance count: want a number >= 0 (got %q)", args[1])
		}
		return update(cmd, c, args[0], &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(int32(n))})
	}
	return cmd
}

func newRemoveLRPCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "remove-lrp PROCESS_GUID", Short: "Remove a desired LRP and stop its instances", Args: cobra.ExactArgs(1)}
	c := addConnFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return c.act(cmd, func(ctx context.Context, bbs *client.Client) error {
			_, err := bbs.RemoveDesiredLRP(ctx, &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: args[0]})
			return err
		}, "removed %s", args[0])
	}
	return cmd
}

func newRetireCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "retire PROCESS_GUID INDEX", Short: "Stop one instance (it is replaced: a single-instance restart)", Args: cobra.ExactArgs(2)}
	c := addConnFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		i, err := strconv.Atoi(args[1])
		if err != nil || i < 0 {
			return fmt.Errorf("INDEX: want a number >= 0 (got %q)", args[1])
		}
		return c.act(cmd, func(ctx context.Context, bbs *client.Client) error {
			_, err := bbs.RetireActualLRP(ctx, &bbsv1.RetireActualLRPRequest{ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: args[0], Index: int32(i)}})
			return err
		}, "retired %s/%d", args[0], i)
	}
	return cmd
}

// counts tallies ordinary instances by state.
type counts struct{ running, claimed, unclaimed, crashed int }

func tally(rows []*modelsv1.ActualLRP) map[string]*counts {
	out := map[string]*counts{}
	for _, a := range rows {
		if a.GetPresence() != models.Ordinary {
			continue
		}
		c := out[a.GetKey().GetProcessGuid()]
		if c == nil {
			c = &counts{}
			out[a.GetKey().GetProcessGuid()] = c
		}
		switch a.GetState() {
		case models.Running:
			c.running++
		case models.Claimed:
			c.claimed++
		case models.Unclaimed:
			c.unclaimed++
		case models.Crashed:
			c.crashed++
		}
	}
	return out
}

func newLRPsCommand() *cobra.Command {
	var domain, cell string
	cmd := &cobra.Command{Use: "lrps", Short: "List desired LRPs with their instance counts (or one cell's instances)", Args: cobra.NoArgs}
	c := addConnFlags(cmd)
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain")
	cmd.Flags().StringVar(&cell, "cell", "", "list the instances on this cell instead")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var actual *bbsv1.ListActualLRPsResponse
		var desired *bbsv1.ListDesiredLRPSchedulingInfosResponse
		if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) (err error) {
			if actual, err = bbs.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{Domain: domain, CellId: cell}); err != nil || cell != "" {
				return err
			}
			desired, err = bbs.ListDesiredLRPSchedulingInfos(ctx, &bbsv1.ListDesiredLRPSchedulingInfosRequest{Filter: &bbsv1.DesiredLRPFilter{Domain: domain}})
			return err
		}); err != nil {
			return err
		}
		if cell != "" {
			return printInstances(c, actual.GetActualLrps())
		}
		if c.json {
			return printEach(c, desired.GetSchedulingInfos())
		}
		t := tally(actual.GetActualLrps())
		w := newTable(c)
		fmt.Fprintln(w, "PROCESS_GUID\tDOMAIN\tDESIRED\tRUNNING\tSTARTING\tUNCLAIMED\tCRASHED\tMEMORY\tDISK")
		for _, s := range desired.GetSchedulingInfos() {
			n := t[s.GetKey().GetProcessGuid()]
			if n == nil {
				n = &counts{}
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%dM\t%dM\n", s.GetKey().GetProcessGuid(), s.GetKey().GetDomain(), s.GetInstances(),
				n.running, n.claimed, n.unclaimed, n.crashed, s.GetResource().GetMemoryMb(), s.GetResource().GetDiskMb())
		}
		return w.Flush()
	}
	return cmd
}

func address(a *modelsv1.ActualLRP) string {
	if a.GetNetInfo() == nil {
		return ""
	}
	ni := a.GetNetInfo()
	// Ports as the app sees them: a container with its own network (an
	// instance address of its own) listens on the container port, mapped
	// from the host port; one on the host's network (the process backend)
	// listens on the host port itself, its $PORT.
	shared := ni.GetInstanceAddress() == "" || ni.GetInstanceAddress() == ni.GetAddress()
	var ports []string
	for _, p := range ni.GetPorts() {
		if shared {
			ports = append(ports, strconv.Itoa(int(p.GetHostPort())))
		} else {
			ports = append(ports, fmt.Sprintf("%d->%d", p.GetHostPort(), p.GetContainerPort()))
		}
	}
	return ni.GetAddress() + " " + strings.Join(ports, ",")
}

func printInstances(c *conn, rows []*modelsv1.ActualLRP) error {
	if c.json {
		return printEach(c, rows)
	}
	w := newTable(c)
	fmt.Fprintln(w, "PROCESS_GUID\tINDEX\tSTATE\tPRESENCE\tCELL\tADDRESS\tCRASHES\tSINCE\tDETAIL")
	for _, a := range rows {
		detail := a.GetPlacementError()
		if detail == "" {
			detail = a.GetCrashReason()
		}
		since := time.Since(time.Unix(0, a.GetSince())).Round(time.Second)
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s ago\t%s\n", a.GetKey().GetProcessGuid(), a.GetKey().GetIndex(),
			models.StateName(a.GetState()), models.PresenceName(a.GetPresence()), a.GetInstanceKey().GetCellId(), address(a),
			a.GetCrashCount(), since, detail)
	}
	return w.Flush()
}

func newLRPCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "lrp PROCESS_GUID", Short: "Show a desired LRP and every instance", Args: cobra.ExactArgs(1)}
	c := addConnFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var d *bbsv1.GetDesiredLRPResponse
		var actual *bbsv1.ListActualLRPsResponse
		if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) (err error) {
			if d, err = bbs.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: args[0]}); err != nil {
				return err
			}
			actual, err = bbs.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{args[0]}})
			return err
		}); err != nil {
			return err
		}
		if c.json {
			if err := c.printJSON(d.GetDesiredLrp()); err != nil {
				return err
			}
			return printInstances(c, actual.GetActualLrps())
		}
		lrp := d.GetDesiredLrp()
		fmt.Fprintf(c.out, "process guid:  %s\ndomain:        %s\ninstances:     %d\nresources:     %d MB memory, %d MB disk\nrootfs:        %s\nports:         %v\n",
			lrp.GetProcessGuid(), lrp.GetDomain(), lrp.GetInstances(), lrp.GetMemoryMb(), lrp.GetDiskMb(), lrp.GetRootFs(), lrp.GetPorts())
		if len(lrp.GetPlacementTags()) > 0 {
			fmt.Fprintf(c.out, "placement tags: %s\n", strings.Join(lrp.GetPlacementTags(), ","))
		}
		keys := make([]string, 0, len(lrp.GetRoutes()))
		for k := range lrp.GetRoutes() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(c.out, "route %s: %s\n", k, lrp.GetRoutes()[k])
		}
		fmt.Fprintln(c.out)
		return printInstances(c, actual.GetActualLrps())
	}
	return cmd
}

func newWaitCommand() *cobra.Command {
	var running int
	var timeout time.Duration
	cmd := &cobra.Command{Use: "wait PROCESS_GUID --running N", Short: "Wait until N instances are RUNNING", Args: cobra.ExactArgs(1)}
	c := addConnFlags(cmd)
	cmd.Flags().IntVar(&running, "running", 1, "instances that must be RUNNING")
	cmd.Flags().DurationVar(&timeout, "wait-timeout", 60*time.Second, "how long to wait")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		bbs, err := c.client(cmd)
		if err != nil {
			return err
		}
		defer bbs.Close()
		tty := isTerminal(c.out)
		deadline := time.Now().Add(timeout)
		// A name that is not desired, or more instances than desired, can
		// never be waited for: say so at once.
		dctx, dcancel := c.ctx(cmd)
		desired, err := bbs.GetDesiredLRP(dctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: args[0]})
		dcancel()
		if errors.Is(err, models.ErrNotFound) {
			return fmt.Errorf("%s is not a desired LRP (gavel lrps lists them)", args[0])
		} else if err != nil {
			return c.explain(err)
		}
		if n := int(desired.GetDesiredLrp().GetInstances()); running > n {
			return fmt.Errorf("--running %d: %s desires only %d instance(s)", running, args[0], n)
		}
		var last []*modelsv1.ActualLRP
		for {
			ctx, cancel := c.ctx(cmd)
			resp, err := bbs.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{args[0]}})
			cancel()
			if err != nil {
				return c.explain(err)
			}
			last = resp.GetActualLrps()
			n := tally(last)[args[0]]
			got := 0
			if n != nil {
				got = n.running
			}
			if tty {
				fmt.Fprintf(c.out, "\r%s %s %d/%d running", args[0], progressBar(got, running, 30), got, running)
			}
			if got >= running {
				if tty {
					fmt.Fprintln(c.out)
				} else if !c.json {
					fmt.Fprintf(c.out, "%s: %d/%d running\n", args[0], got, running)
				}
				return nil
			}
			if crashing := keepsCrashing(last); crashing != "" {
				if tty {
					fmt.Fprintln(c.out)
				}
				return fmt.Errorf("%d of %d instances of %s running, and they will not all be soon: %s", got, running, args[0], crashing)
			}
			if time.Now().After(deadline) {
				if tty {
					fmt.Fprintln(c.out)
				}
				return fmt.Errorf("timed out after %s: %d of %d instances of %s running; still missing: %s", timeout, got, running, args[0], missing(last))
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	return cmd
}

// negativeNumber is a negative count given where a count is expected.
var negativeNumber = regexp.MustCompile(`^-[0-9]+$`)

// restartBackoffCrashes is the crash count from which the crash policy
// waits (30 s, doubling) before restarting an instance (Diego's rule).
const restartBackoffCrashes = 3

// keepsCrashing describes the instances that crashed often enough that the
// crash policy now delays their restart, or "" when there are none.
func keepsCrashing(rows []*modelsv1.ActualLRP) string {
	var parts []string
	for _, a := range rows {
		if a.GetPresence() != models.Ordinary || a.GetState() != models.Crashed || a.GetCrashCount() < restartBackoffCrashes {
			continue
		}
		parts = append(parts, fmt.Sprintf("index %d CRASHED %d times (%s)", a.GetKey().GetIndex(), a.GetCrashCount(), a.GetCrashReason()))
	}
	return strings.Join(parts, "; ")
}

// missing describes the instances that are not running.
func missing(rows []*modelsv1.ActualLRP) string {
	var parts []string
	for _, a := range rows {
		if a.GetPresence() != models.Ordinary || a.GetState() == models.Running {
			continue
		}
		p := fmt.Sprintf("index %d %s", a.GetKey().GetIndex(), models.StateName(a.GetState()))
		if e := a.GetPlacementError(); e != "" {
			p += " (" + e + ")"
		} else if r := a.GetCrashReason(); r != "" {
			p += " (" + r + ")"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "no instances exist (is the LRP desired?)"
	}
	return strings.Join(parts, "; ")
}

func progressBar(n, total, width int) string {
	if total <= 0 {
		total = 1
	}
	filled := min(width, n*width/total)
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
