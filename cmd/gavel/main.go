// Command gavel is the Gavel operator CLI; see package cli.
package main

import (
	"fmt"
	"os"

	"github.com/gavelhq/gavel/cli"
)

func main() {
	if err := cli.NewRootCommand().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "gavel: %v\n", err)
		os.Exit(1)
	}
}
