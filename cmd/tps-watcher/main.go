// Command tps-watcher posts the controller's crashed, rescheduling and readiness_changed callbacks from BBS events; one watcher is active (tps_watcher lock).
package main

import (
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/cc-bridge/app"
	"github.com/gavelhq/gavel/internal/daemonmain"
)

func main() {
	daemonmain.Run("tps-watcher", func(path string) (string, func(lager.Logger) ifrit.Runner, error) {
		cfg, err := app.LoadTPSWatcher(path)
		if err == nil {
			err = cfg.Validate()
		}
		return cfg.LogLevel, func(logger lager.Logger) ifrit.Runner { return app.NewTPSWatcher(cfg, logger).Runner() }, err
	})
}
