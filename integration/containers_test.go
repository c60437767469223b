package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gavelhq/gavel/bbs/models"
	garden "github.com/gavelhq/gavel/garden/client"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repapp "github.com/gavelhq/gavel/rep/app"
	"github.com/gavelhq/gavel/rep/backend/runc"
)

// The container cells' rootfses: "testapps" is a busybox rootfs with the
// suite's test app at /app; "cflinuxfs4" is the host's userland, read-only.
const (
	testappsRootfs = "testapps"
	hostRootfs     = "cflinuxfs4"
)

var (
	rootfsOnce sync.Once
	rootfsDir  string
	rootfsErr  error
	// networks numbers the container cells of this test binary, so every
	// cell gets its own bridge, subnet and cgroup parent.
	networks atomic.Uint32
)

// testappsRootfsDir builds the testapps rootfs once per test binary.
func testappsRootfsDir(t *testing.T) string {
	t.Helper()
	rootfsOnce.Do(func() {
		dir := filepath.Join(binDir, "rootfs-testapps")
		if rootfsErr = runc.BuildBusyboxRootfs(dir, "/bin/busybox"); rootfsErr != nil {
			return
		}
		data, err := os.ReadFile(bin("app"))
		if err != nil {
			rootfsErr = err
			return
		}
		rootfsErr = os.WriteFile(filepath.Join(dir, "app"), data, 0o755)
		rootfsDir = dir
	})
	if rootfsErr != nil {
		t.Fatalf("build the testapps rootfs: %v", rootfsErr)
	}
	return rootfsDir
}

// requireContainerHost fails unless this machine can run runc containers,
// or skips when GAVEL_SKIP_RUNC_TESTS=1 (for machines that cannot).
func requireContainerHost(t *testing.T) {
	t.Helper()
	skipIfShort(t)
	if os.Getenv("GAVEL_SKIP_RUNC_TESTS") == "1" {
		t.Skip("GAVEL_SKIP_RUNC_TESTS=1: skipping a test that needs root, runc and the CNI plugins")
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, p := range []string{"/usr/sbin/runc", "/usr/lib/cni/bridge", "/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("container tests need %v: apt-get install runc containernetworking-plugins iptables busybox-static and run as root (or set GAVEL_SKIP_RUNC_TESTS=1)", missing)
	}
}

// containerCell is what a runc or garden cell holds on the host, for cleanup.
type containerCell struct {
	depot, bridge, cgroupParent string
}

// configureContainerCell gives cell i a runc backend of its own (or, with
// the garden backend, a gavel-garden over one, which it starts here).
func (c *cluster) configureContainerCell(cfg *repapp.Config, i int, r *rep, ports [2]uint32) {
	c.t.Helper()
	n := networks.Add(1)
	tag := fmt.Sprintf("%d%d", os.Getpid()%10000, n)
	rc := runc.Config{
		RootDir:            r.rootDir + "-runc",
		Rootfses:           map[string]string{testappsRootfs: testappsRootfsDir(c.t)},
		HostUserlandRootfs: hostRootfs,
		BridgeName:         "gvi" + tag,
		Subnet:             fmt.Sprintf("10.%d.%d.0/24", 230+os.Getpid()%20, n%250),
		CgroupParent:       "gavel-it-" + tag,
		PortRangeStart:     ports[0], PortRangeEnd: ports[1], HostIP: "127.0.0.1",
		KeeperPath: bin("gavel-keeper"),
	}
	c.mu.Lock()
	c.containerCells = append(c.containerCells, containerCell{depot: rc.RootDir, bridge: rc.BridgeName, cgroupParent: rc.CgroupParent})
	c.mu.Unlock()
	if c.opts.backend == repapp.BackendRunc {
		cfg.Backend, cfg.Runc = repapp.BackendRunc, rc
		return
	}
	socket := filepath.Join(c.dir, r.id+"-garden.sock")
	gcfg := map[string]any{
		"listen_network": "unix", "listen_address": socket, "debug_address": "127.0.0.1:0", "health_address": "127.0.0.1:0",
		"backend": "runc", "runc": rc, "grace_time": graceTime.String(),
	}
	g := c.spawn(r.id+"-garden", bin("gavel-garden"), "-config", c.writeJSON(r.id+"-garden.json", gcfg))
	gc, err := garden.New(garden.Options{Network: "unix", Address: socket})
	if err != nil {
		c.t.Fatal(err)
	}
	waitFor(c.t, startTimeout, r.id+"'s gavel-garden answers ping", func() error {
		if err := g.exitedErr(); err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return gc.Ping(pctx)
	})
	c.gardens = append(c.gardens, g)
	cfg.Backend = repapp.BackendGarden
	cfg.Garden = repapp.GardenConfig{Network: "unix", Address: socket}
	cfg.RootFSProviders = map[string][]string{"preloaded": {testappsRootfs, hostRootfs}}
}

// removeContainers destroys what the cluster's container cells left on the
// host once their daemons are dead: every container (mounts, cgroups,
// veths, iptables rules, IP leases), then each cell's bridge and cgroup parent.
func (c *cluster) removeContainers() {
	c.mu.Lock()
	cells := c.containerCells
	c.mu.Unlock()
	for _, cell := range cells {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		b, err := runc.New(ctx, runc.Options{
			Root: cell.depot, BridgeName: cell.bridge, CgroupParent: cell.cgroupParent, KeeperPath: bin("gavel-keeper"),
			HostUserlandRootfs: hostRootfs, GraceTime: time.Second,
		})
		if err != nil {
			c.t.Logf("cleanup %s: %v", cell.depot, err)
			cancel()
			continue
		}
		if cs, err := b.Containers(ctx, nil); err == nil {
			for _, ctr := range cs {
				if err := b.Destroy(ctx, ctr.Handle()); err != nil {
					c.t.Logf("cleanup: destroy %s: %v", ctr.Handle(), err)
				}
			}
		}
		if err := b.RemoveNetwork(ctx); err != nil {
			c.t.Logf("cleanup: bridge %s: %v", cell.bridge, err)
		}
		cancel()
		// A container cgroup left by a daemon killed mid-destroy is empty:
		// remove those below the parent first.
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cell.cgroupParent, "*"))
		parents, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cell.cgroupParent))
		for _, d := range append(dirs, parents...) {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				_ = os.Remove(d)
			}
		}
	}
}

// task desires a task and waits for it to complete.
func (c *cluster) runTask(t *testing.T, task *modelsv1.TaskDefinition, guid string) *modelsv1.Task {
	t.Helper()
	if _, err := c.bbsc.DesireTask(ctx(t), &bbsv1.DesireTaskRequest{TaskGuid: guid, Domain: "it", Definition: task}); err != nil {
		t.Fatalf("desire task %s: %v", guid, err)
	}
	var done *modelsv1.Task
	waitFor(t, placeTimeout, "task "+guid+" completes", func() error {
		resp, err := c.bbsc.GetTask(ctx(t), &bbsv1.GetTaskRequest{TaskGuid: guid})
		if err != nil {
			return err
		}
		if resp.GetTask().GetState() != models.TaskCompleted {
			return fmt.Errorf("state %s", resp.GetTask().GetState())
		}
		done = resp.GetTask()
		return nil
	})
	return done
}

func containerTask(rootfs string, maxPids int32, script string) *modelsv1.TaskDefinition {
	return &modelsv1.TaskDefinition{
		RootFs: "preloaded:" + rootfs, MemoryMb: 64, DiskMb: 64, MaxPids: maxPids,
		Action: shAction(script), ResultFile: "/tmp/result", LogGuid: "task", LogSource: "TASK",
	}
}

// containerAddr is the instance's own address and container port 8080.
func containerAddr(a *modelsv1.ActualLRP) string {
	return net.JoinHostPort(a.GetNetInfo().GetInstanceAddress(), "8080")
}

// Real containers, end to end, on cells with the runc backend: two
// instances on one cell both listen on 8080 and answer on their host ports
// and container addresses; a task cannot read a host file outside its
// rootfs and has its own hostname; an app past its memory limit is killed
// and its crash says "out of memory", and is restarted by the crash policy;
// a fork bomb stops at the pid limit; a rep SIGKILLed and restarted adopts
// its containers (same instances, still answering); a drained cell's
// instances move to another cell.
func TestRuncContainersEndToEnd(t *testing.T) {
	requireContainerHost(t)
	t.Parallel()
	c := start(t, options{backend: repapp.BackendRunc, cells: []cellSpec{
		{zone: "z1"}, {zone: "z2"}, {zone: "z3", tags: []string{"pair"}},
	}})

	t.Run("two instances on one cell share container port 8080", func(t *testing.T) {
		c.desire(appLRP("pair", 2, func(d *modelsv1.DesiredLRP) {
			d.RootFs, d.Action, d.PlacementTags = "preloaded:"+testappsRootfs, runAction("/app"), []string{"pair"}
		}))
		rows := c.waitRunning("pair", 2, placeTimeout)
		if rows[0].GetInstanceKey().GetCellId() != "cell-3" || rows[1].GetInstanceKey().GetCellId() != "cell-3" {
			t.Fatalf("both instances should be on cell-3: %s", describe(rows))
		}
		if rows[0].GetNetInfo().GetInstanceAddress() == rows[1].GetNetInfo().GetInstanceAddress() {
			t.Fatalf("two containers with one address: %s", describe(rows))
		}
		checkAnswers(t, rows)
		for _, a := range rows {
			body, err := get(containerAddr(a), "/")
			if want := fmt.Sprintf("index %d\n", a.GetKey().GetIndex()); err != nil || body != want {
				t.Fatalf("instance %d at its container address %s: %q, %v; want %q", a.GetKey().GetIndex(), containerAddr(a), body, err, want)
			}
		}
	})

	t.Run("a task sees its own filesystem and hostname, not the host's", func(t *testing.T) {
		secret := filepath.Join(c.dir, "host-secret")
		if err := os.WriteFile(secret, []byte("do not read"), 0o644); err != nil {
			t.Fatal(err)
		}
		got := c.runTask(t, containerTask(hostRootfs, 0, "hostname > /tmp/result; cat "+secret), "snoop")
		if !got.GetFailed() || !strings.Contains(got.GetFailureReason(), "Exited with status 1") {
			t.Fatalf("reading %s from a container should fail: failed=%v reason=%q", secret, got.GetFailed(), got.GetFailureReason())
		}
		ok := c.runTask(t, containerTask(hostRootfs, 0, "hostname > /tmp/result; test ! -e "+secret), "hostname")
		if ok.GetFailed() || strings.TrimSpace(ok.GetResult()) != "hostname" {
			t.Fatalf("task: failed=%v reason=%q result=%q (want the container's hostname, its guid)", ok.GetFailed(), ok.GetFailureReason(), ok.GetResult())
		}
	})

	t.Run("memory past the limit is killed, reported and restarted", func(t *testing.T) {
		c.desire(appLRP("hog", 1, func(d *modelsv1.DesiredLRP) {
			d.RootFs, d.MemoryMb = "preloaded:"+hostRootfs, 32
			d.Action = shAction("python3 -c 'b = bytearray(256 << 20); import time; time.sleep(600)'")
			d.CheckDefinition, d.Ports = nil, nil
		}))
		waitFor(t, 2*placeTimeout, "hog crashes twice for lack of memory", func() error {
			rows, err := c.actuals("hog")
			if err != nil {
				return err
			}
			if len(rows) != 1 || rows[0].GetCrashCount() < 2 || !strings.Contains(rows[0].GetCrashReason(), "out of memory") {
				return fmt.Errorf("now %s", describe(rows))
			}
			return nil
		})
		if _, err := c.bbsc.RemoveDesiredLRP(ctx(t), &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: "hog"}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a fork bomb stops at the pid limit", func(t *testing.T) {
		// Children sleep until the bomb stops, then are killed, so the pids
		// are free again when the cell streams the result file out.
		bomb := `python3 -c '
import os, signal, time
children = []
try:
    while len(children) < 2000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except OSError:
    pass
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
open("/tmp/result", "w").write(str(len(children)))
'`
		got := c.runTask(t, containerTask(hostRootfs, 40, bomb), "bomb")
		n, err := strconv.Atoi(strings.TrimSpace(got.GetResult()))
		if got.GetFailed() || err != nil {
			t.Fatalf("bomb task: failed=%v reason=%q result=%q", got.GetFailed(), got.GetFailureReason(), got.GetResult())
		}
		if n >= 40 || n < 5 {
			t.Fatalf("the bomb forked %d processes; the limit of 40 pids should stop it below 40", n)
		}
		t.Logf("fork bomb stopped after %d forks (max_pids 40)", n)
	})

	t.Run("a restarted rep adopts its containers", func(t *testing.T) {
		before := c.waitRunning("pair", 2, placeTimeout)
		c.killRep(2)
		if err := c.reps[2].start(); err != nil {
			t.Fatal(err)
		}
		c.waitCells(c.cellIDs()...)
		after := c.waitRunning("pair", 2, placeTimeout)
		for i := range after {
			if after[i].GetInstanceKey().GetInstanceGuid() != before[i].GetInstanceKey().GetInstanceGuid() {
				t.Fatalf("instance %d was replaced across the rep restart: before %s, after %s", i, describe(before), describe(after))
			}
		}
		checkAnswers(t, after)
	})

	t.Run("a drained cell's instances move", func(t *testing.T) {
		c.desire(appLRP("mover", 2, func(d *modelsv1.DesiredLRP) {
			d.RootFs, d.Action = "preloaded:"+testappsRootfs, runAction("/app")
		}))
		rows := c.waitRunning("mover", 2, placeTimeout)
		from := rows[0].GetInstanceKey().GetCellId()
		if out, err := c.gavel("drain", from); err != nil {
			t.Fatalf("gavel drain %s: %v\n%s", from, err, out)
		}
		waitFor(t, 2*placeTimeout, "mover runs only off "+from, func() error {
			rows, err := c.actuals("mover")
			if err != nil {
				return err
			}
			on := 0
			for _, a := range rows {
				if a.GetState() == models.Running && a.GetInstanceKey().GetCellId() != from && a.GetPresence() == models.Ordinary {
					on++
				}
			}
			if on != 2 {
				return fmt.Errorf("now %s", describe(rows))
			}
			return nil
		})
		checkAnswers(t, c.waitRunning("mover", 2, placeTimeout))
	})
}

// A cell with the garden backend drives its own gavel-garden (over runc):
// an app runs and answers, a task returns its result, and a gavel-garden
// restart keeps the app running and the cell managing it.
func TestGardenBackendEndToEnd(t *testing.T) {
	requireContainerHost(t)
	t.Parallel()
	c := start(t, options{backend: repapp.BackendGarden, cells: []cellSpec{{zone: "z1"}}})
	c.desire(appLRP("web", 2, func(d *modelsv1.DesiredLRP) {
		d.RootFs, d.Action = "preloaded:"+testappsRootfs, runAction("/app")
	}))
	rows := c.waitRunning("web", 2, placeTimeout)
	checkAnswers(t, rows)

	got := c.runTask(t, containerTask(testappsRootfs, 0, "echo through garden > /tmp/result"), "via-garden")
	if got.GetFailed() || strings.TrimSpace(got.GetResult()) != "through garden" {
		t.Fatalf("task: failed=%v reason=%q result=%q", got.GetFailed(), got.GetFailureReason(), got.GetResult())
	}

	g := c.gardens[0]
	if !g.signalGroup(syscall.SIGTERM, 30*time.Second) {
		t.Fatal("gavel-garden did not stop on SIGTERM")
	}
	if err := g.start(); err != nil {
		t.Fatal(err)
	}
	after := c.waitRunning("web", 2, placeTimeout)
	for i := range after {
		if after[i].GetInstanceKey().GetInstanceGuid() != rows[i].GetInstanceKey().GetInstanceGuid() {
			t.Fatalf("instance %d was replaced across the gavel-garden restart: %s", i, describe(after))
		}
	}
	checkAnswers(t, after)
	if _, err := c.bbsc.RemoveDesiredLRP(ctx(t), &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: "web"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, placeTimeout, "web's containers are destroyed", func() error {
		out, err := exec.Command("sh", "-c", "ls "+c.containerCells[0].depot+"/containers").CombinedOutput()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%v: %s", err, out)
		}
		if strings.TrimSpace(string(out)) != "" {
			return fmt.Errorf("containers left: %s", out)
		}
		return nil
	})
}
