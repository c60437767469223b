// Command auctioneer runs Gavel's auctioneer: it holds the auctioneer lock,
// batches start requests from the BBS and places them on cells by auction.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/gavelhq/gavel/auctioneer/app"
	"github.com/gavelhq/gavel/internal/logging"
)

func main() {
	configPath := flag.String("config", "", "path to the JSON config file")
	listen := flag.String("listen-address", "", "gRPC API host:port (overrides the config)")
	debug := flag.String("debug-address", "", "metrics and pprof host:port (overrides the config)")
	flag.Parse()

	cfg, err := app.Load(*configPath)
	if err == nil {
		if *listen != "" {
			cfg.ListenAddress = *listen
		}
		if *debug != "" {
			cfg.DebugAddress = *debug
		}
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "auctioneer: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("auctioneer", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "auctioneer: %v\n", err)
		os.Exit(2)
	}
	process := ifrit.Invoke(sigmon.New(app.New(cfg, logger).Runner()))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
