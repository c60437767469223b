package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gavelhq/gavel/garden"
	"github.com/gavelhq/gavel/garden/client"
	"github.com/gavelhq/gavel/internal/freeport"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// buildDaemon builds cmd/gavel-garden (static, as make build does).
func buildDaemon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gavel-garden")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/gavelhq/gavel/cmd/gavel-garden")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build gavel-garden: %s", out)
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

// daemon is a running gavel-garden.
type daemon struct {
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan error
}

func startDaemon(t *testing.T, bin string, cfg map[string]any) *daemon {
	t.Helper()
	data, err := json.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	d := &daemon{cmd: exec.Command(bin, "-config", path), logs: &syncBuffer{}, exited: make(chan error, 1)}
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	require.NoError(t, d.cmd.Start())
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.exited
	})
	return d
}

// stop sends SIGTERM and returns the exit error.
func (d *daemon) stop(t *testing.T) error {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-d.exited:
		d.exited <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("gavel-garden did not stop within 30s of SIGTERM; logs:\n%s", d.logs)
		return nil
	}
}

func waitPing(t *testing.T, c *client.Client, d *daemon) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case exitErr := <-d.exited:
			t.Fatalf("gavel-garden exited (%v); logs:\n%s", exitErr, d.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gavel-garden did not answer ping: %v; logs:\n%s", err, d.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func healthStatus(t *testing.T, addr, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	require.NoError(t, err)
	return resp.GetStatus()
}

func metric(t *testing.T, debugAddr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + debugAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	t.Fatalf("metric %s not served", name)
	return ""
}

// The daemon over each backend: serves the Garden API on a unix socket,
// reports health and metrics, stops on SIGTERM leaving its containers and
// processes running, and after a restart lists them and attaches to the
// running process, whose exit status it then reports.
func TestDaemonRestartKeepsContainersAndProcessesAttachable(t *testing.T) {
	bin := buildDaemon(t)
	for _, backendName := range []string{"process", "runc"} {
		t.Run(backendName, func(t *testing.T) {
			if backendName == "runc" {
				requireContainerHost(t)
			}
			dir := t.TempDir()
			socket := filepath.Join(dir, "garden.sock")
			ports := freeport.New()
			debugAddr, healthAddr := freeAddr(t, ports), freeAddr(t, ports)
			cfg := map[string]any{
				"listen_network": "unix", "listen_address": socket,
				"debug_address": debugAddr, "health_address": healthAddr, "health_check_interval": "200ms",
				"backend": backendName, "grace_time": "2s",
			}
			tag := strconv.Itoa(os.Getpid() % 100000)
			switch backendName {
			case "process":
				cfg["process"] = map[string]any{"root_dir": filepath.Join(dir, "depot"), "port_range_start": 12100, "port_range_end": 12199}
			case "runc":
				t.Cleanup(func() { removeHostNetworkAndCgroups(t, "gvga"+tag, "gavel-garden-test-"+tag) })
				cfg["runc"] = map[string]any{
					"root_dir": filepath.Join(dir, "depot"), "host_userland_rootfs": "cflinuxfs4",
					"bridge_name": "gvga" + tag, "subnet": "10.251.7.0/24", "cgroup_parent": "gavel-garden-test-" + tag,
					"port_range_start": 12200, "port_range_end": 12299,
				}
			}
			d := startDaemon(t, bin, cfg)
			c, err := client.New(client.Options{Network: "unix", Address: socket})
			require.NoError(t, err)
			waitPing(t, c, d)
			ctx := context.Background()

			handle := "restart-" + backendName
			_, err = c.Create(ctx, garden.ContainerSpec{Handle: handle, Properties: garden.Properties{"owner": "test"}})
			require.NoError(t, err)
			t.Cleanup(func() {
				// A last daemon over the same depot destroys what is left.
				if err := c.Destroy(context.Background(), handle); err != nil {
					t.Logf("cleanup destroy: %v", err)
				}
			})
			out := &syncBuffer{}
			proc, err := c.Run(ctx, handle, garden.ProcessSpec{
				ID: "sleeper", Path: "/bin/sh", Args: []string{"-c", "trap 'exit 7' TERM; echo started; while :; do sleep 0.1; done"},
			}, client.ProcessIO{Stdout: out})
			require.NoError(t, err)
			require.Eventually(t, func() bool { return strings.Contains(out.String(), "started") }, 20*time.Second, 20*time.Millisecond)

			require.Eventually(t, func() bool {
				return healthStatus(t, healthAddr, "gavel.garden") == healthpb.HealthCheckResponse_SERVING
			}, 10*time.Second, 50*time.Millisecond)
			require.Equal(t, "1", metric(t, debugAddr, "gavel_garden_containers"))

			proc.Detach()
			require.NoError(t, d.stop(t), "SIGTERM is a clean stop; logs:\n%s", d.logs)

			d2 := startDaemon(t, bin, cfg)
			waitPing(t, c, d2)
			handles, err := c.Containers(ctx, garden.Properties{"owner": "test"})
			require.NoError(t, err)
			require.Equal(t, []string{handle}, handles, "the container outlived the daemon")

			again, err := c.Attach(ctx, handle, "sleeper", client.ProcessIO{})
			require.NoError(t, err, "the process outlived the daemon and is attachable")
			require.NoError(t, again.Signal(garden.SignalTerminate))
			status := make(chan int, 1)
			go func() {
				code, err := again.Wait()
				if err != nil {
					code = -1000
				}
				status <- code
			}()
			select {
			case code := <-status:
				require.Equal(t, 7, code, "the exit status of the TERM trap")
			case <-time.After(30 * time.Second):
				t.Fatalf("no exit status after SIGTERM; logs:\n%s", d2.logs)
			}
			require.NoError(t, c.Destroy(ctx, handle))
			require.NoError(t, d2.stop(t))
		})
	}
}

// A bad config exits 2 and names the field.
func TestDaemonRefusesABadConfig(t *testing.T) {
	bin := buildDaemon(t)
	path := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"backend":"process","listen_network":"tcp","listen_address":"0.0.0.0:7777"}`), 0o600))
	out, err := exec.Command(bin, "-config", path).CombinedOutput()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr)
	require.Equal(t, 2, exitErr.ExitCode())
	require.Contains(t, string(out), "process.root_dir: is required")
	require.Contains(t, string(out), `listen_address: "0.0.0.0:7777" is not a loopback address`)
}

// requireContainerHost fails unless this machine can run runc containers
// (root, runc, CNI plugins), or skips when GAVEL_SKIP_RUNC_TESTS=1.
func requireContainerHost(t *testing.T) {
	t.Helper()
	if os.Getenv("GAVEL_SKIP_RUNC_TESTS") == "1" {
		t.Skip("GAVEL_SKIP_RUNC_TESTS=1: skipping a test that needs root, runc and CNI")
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, p := range []string{"/usr/sbin/runc", "/usr/lib/cni/bridge"} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("this test needs %v: apt-get install runc containernetworking-plugins iptables busybox-static, run as root (or set GAVEL_SKIP_RUNC_TESTS=1)", missing)
	}
}

// removeHostNetworkAndCgroups deletes what a runc backend keeps across
// containers: its bridge and its cgroup parent in every hierarchy.
func removeHostNetworkAndCgroups(t *testing.T, bridge, cgroupParent string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "del", bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
		t.Logf("delete bridge %s: %v: %s", bridge, err, out)
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cgroupParent))
	if d := filepath.Join("/sys/fs/cgroup", cgroupParent); fileExists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.Remove(d); err != nil {
			t.Logf("remove cgroup %s: %v", d, err)
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
