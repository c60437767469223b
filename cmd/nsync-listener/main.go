// Command nsync-listener is nsync's HTTP API: the controller desires, updates and removes apps and tasks through it.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/gavelhq/gavel/internal/logging"
	"github.com/gavelhq/gavel/nsync/app"
)

func main() {
	configPath := flag.String("config", "", "path to the JSON config file")
	bbs := flag.String("bbs-address", "", "comma-separated BBS addresses (overrides the config's bbs_addresses)")
	flag.Parse()

	cfg, err := app.Load(*configPath, app.DefaultListenerDebugAddress)
	if err == nil {
		if *bbs != "" {
			cfg.BBSAddresses = strings.Split(*bbs, ",")
		}
		err = cfg.ValidateListener()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsync-listener: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("nsync-listener", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsync-listener: %v\n", err)
		os.Exit(2)
	}
	process := ifrit.Invoke(sigmon.New(app.NewListener(cfg, logger).Runner()))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
