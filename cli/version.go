package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what `gavel version` reports, from the binary's build info.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	BuildTime string `json:"build_time,omitempty"`
	GoVersion string `json:"go_version"`
}

// readVersion reads the version Go stamped into the binary: the module
// version ("(devel)" for a build from a checkout) and the VCS revision.
func readVersion() versionInfo {
	v := versionInfo{Version: "(unknown)", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Version = bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "vcs.time":
			v.BuildTime = s.Value
		}
	}
	return v
}

func newVersionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: "version", Short: "Print gavel's version, commit and Go version", Args: cobra.NoArgs}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v := readVersion()
		if asJSON {
			return json.NewEncoder(cmd.OutOrStdout()).Encode(v)
		}
		line := "gavel " + v.Version
		if v.Commit != "" {
			line += " commit " + v.Commit
			if v.Modified {
				line += " (modified)"
			}
		}
		if v.BuildTime != "" {
			line += " of " + v.BuildTime
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s, %s\n", line, v.GoVersion)
		return nil
	}
	return cmd
}
