package cli

import "github.com/spf13/cobra"

// NewRootCommand returns the gavel command with every area's subcommands.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "gavel",
		Short:         "Operate and simulate Gavel, a Diego-style container scheduler",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(bbsCommands()...)
	root.AddCommand(
		newSimCommand(),
		newRoutesCommand(),
		newCertsCommand(),
		newRootfsCommand(),
		newVersionCommand(),
	)
	return root
}
