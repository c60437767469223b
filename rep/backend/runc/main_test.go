package runc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

// skipEnv skips the tests that need root, runc and the CNI plugins when
// set to 1 (for machines that cannot run containers). Without it, those
// tests fail, saying what to install.
const skipEnv = "GAVEL_SKIP_RUNC_TESTS"

// fixtures built once by TestMain: a static keeper (it runs as every
// container's init) and a busybox rootfs.
var (
	fixtureDir  string
	keeperBin   string
	busyboxRoot string
	fixtureErr  error
)

func TestMain(m *testing.M) {
	if process.KeeperRequested() {
		os.Exit(process.RunKeeper())
	}
	fixtureErr = buildFixtures()
	code := m.Run()
	if fixtureDir != "" {
		_ = os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

func buildFixtures() error {
	if os.Getenv(skipEnv) == "1" || os.Geteuid() != 0 {
		return nil
	}
	dir, err := os.MkdirTemp("", "gavel-runc-fixtures-")
	if err != nil {
		return err
	}
	fixtureDir = dir
	keeperBin = filepath.Join(dir, "gavel-keeper")
	cmd := exec.Command("go", "build", "-o", keeperBin, "github.com/gavelhq/gavel/cmd/gavel-keeper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build static gavel-keeper: %v: %s", err, out)
	}
	busyboxRoot = filepath.Join(dir, "busybox-rootfs")
	if err := BuildBusyboxRootfs(busyboxRoot, "/bin/busybox"); err != nil {
		return err
	}
	return nil
}

// requireRunc fails the test when the machine cannot run the backend,
// unless skipEnv is set.
func requireRunc(t testing.TB) {
	t.Helper()
	if os.Getenv(skipEnv) == "1" {
		t.Skipf("%s=1: skipping a test that needs root, runc and CNI", skipEnv)
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (run the tests as root, e.g. sudo -E go test)")
	}
	if _, err := os.Stat(DefaultRuncPath); err != nil {
		missing = append(missing, "runc (apt-get install runc)")
	}
	if _, err := os.Stat(filepath.Join(DefaultCNIPluginDir, "bridge")); err != nil {
		missing = append(missing, "CNI plugins (apt-get install containernetworking-plugins)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing = append(missing, "a static busybox (apt-get install busybox-static)")
	}
	if len(missing) > 0 {
		t.Fatalf("the runc backend tests need %s; set %s=1 to skip them", strings.Join(missing, ", "), skipEnv)
	}
	if fixtureErr != nil {
		t.Fatalf("fixtures: %v", fixtureErr)
	}
}

// testEnv names everything one test backend creates on the host, unique
// per backend so concurrent runs never share anything.
type testEnv struct {
	suffix       string
	opts         Options
	cgroupParent string
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freeSubnet picks a /24 in 10.128.0.0/9 that no host route uses.
func freeSubnet(t testing.TB) string {
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("ip route: %v", err)
	}
	for range 100 {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		prefix := fmt.Sprintf("10.%d.%d.", 128+int(b[0])%127, b[1])
		if !bytes.Contains(out, []byte(prefix)) {
			return prefix + "0/24"
		}
	}
	t.Fatal("no free subnet")
	return ""
}

// newEnv makes options for a backend with unique names and registers the
// cleanup of the host-wide things (bridge, cgroup parents).
func newEnv(t testing.TB) *testEnv {
	t.Helper()
	requireRunc(t)
	sfx := randomHex(t, 3)
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	// Below the ephemeral range (32768–60999): a mapped host port is DNATed
	// for local connections too, and must never be a port the kernel hands
	// to another test's listener.
	start := uint32(31000 + int(b[0])%22*80)
	e := &testEnv{
		suffix: sfx,
		opts: Options{
			Root:           t.TempDir(),
			Rootfses:       map[string]string{"busybox": busyboxRoot},
			BridgeName:     "gvt" + sfx,
			NetworkName:    "gavel-gvt" + sfx,
			Subnet:         freeSubnet(t),
			CgroupParent:   "gavel-test-" + sfx,
			PortRangeStart: start, PortRangeEnd: start + 79,
			GraceTime:    2 * time.Second,
			KeeperPath:   keeperBin,
			PollInterval: 20 * time.Millisecond,
			Logger:       lager.NewLogger("test"),
		},
	}
	t.Cleanup(func() {
		// A safety net for a failed test: Destroy removes these itself.
		removeNATRules(t, e.opts.NetworkName)
		_ = exec.Command("ip", "link", "delete", e.opts.BridgeName).Run()
		cg := &cgroupFS{root: DefaultCgroupRoot, parent: e.opts.CgroupParent}
		if _, err := os.Stat(filepath.Join(DefaultCgroupRoot, "cgroup.controllers")); err == nil {
			cg.v2 = true
		}
		for _, d := range cg.parentDirs() {
			// A cgroup2 parent is busy for a moment after its last child
			// is removed.
			for i := 0; os.Remove(d) != nil && i < 40; i++ {
				if _, err := os.Stat(d); err != nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if _, err := os.Stat(d); err == nil {
				t.Errorf("cgroup %s left", d)
			}
		}
	})
	return e
}

// removeNATRules deletes the nat rules (and their per-container chains)
// whose comment names the CNI network.
func removeNATRules(t testing.TB, network string) {
	if n, err := removeNATRulesMatching(context.Background(), "iptables", `name: \"`+network+`\"`); err != nil || n > 0 {
		t.Logf("removed %d leftover nat rules of %s (%v)", n, network, err)
	}
}

// newBackend starts a backend over e's options and destroys its
// containers at cleanup.
func (e *testEnv) newBackend(t testing.TB) *Backend {
	t.Helper()
	b, err := New(context.Background(), e.opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if b.isDetached() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cs, _ := b.Containers(ctx, nil)
		for _, c := range cs {
			if err := b.Destroy(ctx, c.Handle()); err != nil {
				t.Errorf("cleanup: destroy %s: %v", c.Handle(), err)
			}
		}
	})
	return b
}

// syncBuffer is a goroutine-safe output buffer.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// run runs a command in c and returns its exit status, stdout and stderr.
func run(t *testing.T, c backend.Container, spec backend.ProcessSpec) (int, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	p, err := c.Run(context.Background(), spec, backend.ProcessIO{Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		t.Fatalf("run %s %v: %v", spec.Path, spec.Args, err)
	}
	status, err := p.Wait()
	if err != nil {
		t.Fatalf("wait %s: %v", spec.Path, err)
	}
	return status, stdout.String(), stderr.String()
}

func sh(script string) backend.ProcessSpec {
	return backend.ProcessSpec{Path: "sh", Args: []string{"-c", script}}
}
