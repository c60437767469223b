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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
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
		{"missing endpoints and TLS", map[string]any{}, []string{"etcd.endpoints", "bbs_addresses",
			"tls.ca_file: required: mTLS is on by default (set insecure_plaintext: true to run without TLS)",
			"bbs_tls.cert_file: required", "rep_client_tls.key_file: required"}},
		{"plaintext and TLS files", map[string]any{
			"etcd": map[string]any{"endpoints": []string{"http://127.0.0.1:1"}}, "bbs_addresses": []string{"127.0.0.1:1"},
			"insecure_plaintext": true, "tls": map[string]any{"cert_file": "/etc/gavel/auctioneer.pem"},
		}, []string{"insecure_plaintext, tls.cert_file: contradictory"}},
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
		"etcd":               map[string]any{"endpoints": etcdtest.SharedServer(t).Endpoints()},
		"bbs_addresses":      []string{"127.0.0.1:1"},
		"key_prefix":         etcdtest.Prefix(t),
		"instance_id":        "auctioneer-test",
		"lock_ttl":           "2s",
		"insecure_plaintext": true,
	})
	cmd, logs, scanned := startDaemon(t, cfg)
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	require.Eventually(t, func() bool { return logs.has("auctioneer-lock-acquired") }, 20*time.Second, 20*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	<-scanned
	require.Equal(t, 0, exitCode(t, cmd.Wait()))
	require.True(t, logs.has(`"message":"auctioneer.exited"`), "logs: %v", logs.lines)
	require.True(t, logs.has(`"message":"auctioneer.api-without-tls"`), "insecure_plaintext is warned about; logs: %v", logs.lines)
}

// listenAddress is the address the daemon logged api-listening with.
func (b *syncBuffer) listenAddress() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		var entry struct {
			Message string `json:"message"`
			Data    struct {
				Address string `json:"address"`
			} `json:"data"`
		}
		if json.Unmarshal([]byte(l), &entry) == nil && entry.Message == "auctioneer.api-listening" {
			return entry.Data.Address
		}
	}
	return ""
}

// The real daemon with the default config, i.e. with every TLS file and no
// opt-out, serves mutual TLS: a client with a certificate from the CA is
// served, one without a certificate, one with a certificate from another
// CA and a plaintext one are refused.
func TestDefaultConfigServesMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "gavel")
	files := ca.Issue(t, "auctioneer")
	tlsFiles := map[string]any{"ca_file": files.CAFile, "cert_file": files.CertFile, "key_file": files.KeyFile}
	cfg := writeConfig(t, map[string]any{
		"etcd":           map[string]any{"endpoints": etcdtest.SharedServer(t).Endpoints()},
		"bbs_addresses":  []string{"127.0.0.1:1"},
		"key_prefix":     etcdtest.Prefix(t),
		"instance_id":    "auctioneer-mtls",
		"tls":            tlsFiles,
		"bbs_tls":        tlsFiles,
		"rep_client_tls": tlsFiles,
	})
	cmd, logs, scanned := startDaemon(t, cfg)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-scanned
		_ = cmd.Wait()
	})
	var addr string
	require.Eventually(t, func() bool { addr = logs.listenAddress(); return addr != "" }, 20*time.Second, 20*time.Millisecond)
	require.False(t, logs.has("api-without-tls"), "no plaintext warning with mTLS")

	withFiles := func(f tlsconfig.Files) credentials.TransportCredentials { return tlstest.Creds(t, f, "") }
	rogue := tlstest.NewCA(t, "rogue").Issue(t, "cli")
	rogue.CAFile = ca.File // trusts the daemon; only its own certificate is foreign
	cases := []struct {
		name  string
		creds credentials.TransportCredentials
		ok    bool
	}{
		{"certificate from the CA", withFiles(ca.Issue(t, "cli")), true},
		{"no certificate", withFiles(tlsconfig.Files{CAFile: ca.File}), false},
		{"certificate from another CA", withFiles(rogue), false},
		{"plaintext", insecure.NewCredentials(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tlstest.HealthCheck(addr, tc.creds)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

// startDaemon starts the auctioneer on config file cfg, with its log lines
// collected in logs; scanned is closed when its stdout closes.
func startDaemon(t *testing.T, cfg string) (cmd *exec.Cmd, logs *syncBuffer, scanned chan struct{}) {
	t.Helper()
	cmd = daemon("-config", cfg, "-listen-address", "127.0.0.1:0", "-debug-address", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	logs = &syncBuffer{}
	scanned = make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logs.add(sc.Text())
		}
	}()
	return cmd, logs, scanned
}
