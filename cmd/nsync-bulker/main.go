// Command nsync-bulker keeps the BBS's cf-apps and cf-tasks in step with the controller and bumps their freshness.
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

	cfg, err := app.Load(*configPath, app.DefaultBulkerDebugAddress)
	if err == nil {
		if *bbs != "" {
			cfg.BBSAddresses = strings.Split(*bbs, ",")
		}
		err = cfg.ValidateBulker()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsync-bulker: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("nsync-bulker", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsync-bulker: %v\n", err)
		os.Exit(2)
	}
	process := ifrit.Invoke(sigmon.New(app.NewBulker(cfg, logger).Runner()))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
