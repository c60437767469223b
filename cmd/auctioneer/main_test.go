package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
)

// asDaemon makes the test binary run main, so the tests exercise the real
// daemon (flags, exit codes, logs) without a separate build.
const asDaemon = "GAVEL_TEST_RUN_AUCTIONEER_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asDaemon) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(etcdtest.RunShared(m))
}

func writeConfig(t *testing.T, cfg map[string]any) string {
	path := filepath.Join(t.TempDir(), "auctioneer.json")
	data, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

func daemon(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asDaemon+"=1")
	return cmd
}

func exitCode(t *testing.T, err error) int {
	var exit *exec.ExitError
	if err == nil {
		return 0
	}
	require.True(t, errors.As(err, &exit), "unexpected error %v", err)
	return exit.ExitCode()
}

func TestBadConfigExitsTwoNamingTheFields(t *testing.T) {
	cases := []struct {
		name  string
		cfg   map[string]any
		wants []string
	}{
		{"missing endpoints", map[string]any{}, []string{"etcd.endpoints", "bbs_addresses"}},
		{"bad values", map[string]any{
			"etcd": map[string]any{"endpoints": []string{"http://127.0.0.1:1"}}, "bbs_addresses": []string{"127.0.0.1:1"},
			"strategy": "magic", "cell_state_workers": -1,
		}, []string{"strategy", "cell_state_workers"}},
		{"unknown field", map[string]any{"cell_state_timout": "1s"}, []string{"cell_state_timout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := daemon("-config", writeConfig(t, tc.cfg)).CombinedOutput()
			require.Equal(t, 2, exitCode(t, err), "output: %s", out)
			for _, w := range tc.wants {
				require.Contains(t, string(out), w)
			}
		})
	}
}

// syncBuffer collects output lines and says when one contains a string.
type syncBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *syncBuffer) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
}

func (b *syncBuffer) has(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func TestRunsTakesTheLockAndStopsOnSIGTERM(t *testing.T) {
	cfg := writeConfig(t, map[string]any{
		"etcd":          map[string]any{"endpoints": etcdtest.SharedServer(t).Endpoints()},
		"bbs_addresses": []string{"127.0.0.1:1"},
		"key_prefix":    etcdtest.Prefix(t),
		"instance_id":   "auctioneer-test",
		"lock_ttl":      "2s",
	})
	cmd := daemon("-config", cfg, "-listen-address", "127.0.0.1:0", "-debug-address", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	logs := &syncBuffer{}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logs.add(sc.Text())
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	require.Eventually(t, func() bool { return logs.has("auctioneer-lock-acquired") }, 20*time.Second, 20*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	<-scanned
	require.Equal(t, 0, exitCode(t, cmd.Wait()))
	require.True(t, logs.has(`"message":"auctioneer.exited"`), "logs: %v", logs.lines)
}
