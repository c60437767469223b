package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gavelhq/gavel/bench"
)

// newBenchCommand returns "gavel bench": the scale benchmark of package bench.
func newBenchCommand() *cobra.Command { return newBenchCommandWith(runBench) }

// benchRunner runs one bench with the options the flags made; runBench is
// the real one.
type benchRunner func(ctx context.Context, stdout io.Writer, o bench.Options, out, svg string) (*bench.Result, error)

// newBenchCommandWith is newBenchCommand with its runner given (tests pass
// their own to see the options the flags make).
func newBenchCommandWith(runBench benchRunner) *cobra.Command {
	var (
		o                     bench.Options
		lrps                  int
		sizes, kill, out, svg string
		repeat                int
		minAuctionInterval    time.Duration
		maxAuctionInterval    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark placement at scale: the real BBS+etcd, auctioneer and simulated cells as processes",
		Long: "Start etcd (embedded in the BBS, or its own gavel-etcd process with --etcd process), the BBS, the\n" +
			"auctioneer and a farm of simulated cells, each as its own process on loopback; measure the\n" +
			"raw etcd transaction rate; desire the LRPs and time every instance from DesireLRP to RUNNING;\n" +
			"optionally kill a share of the cells and time the recovery; check that every index ends with exactly one ORDINARY RUNNING row.\n\n" +
			"Progress goes to stderr, a summary to stdout; --out writes the full result as JSON and\n" +
			"--svg draws running instances over time. It fails when not every instance ran; missed\n" +
			"performance targets are reported, not failures.",
		Example: "  gavel bench --cells 1000 --lrps 1000 --instances-per-lrp 100 --out result.json --svg result.svg\n" +
			"  gavel bench --cells 1000 --instances 50000 --kill-cells 10%\n" +
			"  gavel bench --cells 20 --instances 500 --bin-dir bin",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Sizes, err = bench.ParseSizes(sizes); err != nil {
				return fmt.Errorf("--sizes: %w", err)
			}
			if o.KillShare, err = bench.ParseShare(kill); err != nil {
				return fmt.Errorf("--kill-cells: %w", err)
			}
			if cmd.Flags().Changed("lrps") {
				total := lrps * o.InstancesPerLRP
				if cmd.Flags().Changed("instances") && total != o.Instances {
					return fmt.Errorf("--instances %d disagrees with --lrps %d × --instances-per-lrp %d", o.Instances, lrps, o.InstancesPerLRP)
				}
				o.Instances = total
			}
			if o.Instances <= 0 || o.Cells <= 0 || o.InstancesPerLRP <= 0 {
				return errors.New("--cells, --instances (or --lrps) and --instances-per-lrp must be positive")
			}
			o.MinAuctionInterval = &minAuctionInterval
			if cmd.Flags().Changed("max-auction-interval") {
				// Only when asked: daemons older than the setting refuse it.
				o.MaxAuctionInterval = &maxAuctionInterval
			}
			o.Progress = cmd.ErrOrStderr()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if repeat < 1 {
				return fmt.Errorf("--repeat must be at least 1 (got %d)", repeat)
			}
			if repeat == 1 {
				res, err := runBench(ctx, cmd.OutOrStdout(), o, out, svg)
				if err != nil {
					return err
				}
				if !res.AllRunning() {
					return errors.New("bench: not every instance ended RUNNING (see the check line above)")
				}
				return nil
			}
			var runs []*bench.Result
			for i := 1; i <= repeat && ctx.Err() == nil; i++ {
				fmt.Fprintf(cmd.ErrOrStderr(), "run %d of %d\n", i, repeat)
				res, err := runBench(ctx, cmd.OutOrStdout(), o, numbered(out, i), numbered(svg, i))
				if err != nil && res == nil {
					return err
				}
				runs = append(runs, res)
			}
			rep := bench.Summarize(runs)
			if out != "" {
				if err := writeBenchFile(out, rep.WriteJSON); err != nil {
					return err
				}
			}
			if err := rep.WriteSummary(cmd.OutOrStdout()); err != nil {
				return err
			}
			if rep.Failed > 0 {
				return fmt.Errorf("bench: %d of %d runs failed", rep.Failed, rep.Runs)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Cells, "cells", bench.DefaultCells, "simulated cells")
	f.IntVar(&o.Instances, "instances", bench.DefaultInstances, "instances in all (the last LRP takes the remainder)")
	f.IntVar(&lrps, "lrps", 0, "LRPs to desire (sets --instances to lrps × instances-per-lrp)")
	f.IntVar(&o.InstancesPerLRP, "instances-per-lrp", bench.DefaultInstancesPerLRP, "instances of each LRP")
	f.StringVar(&sizes, "sizes", bench.DefaultSizes, "size mix, MEMORY_MB:WEIGHT,... (disk as much as memory)")
	f.StringVar(&kill, "kill-cells", "", "share of cells to SIGKILL once all run, e.g. 10% (empty: no recovery phase)")
	f.IntVar(&o.CellsPerProcess, "cells-per-process", bench.DefaultCellsPerProcess, "most cells in one rep process")
	f.StringVar(&o.BinDir, "bin-dir", "", "directory with prebuilt bbs, auctioneer, rep and gavel-etcd (default: go build them)")
	f.StringVar(&o.EtcdMode, "etcd", bench.DefaultEtcdMode, "etcd embedded in the BBS, its CPU counted as the BBS's (embedded), or its own gavel-etcd process, measured apart but reached over loopback gRPC (process)")
	f.StringVar(&o.WorkDir, "work-dir", "", "where to make the run's temporary directory (default the system temp dir)")
	f.BoolVar(&o.KeepWorkDir, "keep-work-dir", false, "keep the configs, logs and etcd data after the run")
	f.IntVar(&o.RawClients, "raw-clients", bench.DefaultRawClients, "concurrent transactions of the raw etcd measurement")
	f.DurationVar(&o.RawDuration, "raw-duration", bench.DefaultRawDuration, "length of the raw etcd measurement")
	f.IntVar(&o.DesireConcurrency, "desire-concurrency", bench.DefaultDesireConcurrency, "DesireLRP calls in flight")
	f.DurationVar(&o.PresenceTTL, "presence-ttl", bench.DefaultPresenceTTL, "cells' presence TTL")
	f.DurationVar(&o.ClaimDelay, "claim-delay", 0, "cells' claim_delay: run a placed instance at once and claim it only if not running by then (0: claim first, as Diego)")
	f.IntVar(&o.CellMemoryMB, "cell-memory-mb", bench.DefaultCellMemoryMB, "memory of each cell")
	f.IntVar(&o.CellDiskMB, "cell-disk-mb", bench.DefaultCellDiskMB, "disk of each cell")
	f.IntVar(&o.CellContainers, "cell-containers", bench.DefaultCellContainers, "containers of each cell")
	f.IntVar(&o.CommitWorkers, "commit-workers", 0, "BBS commit_workers (0: the BBS default)")
	f.IntVar(&o.CommitBatchOps, "commit-batch-ops", 0, "BBS commit_batch_ops (0: the BBS default)")
	f.DurationVar(&minAuctionInterval, "min-auction-interval", bench.DefaultMinAuctionInterval, "auctioneer min_auction_interval (0s: auctions back to back, as Diego's)")
	f.DurationVar(&maxAuctionInterval, "max-auction-interval", bench.DefaultMaxAuctionInterval, "auctioneer max_auction_interval: how long a busy auctioneer may hold a sparse batch (0s: never)")
	f.DurationVar(&o.Timeout, "timeout", bench.DefaultTimeout, "bound on the placement phase")
	f.DurationVar(&o.RecoveryTimeout, "recovery-timeout", bench.DefaultRecoveryTimeout, "bound on the recovery phase")
	f.StringVar(&o.LogLevel, "log-level", bench.DefaultLogLevel, "daemons' log level")
	f.DurationVar(&o.ProgressInterval, "progress-interval", bench.DefaultProgressInterval, "time between progress lines")
	f.StringVar(&out, "out", "", "write the full result as JSON to this file")
	f.IntVar(&repeat, "repeat", 1, "run the bench N times and report the median and range of its figures (--out then holds all runs; each run's files get -runK)")
	f.StringVar(&svg, "svg", "", "draw running instances over time to this SVG file")
	return cmd
}

// runBench runs the bench once, writes its JSON and SVG (when paths are
// given, also for a failed run) and its summary. The result is nil only when
// the run could not start.
func runBench(ctx context.Context, stdout io.Writer, o bench.Options, out, svg string) (*bench.Result, error) {
	res, err := bench.Run(ctx, o)
	if res == nil {
		return nil, err
	}
	if out != "" {
		if werr := writeBenchFile(out, res.WriteJSON); werr != nil {
			return res, errors.Join(err, werr)
		}
	}
	if svg != "" {
		if werr := writeBenchFile(svg, res.WriteSVG); werr != nil {
			return res, errors.Join(err, werr)
		}
	}
	if werr := res.WriteSummary(stdout); werr != nil {
		return res, errors.Join(err, werr)
	}
	if err != nil {
		return res, fmt.Errorf("bench failed after %d instances placed: %w", res.Failure.Placed, err)
	}
	return res, nil
}

// numbered inserts -runN before path's extension ("" stays "").
func numbered(path string, n int) string {
	if path == "" {
		return ""
	}
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s-run%d%s", strings.TrimSuffix(path, ext), n, ext)
}

// writeBenchFile creates path and fills it with write.
func writeBenchFile(path string, write func(io.Writer) error) error {
	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := write(file); err != nil {
		file.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
