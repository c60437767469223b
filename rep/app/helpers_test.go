package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	bbsapp "github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/app"
	"github.com/gavelhq/gavel/rep/backend/process"
)

// daemonEnv makes the test binary run as the rep daemon with the named
// config file (see TestMain), so restart tests use a real OS process.
const daemonEnv = "GAVEL_REP_TEST_DAEMON_CONFIG"

// appPath is rep/executor/testdata/app, built by TestMain: an HTTP server on
// $PORT (/ answers "ok", /pid its pid) that exits 0 on SIGTERM.
var appPath string

func TestMain(m *testing.M) {
	if process.KeeperRequested() {
		os.Exit(process.RunKeeper())
	}
	if path := os.Getenv(daemonEnv); path != "" {
		os.Exit(runDaemon(path))
	}
	dir, err := os.MkdirTemp("", "rep-app-test")
	if err != nil {
		panic(err)
	}
	appPath = filepath.Join(dir, "app")
	if out, err := exec.Command("go", "build", "-o", appPath, "../executor/testdata/app").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build test app: %v\n%s", err, out))
	}
	code := etcdtest.RunShared(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// runDaemon is the rep daemon as cmd/rep runs it.
func runDaemon(path string) int {
	cfg, err := app.Load(path)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	logger := lager.NewLogger("rep")
	logger.RegisterSink(lager.NewWriterSink(os.Stderr, lager.INFO))
	r := app.New(cfg, logger)
	proc := ifrit.Invoke(r.Runner())
	go func() {
		signals := make(chan os.Signal, 1)
		notify(signals)
		proc.Signal(<-signals)
	}()
	go func() {
		drain := make(chan os.Signal, 1)
		notifyDrain(drain)
		for range drain {
			r.Drain()
		}
	}()
	if err := <-proc.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

var ctx = context.Background()

// startBBS runs an active BBS on the shared etcd under prefix.
func startBBS(t testing.TB, prefix string) (*bbsapp.BBS, *client.Client) {
	t.Helper()
	return startBBSWith(t, prefix, func(*bbsapp.Config) {})
}

// startBBSWith is startBBS with the config changed by tweak.
func startBBSWith(t testing.TB, prefix string, tweak func(*bbsapp.Config)) (*bbsapp.BBS, *client.Client) {
	t.Helper()
	cfg := bbsapp.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.InstanceID = "bbs-" + t.Name()
	cfg.KeyPrefix = prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	// These tests are not about the BBS lock (no test here starts a second
	// BBS): its TTL is long enough that a loaded 2-core machine under the
	// race detector cannot let it lapse (2 s once did, in TestSimCells, while
	// 200 cells registered), which would stop the BBS mid-test.
	cfg.LockTTL = config.Duration(10 * time.Second)
	cfg.LockRetryInterval = config.Duration(200 * time.Millisecond)
	tweak(&cfg)
	require.NoError(t, cfg.Validate())
	b := bbsapp.New(cfg, lager.NewLogger("bbs"))
	proc := ifrit.Background(b.Runner())
	t.Cleanup(func() {
		proc.Signal(os.Interrupt)
		select {
		case <-proc.Wait():
		case <-time.After(20 * time.Second):
			t.Error("bbs did not stop")
		}
	})
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		t.Fatalf("bbs exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("bbs did not start")
	}
	require.Eventually(t, b.Held, 10*time.Second, 20*time.Millisecond, "bbs never took the lock")
	c, err := client.New(client.Config{Addresses: []string{b.Addr()}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return b, c
}

var nextPorts atomic.Uint32

// repConfig is a process-backend cell on the shared etcd and the BBS.
func repConfig(t *testing.T, prefix, bbsAddr, cellID string) app.Config {
	t.Helper()
	cfg := app.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.CellID = cellID
	cfg.Zone = "z1"
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.KeyPrefix = prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.BBSAddresses = []string{bbsAddr}
	start := 47000 + 200*nextPorts.Add(1)
	cfg.Process = app.ProcessConfig{RootDir: t.TempDir(), PortRangeStart: start, PortRangeEnd: start + 199}
	cfg.Capacity = app.CapacityConfig{MemoryMB: 4096, DiskMB: 8192, Containers: 20}
	cfg.PresenceTTL = config.Duration(2 * time.Second)
	cfg.PresenceRetryInterval = config.Duration(200 * time.Millisecond)
	cfg.BulkSyncInterval = config.Duration(time.Second)
	cfg.GraceTime = config.Duration(2 * time.Second)
	cfg.StartupCheckInterval = config.Duration(50 * time.Millisecond)
	require.NoError(t, cfg.Validate())
	// The rep leaves its containers running when it stops (a restart must
	// not kill apps): destroy them once the test's reps have stopped.
	t.Cleanup(func() { destroyContainers(t, cfg.Process.RootDir) })
	return cfg
}

// destroyContainers kills and removes every container under a process
// backend root.
func destroyContainers(t *testing.T, root string) {
	b, err := process.New(process.Options{Root: root, DisableCgroups: true})
	if err != nil {
		t.Errorf("destroy containers: %v", err)
		return
	}
	cs, err := b.Containers(ctx, nil)
	if err != nil {
		t.Errorf("destroy containers: %v", err)
		return
	}
	for _, c := range cs {
		if err := b.Destroy(ctx, c.Handle()); err != nil {
			t.Errorf("destroy container %s: %v", c.Handle(), err)
		}
	}
}

// startRep runs a rep in this process until stop is called or the test ends.
func startRep(t testing.TB, cfg app.Config) (r *app.Rep, stop func()) {
	t.Helper()
	r = app.New(cfg, lager.NewLogger("rep"))
	proc := ifrit.Background(r.Runner())
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		proc.Signal(os.Interrupt)
		select {
		case err := <-proc.Wait():
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("rep did not stop")
		}
	}
	t.Cleanup(stop)
	select {
	case <-r.Ready():
	case err := <-proc.Wait():
		t.Fatalf("rep exited: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("rep did not start")
	}
	return r, stop
}

func dialRep(t *testing.T, addr string) repv1.RepServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return repv1.NewRepServiceClient(conn)
}

func runA(path string, args ...string) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: path, Args: args}}}
}

func sh(script string) *modelsv1.Action { return runA("sh", "-c", script) }

// desiredLRP is one instance of action on port 8080.
func desiredLRP(guid string, action *modelsv1.Action, checks *modelsv1.CheckDefinition) *modelsv1.DesiredLRP {
	return &modelsv1.DesiredLRP{
		ProcessGuid: guid, Domain: "apps", RootFs: "preloaded:cflinuxfs4", Instances: 1, MemoryMb: 64, DiskMb: 64,
		Ports: []uint32{8080}, LogSource: "APP", LogGuid: guid, StartTimeoutMs: 20000,
		Action: action, CheckDefinition: checks,
	}
}

func healthChecks() *modelsv1.CheckDefinition {
	return &modelsv1.CheckDefinition{Checks: []*modelsv1.Check{
		{Check: &modelsv1.Check_TcpCheck{TcpCheck: &modelsv1.TCPCheck{Port: 8080}}},
		{Check: &modelsv1.Check_HttpCheck{HttpCheck: &modelsv1.HTTPCheck{Port: 8080, Path: "/"}}},
	}}
}

// performLRP places index 0 of a desired LRP on a cell, as the auctioneer would.
func performLRP(t *testing.T, repc repv1.RepServiceClient, cellID string, d *modelsv1.DesiredLRP, index int32) {
	t.Helper()
	resp, err := repc.Perform(ctx, &repv1.PerformRequest{CellId: cellID, Lrps: []*repv1.LRP{{
		Key:                 &modelsv1.ActualLRPKey{ProcessGuid: d.GetProcessGuid(), Index: index, Domain: d.GetDomain()},
		Resource:            &auctioneerv1.Resource{MemoryMb: d.GetMemoryMb(), DiskMb: d.GetDiskMb()},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: d.GetRootFs()},
	}}})
	require.NoError(t, err)
	require.Empty(t, resp.GetFailedLrps())
}

// actual returns the ordinary row of an instance, or nil.
func actual(t *testing.T, bbs *client.Client, guid string, index int32) *modelsv1.ActualLRP {
	t.Helper()
	resp, err := bbs.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{guid}, Index: &index})
	require.NoError(t, err)
	for _, a := range resp.GetActualLrps() {
		if a.GetPresence() == modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY {
			return a
		}
	}
	return nil
}

// waitActual waits until the row satisfies cond and returns it.
func waitActual(t *testing.T, bbs *client.Client, guid string, index int32, what string, cond func(*modelsv1.ActualLRP) bool) *modelsv1.ActualLRP {
	t.Helper()
	var got *modelsv1.ActualLRP
	require.Eventually(t, func() bool {
		got = actual(t, bbs, guid, index)
		return got != nil && cond(got)
	}, 30*time.Second, 10*time.Millisecond, "instance %s/%d never %s (last %v)", guid, index, what, got)
	return got
}

func isState(s modelsv1.ActualLRPState) func(*modelsv1.ActualLRP) bool {
	return func(a *modelsv1.ActualLRP) bool { return a.GetState() == s }
}

// pidGone reports whether a process no longer exists (or is a zombie).
func pidGone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0] == "Z"
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(data), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "no pid in %s", path)
	return pid
}

func writeJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path
}
