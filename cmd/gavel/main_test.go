package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary act as gavel when GAVEL_TEST_MAIN is set.
func TestMain(m *testing.M) {
	if os.Getenv("GAVEL_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{name: "help succeeds", args: []string{"--help"}, wantCode: 0},
		{name: "error exits 1 with one line", args: []string{"sim", "run", "--scenario", "/nonexistent.json"}, wantCode: 1,
			wantStderr: "gavel: read scenario: open /nonexistent.json: no such file or directory\n"},
		{name: "unknown command", args: []string{"nope"}, wantCode: 1, wantStderr: "gavel: unknown command \"nope\" for \"gavel\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tt.args...)
			cmd.Env = append(os.Environ(), "GAVEL_TEST_MAIN=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tt.wantCode, code)
			if tt.wantStderr != "" {
				require.Equal(t, tt.wantStderr, stderr.String())
			}
		})
	}
}
