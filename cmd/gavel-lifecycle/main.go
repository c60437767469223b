// Command gavel-lifecycle is Gavel's small buildpack-lifecycle stand-in:
// builder (app bits → droplet), launcher (runs a droplet's start command),
// healthcheck (port or HTTP check) and bundle -o FILE (the lifecycle tarball
// the file server serves). See package cc-bridge/lifecycle.
package main

import (
	"os"

	"github.com/gavelhq/gavel/cc-bridge/lifecycle"
)

func main() {
	os.Exit(lifecycle.Main(os.Args, os.Stdout, os.Stderr))
}
