package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gavelhq/gavel/auctioneer/sim"
)

// newSimCommand returns "gavel sim": run, generate and compare placement
// scenarios on the real auction engine.
func newSimCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate auctions: run, generate and compare placement scenarios",
		Long: "Simulate auctions on the real placement engine.\n\n" +
			"A scenario file lists cells, the work already on them and the work to place\n" +
			"(see package auctioneer/sim for the format and its defaults). --strategy takes a\n" +
			"strategy name or a strategy file (auctioneer/strategyfile/README.md).",
	}
	cmd.AddCommand(newSimRunCommand(), newSimGenerateCommand(), newSimCompareCommand(), newSimSweepCommand())
	cmd.AddCommand(newSimTimelineCommand())
	cmd.AddCommand(newSimCaptureCommand())
	return cmd
}

func newSimRunCommand() *cobra.Command {
	var (
		scenario, strategy, format, svgPath string
		seed                                int64
		timeline                            string
		svgApps                             []string
	)
	cmd := &cobra.Command{
		Use:   "run --scenario FILE.json",
		Short: "Place a scenario's work with one strategy and report the result",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format: want text or json, got %q", format)
			}
			var ro sim.RunOptions
			if strategy != "" {
				st, err := resolveStrategy(strategy)
				if err != nil {
					return fmt.Errorf("--strategy: %w", err)
				}
				ro = runOptions(st)
			}
			s, err := loadScenario(scenario)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("seed") {
				ro.Seed = &seed
			}
			if timeline != "" {
				return runSimTimeline(cmd, s, timeline, ro, format, svgPath)
			}
			report, err := sim.Run(s, ro)
			if err != nil {
				return err
			}
			if err := stampReports(scenario, report); err != nil {
				return err
			}
			if svgPath != "" {
				if err := writeSVGFile(svgPath, sim.SVGOptions{Apps: svgApps}, report); err != nil {
					return err
				}
			}
			if format == "json" {
				return report.WriteJSON(cmd.OutOrStdout())
			}
			return report.WriteText(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&scenario, "scenario", "", "scenario file (JSON); required")
	f.StringVar(&strategy, "strategy", "", "strategy to use instead of the scenario's options.strategy: diego, binpack, spread or a strategy file (JSON/YAML)")
	f.Int64Var(&seed, "seed", 0, "tie-breaking seed instead of the scenario's options.seed")
	f.StringVar(&format, "format", "text", "report format: text or json")
	f.StringVar(&svgPath, "svg", "", "also draw the result to this SVG file")
	f.StringVar(&timeline, "timeline", "", "replay this timeline (JSON events over simulated time) on the scenario's cluster: a dynamic run")
	f.StringSliceVar(&svgApps, "svg-apps", nil, "process guids whose spread the SVG draws (default: the 3 with the most instances placed)")
	_ = cmd.MarkFlagRequired("scenario")
	return cmd
}

func newSimGenerateCommand() *cobra.Command {
	var (
		o          sim.GenerateOptions
		apps, spec string
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Write a generated scenario to stdout",
		Long: "Write a generated scenario to stdout: cells dealt into zones and pre-filled with\n" +
			"existing work, then the apps of --apps to place.\n\n" +
			"--apps is COUNTxINSTANCES@MEMORY_MB[,...]: e.g. 40x4@256 is 40 apps of 4 instances of 256 MB.\n\n" +
			"--spec FILE generates heterogeneous cell groups and workload mixes from a JSON or YAML spec\n" +
			"(docs/sim-capture-and-generate.md); --seed then replaces the spec's seed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if spec != "" {
				return generateFromSpec(cmd, spec)
			}
			var err error
			if strings.TrimSpace(apps) != "" {
				if o.Apps, err = sim.ParseAppMix(apps); err != nil {
					return fmt.Errorf("--apps: %w", err)
				}
			}
			s, err := sim.Generate(o)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetIndent("", "  ")
			if err := enc.Encode(s); err != nil {
				return fmt.Errorf("encode scenario: %w", err)
			}
			if _, err := cmd.OutOrStdout().Write(buf.Bytes()); err != nil {
				return fmt.Errorf("write scenario: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Cells, "cells", 100, "number of cells")
	f.IntVar(&o.Zones, "zones", 2, "number of zones, cells dealt round-robin")
	f.IntVar(&o.MemoryMB, "memory-mb", 4096, "memory per cell, MB")
	f.IntVar(&o.DiskMB, "disk-mb", 0, "disk per cell, MB (0: twice the memory)")
	f.IntVar(&o.Containers, "containers", 250, "container slots per cell")
	f.Float64Var(&o.Fill, "fill", 0.5, "fraction of each cell's memory already in use (±0.1 per cell)")
	f.StringVar(&apps, "apps", "40x4@256,10x10@512,100x1@128", "apps to place: COUNTxINSTANCES@MEMORY_MB[,...]")
	f.IntVar(&o.Tasks, "tasks", 0, "number of tasks to place")
	f.IntVar(&o.TaskMemoryMB, "task-memory-mb", 512, "memory (and disk) per task, MB")
	f.Int64Var(&o.Seed, "seed", 1, "seed of the generator, also written as options.seed")
	f.StringVar(&spec, "spec", "", "generate from this spec instead (JSON or YAML: cell groups and workload mixes; see auctioneer/sim/genspec.go)")
	return cmd
}

func newSimCompareCommand() *cobra.Command {
	var (
		scenario, svgPath, format string
		strategies, extra         []string
		seed                      int64
		svgApps                   []string
	)
	cmd := &cobra.Command{
		Use:   "compare --scenario FILE.json",
		Short: "Run several strategies on the identical workload and compare them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range strategies {
				if strings.TrimSpace(s) == "" {
					return fmt.Errorf("--strategies: empty strategy name in %q", strings.Join(strategies, ","))
				}
			}
			if format != "text" && format != "json" && format != "csv" {
				return fmt.Errorf("--format: want text, json or csv, got %q", format)
			}
			chosen, err := compareStrategies(cmd, strategies, extra)
			if err != nil {
				return err
			}
			s, err := loadScenario(scenario)
			if err != nil {
				return err
			}
			reports := make([]*sim.Report, 0, len(chosen))
			for _, st := range chosen {
				ro := runOptions(st)
				if cmd.Flags().Changed("seed") {
					ro.Seed = &seed
				}
				r, err := sim.Run(s, ro)
				if err != nil {
					return fmt.Errorf("compare: %w", err)
				}
				reports = append(reports, r)
			}
			if err := stampReports(scenario, reports...); err != nil {
				return err
			}
			if svgPath != "" {
				if err := writeSVGFile(svgPath, sim.SVGOptions{Apps: svgApps}, reports...); err != nil {
					return err
				}
			}
			return writeCompare(cmd.OutOrStdout(), format, reports)
		},
	}
	f := cmd.Flags()
	f.StringVar(&scenario, "scenario", "", "scenario file (JSON); required")
	f.StringSliceVar(&strategies, "strategies", []string{"diego", "binpack", "spread"}, "comma-separated strategies (names or strategy files) to compare")
	f.StringArrayVar(&extra, "strategy", nil, "a strategy name or strategy file to compare; repeatable; without --strategies only these run")
	f.StringVar(&format, "format", "text", "output format: text, json or csv")
	f.Int64Var(&seed, "seed", 0, "tie-breaking seed instead of the scenario's options.seed")
	f.StringVar(&svgPath, "svg", "", "draw the strategies side by side to this SVG file")
	f.StringSliceVar(&svgApps, "svg-apps", nil, "process guids whose spread the SVG draws (default: the 3 with the most instances placed)")
	_ = cmd.MarkFlagRequired("scenario")
	return cmd
}

// loadScenario reads and validates a scenario file.
func loadScenario(path string) (*sim.Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	defer f.Close()
	s, err := sim.ParseReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// writeSVGFile draws the reports to path.
func writeSVGFile(path string, o sim.SVGOptions, reports ...*sim.Report) error {
	var buf bytes.Buffer
	if err := sim.WriteSVGWith(&buf, o, reports...); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write svg: %w", err)
	}
	return nil
}
