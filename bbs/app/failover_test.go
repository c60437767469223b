package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/internal/freeport"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// buildBBS compiles cmd/bbs into a temporary directory.
func buildBBS(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bbs")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/gavelhq/gavel/cmd/bbs")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// freeAddr returns a loopback address that ports has not returned before
// and that no port-0 bind can take before the daemon binds it.
func freeAddr(t *testing.T, ports *freeport.Picker) string {
	t.Helper()
	addr, err := ports.Addr()
	require.NoError(t, err)
	return addr
}

// startProcess runs the bbs binary with a config file; it is killed when the test ends.
func startProcess(t *testing.T, bin string, cfg map[string]any) *exec.Cmd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bbs.json")
	data, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	cmd := exec.Command(bin, "-config", path)
	logs, err := os.Create(filepath.Join(t.TempDir(), "bbs.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logs.Name())
			t.Logf("bbs %s log:\n%s", cfg["instance_id"], out)
		}
	})
	return cmd
}

func TestFailoverAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the bbs binary")
	}
	bin := buildBBS(t)
	prefix := etcdtest.Prefix(t)
	const ttl = 3 * time.Second
	config := func(id, addr string) map[string]any {
		return map[string]any{
			"instance_id": id, "listen_address": addr, "debug_address": "127.0.0.1:0", "key_prefix": prefix,
			"etcd":     map[string]any{"endpoints": etcdtest.SharedServer(t).Endpoints()},
			"lock_ttl": ttl.String(), "lock_retry_interval": "200ms", "log_level": "info",
			"insecure_plaintext": true, // not about TLS (TestDefaultConfigServesMutualTLS is)
		}
	}
	ports := freeport.New()
	addrA, addrB := freeAddr(t, ports), freeAddr(t, ports)
	procA := startProcess(t, bin, config("bbs-a", addrA))
	c := dial(t, addrA, addrB)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		p, err := c.Ping(ctx, &bbsv1.PingRequest{})
		return err == nil && p.GetAvailable()
	}, 20*time.Second, 50*time.Millisecond, "bbs-a becomes active")
	procB := startProcess(t, bin, config("bbs-b", addrB))
	defer func() { _ = procB.Process.Kill() }()
	_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("before", 2)})
	require.NoError(t, err)

	b := dial(t, addrB)
	require.Eventually(t, func() bool {
		p, err := b.Ping(ctx, &bbsv1.PingRequest{})
		return err == nil && !p.GetAvailable()
	}, 20*time.Second, 50*time.Millisecond, "bbs-b serves as a passive replica")

	require.NoError(t, procA.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	var tookOver time.Duration
	require.Eventually(t, func() bool {
		p, err := b.Ping(ctx, &bbsv1.PingRequest{})
		if err == nil && p.GetAvailable() {
			tookOver = time.Since(killed)
			return true
		}
		return false
	}, ttl+10*time.Second, 20*time.Millisecond, "bbs-b takes over")
	t.Logf("bbs-b took over %s after the SIGKILL (lock TTL %s)", tookOver, ttl)
	require.Less(t, tookOver, ttl+2*time.Second, fmt.Sprintf("take-over within the lock TTL (%s) plus the retry interval", ttl))

	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("after", 1)})
	require.NoError(t, err, "writes reach the new active replica")
	list, err := c.ListDesiredLRPs(ctx, &bbsv1.ListDesiredLRPsRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetDesiredLrps(), 2, "nothing was lost")
}
