package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gavelhq/gavel/rep/backend/runc"
)

func newRootfsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rootfs",
		Short: "Build root filesystems for the runc backend's preloaded rootfses",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRootfsBusyboxCommand())
	return cmd
}

func newRootfsBusyboxCommand() *cobra.Command {
	var busybox string
	cmd := &cobra.Command{
		Use:   "busybox DIR",
		Short: "Make DIR a minimal rootfs around a static busybox (root and vcap users, /tmp); name it in a cell's runc.rootfses",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&busybox, "busybox", "/bin/busybox", "a statically linked busybox (Debian: apt-get install busybox-static)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		dir, err := filepath.Abs(args[0])
		if err != nil {
			return err
		}
		if err := runc.BuildBusyboxRootfs(dir, busybox); err != nil {
			return fmt.Errorf("%w (is --busybox %s a static busybox? apt-get install busybox-static)", err, busybox)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "built %s: use it as \"runc\": {\"rootfses\": {\"busybox\": %q}} and run work with rootfs preloaded:busybox\n", dir, dir)
		return nil
	}
	return cmd
}
