// Command cc-uploader relays droplets and build caches that cells upload to the controller, and waits for the controller's upload jobs.
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

	cfg, err := app.LoadUploader(*configPath)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cc-uploader: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("cc-uploader", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cc-uploader: %v\n", err)
		os.Exit(2)
	}
	process := ifrit.Invoke(sigmon.New(app.NewUploader(cfg, logger).Runner()))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
