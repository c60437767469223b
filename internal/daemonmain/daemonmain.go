// Package daemonmain is the main function of Gavel's smaller daemons
// (cc-bridge's and nsync's): a -config flag, a config that is read and
// validated, a logger at the config's level, and the daemon's runner under
// ifrit until SIGTERM or SIGINT.
package daemonmain

import (
	"flag"
	"fmt"
	"os"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/gavelhq/gavel/internal/logging"
)

// Loader reads and validates the config file at path. It returns the log
// level the config asks for and what builds the daemon's runner from the
// logger.
type Loader func(path string) (logLevel string, runner func(lager.Logger) ifrit.Runner, err error)

// Run parses the command line (the daemon may define flags of its own
// before calling it), loads the config and runs the daemon. It exits 2 on a
// bad config, 1 when the daemon fails, and returns when it stopped cleanly.
func Run(name string, load Loader) {
	configPath := flag.String("config", "", "path to the JSON config file")
	flag.Parse()
	level, runner, err := load(*configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: config: %v\n", name, err)
		os.Exit(2)
	}
	logger, err := logging.New(name, level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	process := ifrit.Invoke(sigmon.New(runner(logger)))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
