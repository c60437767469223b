// Command tps-watcher posts the controller's crashed, rescheduling and readiness_changed callbacks from BBS events; one watcher is active (tps_watcher lock).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/gavelhq/gavel/cc-bridge/app"
	"github.com/gavelhq/gavel/internal/logging"
)

func main() {
	configPath := flag.String("config", "", "path to the JSON config file")
	flag.Parse()

	cfg, err := app.LoadTPSWatcher(*configPath)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tps-watcher: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("tps-watcher", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tps-watcher: %v\n", err)
		os.Exit(2)
	}
	process := ifrit.Invoke(sigmon.New(app.NewTPSWatcher(cfg, logger).Runner()))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
