// Command stager turns a controller's staging requests into BBS tasks and reports their completion to the controller.
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

	cfg, err := app.LoadStager(*configPath)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "stager: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("stager", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stager: %v\n", err)
		os.Exit(2)
	}
	process := ifrit.Invoke(sigmon.New(app.NewStager(cfg, logger).Runner()))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
