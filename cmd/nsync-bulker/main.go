// Command nsync-bulker keeps the BBS's cf-apps and cf-tasks in step with the controller and bumps their freshness.
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
	daemonmain.Run("nsync-bulker", func(path string) (string, func(lager.Logger) ifrit.Runner, error) {
		cfg, err := app.Load(path, app.DefaultBulkerDebugAddress)
		if err == nil {
			if *bbs != "" {
				cfg.BBSAddresses = strings.Split(*bbs, ",")
			}
			err = cfg.ValidateBulker()
		}
		return cfg.LogLevel, func(logger lager.Logger) ifrit.Runner { return app.NewBulker(cfg, logger).Runner() }, err
	})
}
