// Command route-emitter registers running instances' routes with gorouter over NATS.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/gavelhq/gavel/internal/logging"
	"github.com/gavelhq/gavel/route-emitter/app"
)

func main() {
	configPath := flag.String("config", "", "path to the JSON config file")
	cellID := flag.String("cell-id", "", "run cell-local for this cell: no lock, only its instances (overrides the config)")
	natsURLs := flag.String("nats-url", "", "comma-separated NATS URLs (overrides the config's nats_urls)")
	bbs := flag.String("bbs-address", "", "comma-separated BBS addresses (overrides the config's bbs_addresses)")
	flag.Parse()

	cfg, err := app.Load(*configPath)
	if err == nil {
		if *cellID != "" {
			cfg.CellID = *cellID
		}
		if *natsURLs != "" {
			cfg.NATSURLs = strings.Split(*natsURLs, ",")
		}
		if *bbs != "" {
			cfg.BBSAddresses = strings.Split(*bbs, ",")
		}
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "route-emitter: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("route-emitter", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "route-emitter: %v\n", err)
		os.Exit(2)
	}
	process := ifrit.Invoke(sigmon.New(app.New(cfg, logger).Runner()))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
