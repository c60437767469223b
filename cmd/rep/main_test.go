package main_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The rep binary refuses a bad config with exit status 2 and names the fields.
func TestBadConfig(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "rep")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))

	cases := []struct {
		name, config string
		args         []string
		want         []string
	}{
		{"empty", `{}`, nil, []string{"cell_id", "etcd.endpoints", "bbs_addresses", "process.root_dir"}},
		{"unknown field", `{"cell_id":"c1","colour":"blue"}`, nil, []string{"unknown field", "colour"}},
		{"sim cells flag", `{"cell_id":"c1"}`, []string{"-sim-cells", "3"}, []string{"etcd.endpoints"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rep.json")
			require.NoError(t, os.WriteFile(path, []byte(tc.config), 0o644))
			out, err := exec.Command(bin, append([]string{"-config", path}, tc.args...)...).CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "exits with an error: %v", err)
			require.Equal(t, 2, exit.ExitCode())
			for _, w := range tc.want {
				require.Contains(t, string(out), w)
			}
		})
	}
}
