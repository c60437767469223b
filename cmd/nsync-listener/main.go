// Command nsync-listener is nsync's HTTP API: the controller desires, updates and removes apps and tasks through it.
package main

import (
	"flag"
	"strings"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/internal/daemonmain"
	"github.com/gavelhq/gavel/nsync/app"
)

func main() {
	bbs := flag.String("bbs-address", "", "comma-separated BBS addresses (overrides the config's bbs_addresses)")
	daemonmain.Run("nsync-listener", func(path string) (string, func(lager.Logger) ifrit.Runner, error) {
		cfg, err := app.Load(path, app.DefaultListenerDebugAddress)
		if err == nil {
			if *bbs != "" {
				cfg.BBSAddresses = strings.Split(*bbs, ",")
			}
			err = cfg.ValidateListener()
		}
		return cfg.LogLevel, func(logger lager.Logger) ifrit.Runner { return app.NewListener(cfg, logger).Runner() }, err
	})
}
