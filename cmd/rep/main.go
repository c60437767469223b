// Command rep runs a cell: the RepService for the auctioneer and the BBS, the
// executor and its container backend, the cell's presence and the BBS sync.
// With -sim-cells N it runs N simulated cells in one process. SIGUSR1 drains
// the rep's cells: it exits 0 once they are empty, 1 at the evacuation timeout.
package main

import (
	"flag"
	"fmt"
	"os"
	"syscall"

	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/gavelhq/gavel/internal/logging"
	"github.com/gavelhq/gavel/rep/app"
	"github.com/gavelhq/gavel/rep/backend/process"
)

func main() {
	// The process backend re-executes this binary as each process's keeper.
	if process.KeeperRequested() {
		os.Exit(process.RunKeeper())
	}
	configPath := flag.String("config", "", "path to the JSON config file")
	cellID := flag.String("cell-id", "", "cell id (overrides the config)")
	zone := flag.String("zone", "", "availability zone (overrides the config)")
	listen := flag.String("listen-address", "", "RepService host:port (overrides the config)")
	simCells := flag.Int("sim-cells", -1, "run N simulated cells in this process (sets backend sim)")
	flag.Parse()

	cfg, err := app.Load(*configPath)
	if err == nil {
		if *cellID != "" {
			cfg.CellID = *cellID
		}
		if *zone != "" {
			cfg.Zone = *zone
		}
		if *listen != "" {
			cfg.ListenAddress = *listen
		}
		if *simCells >= 0 {
			cfg.SimCells, cfg.Backend = *simCells, app.BackendSim
		}
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "rep: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("rep", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rep: %v\n", err)
		os.Exit(2)
	}
	rep := app.New(cfg, logger)
	defer rep.DrainOnSignal(syscall.SIGUSR1)()
	running := ifrit.Invoke(sigmon.New(rep.Runner()))
	if err := <-running.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
