package cli

import "github.com/spf13/cobra"

// bbsCommands are the commands that drive the BBS.
func bbsCommands() []*cobra.Command {
	return []*cobra.Command{
		newPushCommand(), newApplyCommand(), newDesireLRPCommand(), newUpdateLRPCommand(), newScaleCommand(), newRemoveLRPCommand(),
		newRetireCommand(), newLRPsCommand(), newLRPCommand(), newWaitCommand(),
		newRunTaskCommand(), newTasksCommand(), newTaskCommand(), newCancelTaskCommand(),
		newDevCommand(), newLogsCommand(), newCellsCommand(), newCellStateCommand(), newDrainCommand(), newDomainsCommand(), newSetDomainCommand(), newEventsCommand(),
		newBenchCommand(),
	}
}
