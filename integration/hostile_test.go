package integration_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// bbsMemoryLimit is the memory cgroup limit the BBS runs under in
// TestHostileInputUnderAMemoryLimit: far below what 2^31 instances or a 30 MB
// record would take, well above what the BBS (race-built) needs.
const bbsMemoryLimit = 512 << 20

// The hostile requests of the security review, sent to a BBS process held
// in a memory cgroup: each is refused with its code and named field, the
// BBS process is the same one afterwards (never OOM-killed, never
// restarted; the cgroup saw no OOM), and it still places work.
func TestHostileInputUnderAMemoryLimit(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	if os.Getenv("GAVEL_SKIP_RUNC_TESTS") == "1" {
		t.Skip("GAVEL_SKIP_RUNC_TESTS=1: skipping a test that needs root (a memory cgroup)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test puts the BBS in a memory cgroup and needs root (or set GAVEL_SKIP_RUNC_TESTS=1)")
	}
	c := start(t, options{})
	pid := c.bbs[0].cmd.Process.Pid
	cg := newMemoryCgroup(t, bbsMemoryLimit)
	cg.add(t, pid)

	mb30 := strings.Repeat("x", 30<<20)
	cases := []struct {
		name string
		d    *modelsv1.DesiredLRP
		code codes.Code
		want string
	}{
		{"instances 2147483647", appLRP("hostile-a", 2147483647), codes.InvalidArgument, "instances"},
		{"1 MB process guid", appLRP(strings.Repeat("g", 1<<20), 1), codes.InvalidArgument, "process_guid"},
		{"30 MB run record", appLRP("hostile-b", 1, func(d *modelsv1.DesiredLRP) {
			d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "BIG", Value: mb30}}
		}), codes.ResourceExhausted, ""},
		{"env name with =", appLRP("hostile-c", 1, func(d *modelsv1.DesiredLRP) {
			d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "A=B", Value: "v"}}
		}), codes.InvalidArgument, "name"},
	}
	for _, tc := range cases {
		_, err := c.client().DesireLRP(ctx(t), &bbsv1.DesireLRPRequest{DesiredLrp: tc.d})
		if status.Code(err) != tc.code || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("%s: want %s naming %q, got %v", tc.name, tc.code, tc.want, err)
		}
	}
	if err := c.bbs[0].exitedErr(); err != nil {
		t.Fatalf("the BBS exited under the hostile requests: %v", err)
	}
	if got := c.bbs[0].cmd.Process.Pid; got != pid {
		t.Fatalf("the BBS was restarted (pid %d, was %d)", got, pid)
	}
	if ooms := cg.ooms(t); ooms != 0 {
		t.Fatalf("the BBS's memory cgroup counted %d OOM events", ooms)
	}
	c.desire(appLRP("after-hostile", 1))
	c.waitRunning("after-hostile", 1, placeTimeout)
	t.Logf("BBS peak memory under the %d MiB limit: %d MiB", bbsMemoryLimit>>20, cg.peak(t)>>20)
}

// memoryCgroup is a memory cgroup (v1 or v2) the test made and removes.
type memoryCgroup struct {
	dir string
	v2  bool
}

func newMemoryCgroup(t *testing.T, limit int64) *memoryCgroup {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "gavel-it-" + hex.EncodeToString(b)
	cg := &memoryCgroup{}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		cg.v2, cg.dir = true, filepath.Join("/sys/fs/cgroup", name)
	} else {
		cg.dir = filepath.Join("/sys/fs/cgroup/memory", name)
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Fatalf("memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		// This runs before the cluster's cleanup (registered earlier): move
		// whatever is still inside back to the parent, then remove the cgroup.
		if b, err := os.ReadFile(filepath.Join(cg.dir, "cgroup.procs")); err == nil {
			for _, pid := range strings.Fields(string(b)) {
				_ = os.WriteFile(filepath.Join(filepath.Dir(cg.dir), "cgroup.procs"), []byte(pid), 0o644)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for os.Remove(cg.dir) != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	})
	file := "memory.limit_in_bytes"
	if cg.v2 {
		file = "memory.max"
	}
	cg.write(t, file, strconv.FormatInt(limit, 10))
	if !cg.v2 {
		// No swap: the limit holds for memory and swap together.
		_ = os.WriteFile(filepath.Join(cg.dir, "memory.memsw.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644)
	}
	return cg
}

func (cg *memoryCgroup) write(t *testing.T, file, value string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(cg.dir, file), []byte(value), 0o644); err != nil {
		t.Fatalf("write %s: %v", file, err)
	}
}

func (cg *memoryCgroup) add(t *testing.T, pid int) { cg.write(t, "cgroup.procs", strconv.Itoa(pid)) }

// ooms is the number of OOM events the cgroup saw.
func (cg *memoryCgroup) ooms(t *testing.T) int {
	t.Helper()
	if cg.v2 {
		b, err := os.ReadFile(filepath.Join(cg.dir, "memory.events"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" {
				n, _ := strconv.Atoi(f[1])
				return n
			}
		}
		return 0
	}
	b, err := os.ReadFile(filepath.Join(cg.dir, "memory.failcnt"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// peak is the cgroup's peak memory use in bytes (0 where the kernel does not say).
func (cg *memoryCgroup) peak(t *testing.T) int64 {
	file := "memory.max_usage_in_bytes"
	if cg.v2 {
		file = "memory.peak"
	}
	b, err := os.ReadFile(filepath.Join(cg.dir, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}
