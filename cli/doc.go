// Package cli builds the gavel operator command line. NewRootCommand
// assembles the tree; each area (sim, and later dev, bench, state queries)
// defines its subcommands in its own file and adds one line to root.go.
// Commands write to the command's output streams and return errors; only
// cmd/gavel turns an error into an exit status.
package cli
