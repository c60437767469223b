// Command gavel-garden serves the Garden HTTP API (wire-compatible with Cloud
// Foundry Garden) over Gavel's runc backend (real containers) or its
// process backend, so a rep (backend "garden") or any Garden client can
// drive it.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/gavelhq/gavel/garden/app"
	"github.com/gavelhq/gavel/internal/logging"
	"github.com/gavelhq/gavel/rep/backend/process"
)

func main() {
	// Both backends re-execute this binary as each process's keeper unless
	// their keeper_path names gavel-keeper.
	if process.KeeperRequested() {
		os.Exit(process.RunKeeper())
	}
	configPath := flag.String("config", "", "path to the JSON config file")
	network := flag.String("listen-network", "", `"unix" or "tcp" (overrides the config)`)
	listen := flag.String("listen-address", "", "socket path or host:port (overrides the config)")
	backendName := flag.String("backend", "", `"runc" or "process" (overrides the config)`)
	flag.Parse()

	cfg, err := app.Load(*configPath)
	if err == nil {
		if *network != "" {
			cfg.ListenNetwork = *network
		}
		if *listen != "" {
			cfg.ListenAddress = *listen
		}
		if *backendName != "" {
			cfg.Backend = *backendName
		}
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gavel-garden: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("gavel-garden", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gavel-garden: %v\n", err)
		os.Exit(2)
	}
	running := ifrit.Invoke(sigmon.New(app.New(cfg, logger).Runner()))
	if err := <-running.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
