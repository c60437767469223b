// Command tps-listener answers a controller's questions about an app's instances: status, stats and bulk status.
package main

import (
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/cc-bridge/app"
	"github.com/gavelhq/gavel/internal/daemonmain"
)

func main() {
	daemonmain.Run("tps-listener", func(path string) (string, func(lager.Logger) ifrit.Runner, error) {
		cfg, err := app.LoadTPSListener(path)
		if err == nil {
			err = cfg.Validate()
		}
		return cfg.LogLevel, func(logger lager.Logger) ifrit.Runner { return app.NewTPSListener(cfg, logger).Runner() }, err
	})
}
