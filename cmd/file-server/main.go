// Command file-server serves lifecycle bundles and droplets to cells under /v1/static/.
package main

import (
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/cc-bridge/app"
	"github.com/gavelhq/gavel/internal/daemonmain"
)

func main() {
	daemonmain.Run("file-server", func(path string) (string, func(lager.Logger) ifrit.Runner, error) {
		cfg, err := app.LoadFileServer(path)
		if err == nil {
			err = cfg.Validate()
		}
		return cfg.LogLevel, func(logger lager.Logger) ifrit.Runner { return app.NewFileServer(cfg, logger).Runner() }, err
	})
}
