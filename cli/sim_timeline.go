package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/gavelhq/gavel/auctioneer/sim"
)

// dynamicRunGCPercent is the GOGC of a dynamic run.
const dynamicRunGCPercent = 400

// progressEvery is how often a dynamic run reports progress on stderr.
const progressEvery = time.Second

// runSimTimeline is "gavel sim run --timeline FILE": the scenario's cluster
// through the timeline's events, reported as text or JSON, optionally
// drawn to an SVG. Progress and the wall time go to stderr, so stdout is
// the same for the same inputs.
func runSimTimeline(cmd *cobra.Command, s *sim.Scenario, path string, ro sim.RunOptions, format, svgPath string) error {
	tl, err := loadTimeline(path)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	var last time.Time
	opts := sim.TimelineRunOptions{RunOptions: ro, Progress: func(simMS, endMS int64) {
		if now := time.Now(); now.Sub(last) >= progressEvery {
			last = now
			fmt.Fprintf(stderr, "simulated %s of at most %s\n", simDuration(simMS), simDuration(endMS))
		}
	}}
	// Each auction allocates a fresh engine state; a long run trades some
	// memory for less collection (unless GOGC says otherwise).
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(dynamicRunGCPercent))
	}
	report, err := sim.RunTimeline(s, tl, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	speed := float64(report.EndMS) / 1000 / max(float64(report.Wall.Microseconds())/1000, 0.001)
	fmt.Fprintf(stderr, "dynamic run: %s simulated in %.3f s of wall time (%.1f s simulated per ms), %d auctions\n",
		simDuration(report.EndMS), report.Wall.Seconds(), speed, report.Totals.Auctions)
	if svgPath != "" {
		var buf bytes.Buffer
		if err := report.WriteSVG(&buf); err != nil {
			return err
		}
		if err := os.WriteFile(svgPath, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write svg: %w", err)
		}
	}
	out := bufio.NewWriter(cmd.OutOrStdout())
	if format == "json" {
		err = report.WriteJSON(out)
	} else {
		err = report.WriteText(out)
	}
	if err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func simDuration(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).String()
}

// loadTimeline reads and checks a timeline file (bounded while streaming).
func loadTimeline(path string) (*sim.Timeline, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read timeline: %w", err)
	}
	defer f.Close()
	tl, err := sim.ParseTimeline(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tl, nil
}

// newSimTimelineCommand returns "gavel sim timeline": generate a timeline
// for a scenario.
func newSimTimelineCommand() *cobra.Command {
	var (
		scenario       string
		duration       time.Duration
		recoverAfter   time.Duration
		taskRun        time.Duration
		o              sim.TimelineGenerateOptions
		checkOnlyQuiet bool
	)
	cmd := &cobra.Command{
		Use:   "timeline --scenario FILE.json",
		Short: "Write a generated timeline (events over simulated time) for a scenario to stdout",
		Long: "Write a generated timeline for a scenario to stdout, for \"gavel sim run --timeline\".\n\n" +
			"Events follow Poisson processes at the given rates and aim at the scenario's apps and\n" +
			"cells as they stand at each moment: rolling deploys (app X becomes X-v2, X-v3, ...),\n" +
			"cell failures and drains (each cell back after --recover-after), new apps, removals,\n" +
			"scales, crashes and tasks. The timeline's end_ms is --duration. For example, a day of\n" +
			"a 1,000-cell cluster with 10 deploys a minute and a cell failure an hour:\n\n" +
			"  gavel sim generate --cells 1000 --memory-mb 32768 > cluster.json\n" +
			"  gavel sim timeline --scenario cluster.json --duration 24h --deploys-per-min 10 \\\n" +
			"    --cell-failures-per-hour 1 > day.json\n" +
			"  gavel sim run --scenario cluster.json --timeline day.json --svg day.svg",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadScenario(scenario)
			if err != nil {
				return err
			}
			o.DurationMS = duration.Milliseconds()
			o.RecoverAfterMS = recoverAfter.Milliseconds()
			o.TaskRunMS = taskRun.Milliseconds()
			tl, err := sim.GenerateTimeline(s, o)
			if err != nil {
				return err
			}
			out := bufio.NewWriterSize(cmd.OutOrStdout(), 1<<20)
			if err := writeTimeline(out, tl); err != nil {
				return err
			}
			if err := out.Flush(); err != nil {
				return fmt.Errorf("write timeline: %w", err)
			}
			if !checkOnlyQuiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "timeline: %s over %s\n", tl.Describe(), duration)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&scenario, "scenario", "", "scenario file (JSON) the timeline is for; required")
	f.DurationVar(&duration, "duration", 24*time.Hour, "simulated length, also the timeline's end_ms")
	f.Float64Var(&o.DeploysPerMinute, "deploys-per-min", 10, "rolling deploys per minute")
	f.IntVar(&o.MaxInFlight, "max-in-flight", 1, "instances a deploy replaces at a time")
	f.Float64Var(&o.CellFailuresPerHour, "cell-failures-per-hour", 1, "cell failures per hour")
	f.Float64Var(&o.DrainsPerHour, "drains-per-hour", 0, "cell drains (evacuations) per hour")
	f.DurationVar(&recoverAfter, "recover-after", 10*time.Minute, "a failed cell comes back this long after failing (a drained one after its evacuation timeout and this); 0 keeps them down")
	f.Float64Var(&o.ArrivalsPerHour, "arrivals-per-hour", 0, "new apps per hour (sized like a random live app)")
	f.Float64Var(&o.RemovalsPerHour, "removals-per-hour", 0, "app removals per hour")
	f.Float64Var(&o.ScalesPerHour, "scales-per-hour", 0, "app scale events per hour (±1..3 instances)")
	f.Float64Var(&o.CrashesPerHour, "crashes-per-hour", 0, "instance crashes per hour")
	f.Float64Var(&o.TasksPerHour, "tasks-per-hour", 0, "task arrivals per hour")
	f.IntVar(&o.TaskMemoryMB, "task-memory-mb", 512, "memory (and disk) of each task, MB")
	f.DurationVar(&taskRun, "task-run", 5*time.Minute, "how long each task runs")
	f.Int64Var(&o.Seed, "seed", 1, "seed of the generator")
	f.BoolVar(&checkOnlyQuiet, "quiet", false, "do not print the summary on stderr")
	_ = cmd.MarkFlagRequired("scenario")
	return cmd
}

// writeTimeline writes a timeline as JSON with one event per line.
func writeTimeline(w io.Writer, tl *sim.Timeline) error {
	// Options left at zero take their defaults: write only the others.
	all, err := json.Marshal(tl.Options)
	if err != nil {
		return fmt.Errorf("encode timeline: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(all, &fields); err != nil {
		return fmt.Errorf("encode timeline: %w", err)
	}
	for k, v := range fields {
		if string(v) == "0" || string(v) == "null" {
			delete(fields, k)
		}
	}
	opts, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("encode timeline: %w", err)
	}
	if _, err := fmt.Fprintf(w, "{\"options\":%s,\"events\":[\n", opts); err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	for i := range tl.Events {
		line, err := json.Marshal(&tl.Events[i])
		if err != nil {
			return fmt.Errorf("encode timeline: %w", err)
		}
		sep := ",\n"
		if i == len(tl.Events)-1 {
			sep = "\n"
		}
		if _, err := fmt.Fprintf(w, "%s%s", line, sep); err != nil {
			return fmt.Errorf("write timeline: %w", err)
		}
	}
	if _, err := io.WriteString(w, "]}\n"); err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	return nil
}
