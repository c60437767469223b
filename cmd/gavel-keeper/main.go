// Command gavel-keeper is the parent of each process a cell's process
// backend starts: it starts the process, waits for it and records its exit
// status in the container's directory, so the status outlives a restart of
// the rep. The rep starts it (process.keeper_path in the rep's config);
// without it the rep re-executes its own, larger binary as the keeper.
package main

import (
	"fmt"
	"os"

	"github.com/gavelhq/gavel/rep/backend/process"
)

func main() {
	if process.KeeperRequested() {
		os.Exit(process.RunKeeper())
	}
	fmt.Fprintln(os.Stderr, "gavel-keeper is started by a rep's process backend (process.keeper_path in the rep's config), not by hand")
	os.Exit(2)
}
