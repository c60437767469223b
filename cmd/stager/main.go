// Command stager turns a controller's staging requests into BBS tasks and reports their completion to the controller.
package main

import (
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/cc-bridge/app"
	"github.com/gavelhq/gavel/internal/daemonmain"
)

func main() {
	daemonmain.Run("stager", func(path string) (string, func(lager.Logger) ifrit.Runner, error) {
		cfg, err := app.LoadStager(path)
		if err == nil {
			err = cfg.Validate()
		}
		return cfg.LogLevel, func(logger lager.Logger) ifrit.Runner { return app.NewStager(cfg, logger).Runner() }, err
	})
}
