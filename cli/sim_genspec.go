package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gavelhq/gavel/auctioneer/sim"
)

// generateFromSpec is gavel sim generate --spec FILE: the scenario a
// generator spec (JSON, or YAML by its .yaml or .yml extension) describes,
// with --seed, when given, in place of the spec's seed. The flags that
// shape a generated scenario without a spec are refused beside it.
func generateFromSpec(cmd *cobra.Command, path string) error {
	var set []string
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if f.Name != "spec" && f.Name != "seed" {
			set = append(set, "--"+f.Name)
		}
	})
	if len(set) > 0 {
		return fmt.Errorf("--spec: the spec describes the cells and the work; drop %s", strings.Join(set, ", "))
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, sim.MaxSpecBytes+1))
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	ext := strings.ToLower(filepath.Ext(path))
	spec, err := sim.ParseGenSpec(data, ext == ".yaml" || ext == ".yml")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if cmd.Flags().Changed("seed") {
		if spec.Seed, err = cmd.Flags().GetInt64("seed"); err != nil {
			return err
		}
	}
	s, err := sim.GenerateFromSpec(spec)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeScenario(cmd.OutOrStdout(), "", s, true)
}
