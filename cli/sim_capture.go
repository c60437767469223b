package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/auctionrunner"
	"github.com/gavelhq/gavel/auctioneer/sim"
	"github.com/gavelhq/gavel/bbs/auctionrequest"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/grpcclient"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// Defaults and bounds of gavel sim capture.
const (
	// captureWorkers is how many reps are asked for their state at once by default.
	captureWorkers = 32
	// maxCaptureWorkers bounds --workers.
	maxCaptureWorkers = 1000
	// captureProgressCells is the cell count from which progress lines are written.
	captureProgressCells = 50
	// maxListedCells bounds the cells an error names.
	maxListedCells = 5
)

// captureFlags are gavel sim capture's own flags.
type captureFlags struct {
	work, existing, output  string
	replace                 []string
	opts                    sim.ScenarioOptions
	maxCells, maxWork       int
	workers                 int
	cellTimeout             time.Duration
	skipUnreachable, pretty bool
}

func newSimCaptureCommand() *cobra.Command {
	var cf captureFlags
	cmd := &cobra.Command{
		Use:   "capture [--work none|desired|unplaced] [--existing keep|clear] [-o FILE]",
		Short: "Write a scenario from a running cluster: its cells, their work and, optionally, the desired work",
		Long: "Write a scenario (the format gavel sim run reads) from a running cluster: every live cell\n" +
			"from the BBS, with the capacity, zone, index, tags, rootfs providers, volume drivers and the LRP\n" +
			"instances and tasks its rep reports, in cell-id order as the auctioneer lists them.\n\n" +
			"--work chooses the work to place: none (the cluster as it is), desired (every desired LRP\n" +
			"instance and pending or running task; needs --existing clear) or unplaced (what is desired but\n" +
			"on no cell). --existing clear empties the cells, so the scenario is the cluster before its\n" +
			"placements; --replace GUID takes an app's instances off the cells and places it again.\n" +
			"Set --strategy, --seed and the weights as the cluster's auctioneer has them to replay its\n" +
			"auctions: the auctioneer's auction n uses its configured seed + n (its log's auction-completed\n" +
			"lines show each seed).",
		Args: cobra.NoArgs,
	}
	c := addConnFlags(cmd)
	_ = cmd.Flags().MarkHidden("json")
	f := cmd.Flags()
	f.StringVar(&cf.work, "work", string(sim.WorkNone), "work to place: none, desired or unplaced")
	f.StringVar(&cf.existing, "existing", "keep", "the cells' current work: keep or clear")
	f.StringArrayVar(&cf.replace, "replace", nil, "process guid whose instances leave the cells and are placed again (repeatable)")
	f.StringVarP(&cf.output, "output", "o", "", "write the scenario to this file (default stdout)")
	f.StringVar(&cf.opts.Strategy, "strategy", auctioneer.DefaultStrategy, "options.strategy of the scenario")
	f.Int64Var(&cf.opts.Seed, "seed", 0, "options.seed of the scenario (the auctioneer's seed + the auction's number)")
	f.Float64Var(&cf.opts.StartingContainerWeight, "starting-container-weight", auctioneer.DefaultStartingContainerWeight, "options.starting_container_weight of the scenario")
	f.Float64Var(&cf.opts.BinPackFirstFitWeight, "bin-pack-first-fit-weight", auctioneer.DefaultBinPackFirstFitWeight, "options.bin_pack_first_fit_weight of the scenario")
	f.IntVar(&cf.opts.MaxInflightStarts, "max-inflight-starts", auctioneer.DefaultMaxInflightStarts, "options.max_inflight_starts of the scenario")
	f.IntVar(&cf.maxCells, "max-cells", sim.MaxCells, "refuse a cluster with more cells")
	f.IntVar(&cf.maxWork, "max-work", sim.MaxWork, "refuse more LRP instances (or tasks) to place")
	f.IntVar(&cf.workers, "workers", captureWorkers, "reps asked for their state at once")
	f.DurationVar(&cf.cellTimeout, "cell-timeout", 10*time.Second, "time limit of each rep's State call")
	f.BoolVar(&cf.skipUnreachable, "skip-unreachable", false, "leave out cells whose rep does not answer (default: fail naming them)")
	f.BoolVar(&cf.pretty, "pretty", true, "indent the JSON")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o, err := cf.options()
		if err != nil {
			return err
		}
		var st sim.ClusterState
		if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) error {
			var err error
			st, err = captureCluster(ctx, c, bbs, cf, o, cmd.ErrOrStderr())
			return err
		}); err != nil {
			return err
		}
		s, notes, err := sim.Capture(st, o)
		if err != nil {
			return err
		}
		stderr := cmd.ErrOrStderr()
		for _, n := range notes {
			fmt.Fprintf(stderr, "note: cell %s %s\n", n.CellID, n.Message)
		}
		if err := writeScenario(cmd.OutOrStdout(), cf.output, s, cf.pretty); err != nil {
			return err
		}
		existing := 0
		for _, cell := range s.Cells {
			existing += len(cell.LRPs) + len(cell.Tasks)
		}
		fmt.Fprintf(stderr, "captured %d cells holding %d LRP instances and tasks; to place: %d LRP instances, %d tasks\n",
			len(s.Cells), existing, len(s.LRPs), len(s.Tasks))
		return nil
	}
	return cmd
}

// options checks the flags and turns them into capture options.
func (cf captureFlags) options() (sim.CaptureOptions, error) {
	o := sim.CaptureOptions{Work: sim.CaptureWork(cf.work), Replace: cf.replace, Options: cf.opts, MaxCells: cf.maxCells, MaxWork: cf.maxWork}
	switch cf.existing {
	case "keep":
	case "clear":
		o.ClearExisting = true
	default:
		return o, fmt.Errorf("--existing: must be keep or clear (got %q)", cf.existing)
	}
	switch {
	case o.Work != sim.WorkNone && o.Work != sim.WorkDesired && o.Work != sim.WorkUnplaced:
		return o, fmt.Errorf("--work: must be none, desired or unplaced (got %q)", cf.work)
	case o.Work == sim.WorkDesired && !o.ClearExisting:
		return o, errors.New("--work desired places every desired instance, and the running ones would count twice: add --existing clear, or use --work unplaced")
	case cf.maxCells <= 0 || cf.maxCells > sim.MaxCells:
		return o, fmt.Errorf("--max-cells: must be between 1 and %d (got %d)", sim.MaxCells, cf.maxCells)
	case cf.maxWork <= 0 || cf.maxWork > sim.MaxWork:
		return o, fmt.Errorf("--max-work: must be between 1 and %d (got %d)", sim.MaxWork, cf.maxWork)
	case cf.workers <= 0 || cf.workers > maxCaptureWorkers:
		return o, fmt.Errorf("--workers: must be between 1 and %d (got %d)", maxCaptureWorkers, cf.workers)
	case cf.cellTimeout <= 0:
		return o, fmt.Errorf("--cell-timeout: must be > 0 (got %s)", cf.cellTimeout)
	case strings.TrimSpace(cf.opts.Strategy) == "":
		return o, errors.New("--strategy: must not be empty")
	}
	if err := o.Validate(); err != nil {
		return o, err
	}
	return o, nil
}

// captureCluster reads the live cells from the BBS, each rep's state, and
// the desired LRPs and tasks when the work needs them.
func captureCluster(ctx context.Context, c *conn, bbs *client.Client, cf captureFlags, o sim.CaptureOptions, progress io.Writer) (sim.ClusterState, error) {
	var st sim.ClusterState
	cells, err := bbs.ListCells(ctx, &bbsv1.ListCellsRequest{})
	if err != nil {
		return st, err
	}
	presences := cells.GetCells()
	if len(presences) > cf.maxCells {
		return st, fmt.Errorf("the cluster has %d cells, more than --max-cells %d", len(presences), cf.maxCells)
	}
	var tlsConfig *tls.Config
	if c.tls.Enabled() {
		if tlsConfig, err = c.tls.Client(""); err != nil {
			return st, err
		}
	}
	pool := grpcclient.NewPool(tlsConfig)
	defer pool.Close()
	answers := fetchCellStates(ctx, pool, presences, cf.workers, cf.cellTimeout, progress)
	var failed []string
	for i, a := range answers {
		p := presences[i]
		switch {
		case a.err != nil:
			failed = append(failed, fmt.Sprintf("%s at %s: %v", p.GetCellId(), p.GetRepAddress(), c.explain(a.err)))
		case a.state.GetCellId() != "" && a.state.GetCellId() != p.GetCellId():
			// The auctioneer leaves such a cell out too.
			fmt.Fprintf(progress, "note: cell %s at %s reports cell id %s: left out, as the auctioneer does\n", p.GetCellId(), p.GetRepAddress(), a.state.GetCellId())
		default:
			st.Cells = append(st.Cells, auctionrunner.CellState(p, a.state))
		}
	}
	if len(failed) > 0 {
		listed := failed[:min(len(failed), maxListedCells)]
		msg := fmt.Sprintf("%d of %d cells did not answer State: %s", len(failed), len(presences), strings.Join(listed, "; "))
		if len(failed) > len(listed) {
			msg += fmt.Sprintf("; and %d more", len(failed)-len(listed))
		}
		if !cf.skipUnreachable {
			return st, errors.New(msg + " (--skip-unreachable leaves them out)")
		}
		fmt.Fprintf(progress, "note: %s; left out\n", msg)
	}
	if o.Work == sim.WorkNone && len(o.Replace) == 0 {
		return st, nil
	}
	infos, err := bbs.ListDesiredLRPSchedulingInfos(ctx, &bbsv1.ListDesiredLRPSchedulingInfosRequest{})
	if err != nil {
		return st, err
	}
	total := 0
	for _, si := range infos.GetSchedulingInfos() {
		total += int(si.GetInstances())
		if total > cf.maxWork {
			return st, fmt.Errorf("the cluster desires more than --max-work %d LRP instances", cf.maxWork)
		}
	}
	for _, si := range infos.GetSchedulingInfos() {
		indices := make([]int32, si.GetInstances())
		for i := range indices {
			indices[i] = int32(i)
		}
		st.DesiredLRPs = append(st.DesiredLRPs, auctionrunner.LRPStarts(auctionrequest.LRPStart(si, indices...))...)
	}
	if o.Work == sim.WorkNone {
		return st, nil
	}
	for _, state := range []modelsv1.TaskState{modelsv1.TaskState_TASK_STATE_PENDING, modelsv1.TaskState_TASK_STATE_RUNNING} {
		resp, err := bbs.ListTasks(ctx, &bbsv1.ListTasksRequest{State: state})
		if err != nil {
			return st, err
		}
		if len(st.Tasks)+len(resp.GetTasks()) > cf.maxWork {
			return st, fmt.Errorf("the cluster has more than --max-work %d pending and running tasks", cf.maxWork)
		}
		for _, t := range resp.GetTasks() {
			st.Tasks = append(st.Tasks, auctionrunner.TaskStart(auctionrequest.TaskStart(t)))
		}
	}
	return st, nil
}

// cellAnswer is one rep's State answer.
type cellAnswer struct {
	state *repv1.StateResponse
	err   error
}

// fetchCellStates asks every cell's rep for its State, workers at a time,
// each within timeout, writing a progress line per tenth of a large cluster.
func fetchCellStates(ctx context.Context, pool *grpcclient.Pool, presences []*modelsv1.CellPresence, workers int, timeout time.Duration, progress io.Writer) []cellAnswer {
	answers := make([]cellAnswer, len(presences))
	next := make(chan int)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
	)
	step := max(1, len(presences)/10)
	for range min(workers, len(presences)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				answers[i] = fetchCellState(ctx, pool, presences[i], timeout)
				mu.Lock()
				done++
				if len(presences) >= captureProgressCells && (done%step == 0 || done == len(presences)) {
					fmt.Fprintf(progress, "cell states: %d of %d\n", done, len(presences))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range presences {
		next <- i
	}
	close(next)
	wg.Wait()
	return answers
}

func fetchCellState(ctx context.Context, pool *grpcclient.Pool, p *modelsv1.CellPresence, timeout time.Duration) cellAnswer {
	conn, err := pool.Get(p.GetRepAddress())
	if err != nil {
		return cellAnswer{err: err}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := repv1.NewRepServiceClient(conn).State(cctx, &repv1.StateRequest{})
	return cellAnswer{state: st, err: err}
}

// writeScenario encodes s, checks that it parses as a scenario (so what is
// written is what gavel sim run accepts), and writes it to path, or to
// stdout when path is empty.
func writeScenario(stdout io.Writer, path string, s *sim.Scenario, pretty bool) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if pretty {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("encode scenario: %w", err)
	}
	if _, err := sim.Parse(buf.Bytes()); err != nil {
		return fmt.Errorf("the captured scenario would not load: %w", err)
	}
	if path == "" {
		if _, err := stdout.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("write scenario: %w", err)
		}
		return nil
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write scenario: %w", err)
	}
	return nil
}
