// Command bbs runs the bulletin board: Gavel's gRPC API over etcd.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/internal/logging"
)

func main() {
	configPath := flag.String("config", "", "path to the JSON config file")
	listen := flag.String("listen-address", "", "gRPC API host:port (overrides the config)")
	dataDir := flag.String("data-dir", "", "embedded etcd data directory (overrides the config)")
	flag.Parse()

	cfg, err := app.Load(*configPath)
	if err == nil {
		if *listen != "" {
			cfg.ListenAddress = *listen
		}
		if *dataDir != "" {
			cfg.EmbeddedEtcd.DataDir = *dataDir
		}
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bbs: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("bbs", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bbs: %v\n", err)
		os.Exit(2)
	}
	process := ifrit.Invoke(sigmon.New(app.New(cfg, logger).Runner()))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
