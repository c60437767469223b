// Command file-server serves lifecycle bundles and droplets to cells under /v1/static/.
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

	cfg, err := app.LoadFileServer(*configPath)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "file-server: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("file-server", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "file-server: %v\n", err)
		os.Exit(2)
	}
	process := ifrit.Invoke(sigmon.New(app.NewFileServer(cfg, logger).Runner()))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
