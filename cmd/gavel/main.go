// Command gavel is the Gavel operator CLI; see package cli.
package main

import (
	"fmt"
	"os"

	"github.com/gavelhq/gavel/cli"
	"github.com/gavelhq/gavel/rep/backend/process"
)

func main() {
	// gavel dev runs cells in this process; their process backend
	// re-executes this binary as each process's keeper.
	if process.KeeperRequested() {
		os.Exit(process.RunKeeper())
	}
	if err := cli.NewRootCommand().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "gavel: %v\n", err)
		os.Exit(1)
	}
}
