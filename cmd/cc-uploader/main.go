// Command cc-uploader relays droplets and build caches that cells upload to the controller, and waits for the controller's upload jobs.
package main

import (
	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/cc-bridge/app"
	"github.com/gavelhq/gavel/internal/daemonmain"
)

func main() {
	daemonmain.Run("cc-uploader", func(path string) (string, func(lager.Logger) ifrit.Runner, error) {
		cfg, err := app.LoadUploader(path)
		if err == nil {
			err = cfg.Validate()
		}
		return cfg.LogLevel, func(logger lager.Logger) ifrit.Runner { return app.NewUploader(cfg, logger).Runner() }, err
	})
}
