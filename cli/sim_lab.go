package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/sim"
	"github.com/gavelhq/gavel/auctioneer/strategyfile"
)

// resolveStrategy reads a --strategy value: a registered strategy name, or
// the path of a strategy file (JSON or YAML, see auctioneer/strategyfile).
func resolveStrategy(value string) (sim.SweepStrategy, error) {
	v := strings.TrimSpace(value)
	names := auctioneer.NewRegistry().Names()
	if v == "" {
		return sim.SweepStrategy{}, errors.New("empty strategy")
	}
	if slices.Contains(names, v) {
		return sim.SweepStrategy{Name: v}, nil
	}
	if _, err := os.Stat(v); err != nil {
		return sim.SweepStrategy{}, fmt.Errorf("%q is neither a strategy (%s) nor a strategy file: %w", v, strings.Join(names, ", "), err)
	}
	f, err := strategyfile.Load(v)
	if err != nil {
		return sim.SweepStrategy{}, err
	}
	return sim.SweepStrategy{File: f}, nil
}

// runOptions turns a resolved strategy into run options.
func runOptions(s sim.SweepStrategy) sim.RunOptions {
	return sim.RunOptions{Strategy: s.Name, StrategyFile: s.File}
}

// gavelVersion is the version recorded in results: version and commit.
func gavelVersion() string {
	v := readVersion()
	out := v.Version
	if v.Commit != "" {
		out += " " + v.Commit
		if v.Modified {
			out += "+modified"
		}
	}
	return out
}

// scenarioInputs returns what every result records about the scenario
// file: its path and the sha256 of its bytes.
func scenarioInputs(path string) (file, sha string, err error) {
	sha, err = sim.HashFile(path)
	if err != nil {
		return "", "", fmt.Errorf("read scenario: %w", err)
	}
	return path, sha, nil
}

// stampReports records the scenario and Gavel's version in each report.
func stampReports(scenarioPath string, reports ...*sim.Report) error {
	file, sha, err := scenarioInputs(scenarioPath)
	if err != nil {
		return err
	}
	for _, r := range reports {
		r.Metadata.ScenarioFile, r.Metadata.ScenarioSHA256, r.Metadata.GavelVersion = file, sha, gavelVersion()
	}
	return nil
}

// writeCompare writes a comparison as text, json or csv.
func writeCompare(w io.Writer, format string, reports []*sim.Report) error {
	if format == "text" {
		return sim.WriteCompareTable(w, reports)
	}
	rows := make([]sim.Row, len(reports))
	for i, r := range reports {
		rows[i] = sim.NewRow(r)
	}
	return writeRows(w, format, rows)
}

// writeRows writes rows as json or csv.
func writeRows(w io.Writer, format string, rows []sim.Row) error {
	if format == "json" {
		return sim.WriteRowsJSON(w, rows)
	}
	return sim.WriteRowsCSV(w, rows)
}

func newSimSweepCommand() *cobra.Command {
	var (
		scenario, seeds, format, out string
		strategies, params           []string
	)
	cmd := &cobra.Command{
		Use:   "sweep --scenario FILE.json [--strategy NAME|FILE]... [--seeds 1..20] [--param NAME=V1,V2]...",
		Short: "Run strategies over seeds and parameter grids; one CSV or JSON row per run",
		Long: "Run each strategy once per seed and per combination of parameter values on the\n" +
			"same scenario, and write one row per run with every input (strategy and its file's\n" +
			"sha256, parameters, seed, scenario sha256, gavel version) and the key figures.\n\n" +
			"Parameters: starting_container_weight, bin_pack_first_fit_weight,\n" +
			"max_inflight_starts, and a strategy file's params. Progress goes to stderr.\n" +
			fmt.Sprintf("At most %d runs.", sim.MaxSweepRuns),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "csv" && format != "json" {
				return fmt.Errorf("--format: want csv or json, got %q", format)
			}
			var o sim.SweepOptions
			for _, v := range strategies {
				st, err := resolveStrategy(v)
				if err != nil {
					return fmt.Errorf("--strategy: %w", err)
				}
				o.Strategies = append(o.Strategies, st)
			}
			for _, v := range params {
				p, err := sim.ParseSweepParam(v)
				if err != nil {
					return fmt.Errorf("--param: %w", err)
				}
				o.Params = append(o.Params, p)
			}
			s, err := loadScenario(scenario)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("seeds") {
				if o.Seeds, err = sim.ParseSeeds(seeds); err != nil {
					return fmt.Errorf("--seeds: %w", err)
				}
			} else {
				o.Seeds = []int64{s.Options.Seed}
			}
			if o.ScenarioFile, o.ScenarioSHA256, err = scenarioInputs(scenario); err != nil {
				return err
			}
			o.GavelVersion = gavelVersion()
			total, err := o.Runs()
			if err != nil {
				return fmt.Errorf("sweep: %w", err)
			}
			progress := cmd.ErrOrStderr()
			fmt.Fprintf(progress, "sweep: %d runs\n", total)
			o.Progress = func(done, total int, row sim.Row) {
				fmt.Fprintf(progress, "sweep: %d/%d %s seed %d: placed %d, failed %d\n", done, total, row.Strategy, row.Seed, row.Placed, row.Failed)
			}
			ctx, stop := signal.NotifyContext(contextOrBackground(cmd.Context()), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rows, err := sim.Sweep(ctx, s, o)
			if err != nil {
				return err
			}
			if out == "" {
				return writeRows(cmd.OutOrStdout(), format, rows)
			}
			f, err := os.Create(out)
			if err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			if err := writeRows(f, format, rows); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			fmt.Fprintf(progress, "sweep: wrote %d rows to %s\n", len(rows), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&scenario, "scenario", "", "scenario file (JSON); required")
	f.StringArrayVar(&strategies, "strategy", []string{"diego"}, "strategy name (diego, binpack, spread) or strategy file; repeat for several")
	f.StringVar(&seeds, "seeds", "", "seeds: comma-separated seeds and ranges, e.g. 1..20 or 1,5,10..12 (default: the scenario's options.seed)")
	f.StringArrayVar(&params, "param", nil, "parameter values NAME=V1,V2,...; repeat for a grid")
	f.StringVar(&format, "format", "csv", "output format: csv or json")
	f.StringVar(&out, "out", "", "write the rows to this file instead of stdout")
	_ = cmd.MarkFlagRequired("scenario")
	return cmd
}

// contextOrBackground is cmd.Context(), which cobra leaves nil when the
// command runs without ExecuteContext.
func contextOrBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

// compareStrategies resolves compare's --strategies and --strategy: the
// --strategy values alone when --strategies is not given, else both.
func compareStrategies(cmd *cobra.Command, strategies, extra []string) ([]sim.SweepStrategy, error) {
	var values []string
	if len(extra) == 0 || cmd.Flags().Changed("strategies") {
		values = append(values, strategies...)
	}
	values = append(values, extra...)
	out := make([]sim.SweepStrategy, 0, len(values))
	for _, v := range values {
		st, err := resolveStrategy(v)
		if err != nil {
			return nil, fmt.Errorf("--strategy: %w", err)
		}
		out = append(out, st)
	}
	return out, nil
}
