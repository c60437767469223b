package runc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeFiles creates files (path → content) below root.
func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCgroupFiles(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string
		wantV2    bool
		wantOOM   bool
		wantMem   uint64
		wantCPU   time.Duration
		wantUser  time.Duration
		wantPids  [2]uint64
		wantProcs string
	}{
		{
			name: "v1",
			files: map[string]string{
				"memory/memory.limit_in_bytes":       "9223372036854771712\n",
				"memory/memory.memsw.limit_in_bytes": "9223372036854771712\n",
				"memory/p/c/memory.usage_in_bytes":   "10000\n",
				"memory/p/c/memory.stat":             "cache 1\ntotal_inactive_file 4000\n",
				"memory/p/c/memory.oom_control":      "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
				"memory/p/c/cgroup.procs":            "11\n12\n",
				"cpuacct/p/c/cpuacct.usage":          "5000000000\n",
				"cpuacct/p/c/cpuacct.stat":           "user 300\nsystem 200\n",
				"pids/p/c/pids.current":              "2\n",
				"pids/p/c/pids.max":                  "max\n",
			},
			wantOOM: true, wantMem: 6000, wantCPU: 5 * time.Second, wantUser: 3 * time.Second,
			wantPids: [2]uint64{2, 0}, wantProcs: "memory/p/c/cgroup.procs",
		},
		{
			name: "v2",
			files: map[string]string{
				"cgroup.controllers": "cpu memory pids\n",
				"p/memory.swap.max":  "max\n",
				"p/c/memory.current": "8000\n",
				"p/c/memory.stat":    "anon 1\ninactive_file 1000\n",
				"p/c/memory.events":  "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n",
				"p/c/cgroup.procs":   "11\n",
				"p/c/cpu.stat":       "usage_usec 2000000\nuser_usec 1500000\nsystem_usec 500000\n",
				"p/c/pids.current":   "1\n",
				"p/c/pids.max":       "40\n",
			},
			wantV2: true, wantOOM: false, wantMem: 7000, wantCPU: 2 * time.Second, wantUser: 1500 * time.Millisecond,
			wantPids: [2]uint64{1, 40}, wantProcs: "p/c/cgroup.procs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tt.files)
			cg, err := detectCgroups(root, "p")
			if err != nil {
				t.Fatal(err)
			}
			if cg.v2 != tt.wantV2 {
				t.Fatalf("v2 = %v", cg.v2)
			}
			if got := cg.runcPath("c"); got != "/p/c" {
				t.Errorf("runcPath %q", got)
			}
			if !cg.swapLimitSupported() {
				t.Error("swap limit not detected")
			}
			if got := cg.procsFile("c"); got != filepath.Join(root, tt.wantProcs) {
				t.Errorf("procs file %s", got)
			}
			if got := cg.oomKilled("c"); got != tt.wantOOM {
				t.Errorf("oomKilled %v", got)
			}
			m, err := cg.metrics("c")
			if err != nil {
				t.Fatal(err)
			}
			if m.MemoryUsageInBytes != tt.wantMem || m.CPUUsage != tt.wantCPU || m.CPUUser != tt.wantUser ||
				m.PidsCurrent != tt.wantPids[0] || m.PidsMax != tt.wantPids[1] {
				t.Errorf("metrics %+v", m)
			}
			pids, err := cg.pids("c")
			if err != nil || len(pids) == 0 || pids[0] != 11 {
				t.Errorf("pids %v %v", pids, err)
			}
			dirs := cg.parentDirs()
			if tt.wantV2 && !slices.Equal(dirs, []string{filepath.Join(root, "p")}) {
				t.Errorf("parent dirs %v", dirs)
			}
			if !tt.wantV2 && !slices.Contains(dirs, filepath.Join(root, "memory", "p")) {
				t.Errorf("parent dirs %v", dirs)
			}
		})
	}
	if _, err := detectCgroups(t.TempDir(), "p"); err == nil {
		t.Error("an empty directory detected as a cgroup hierarchy")
	}
}

func TestResolveUser(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/sh\nvcap:x:2000:2000::/home/vcap:/bin/sh\n"
	group := "root:x:0:\nvcap:x:2000:\nextra:x:3000:vcap,other\n"
	tests := []struct {
		spec    string
		want    user
		wantErr string
	}{
		{"", user{name: "root", uid: 0, gid: 0, home: "/root"}, ""},
		{"vcap", user{name: "vcap", uid: 2000, gid: 2000, home: "/home/vcap", groups: []uint32{3000}}, ""},
		{"2000", user{name: "vcap", uid: 2000, gid: 2000, home: "/home/vcap", groups: []uint32{3000}}, ""},
		{"vcap:extra", user{name: "vcap", uid: 2000, gid: 3000, home: "/home/vcap"}, ""},
		{"1234:99", user{uid: 1234, gid: 99, home: "/"}, ""},
		{"ghost", user{}, "not in the container's /etc/passwd"},
		{"vcap:ghosts", user{}, "not in the container's /etc/group"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := resolveUser(tt.spec, strings.NewReader(passwd), strings.NewReader(group))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.name != tt.want.name || got.uid != tt.want.uid || got.gid != tt.want.gid ||
				got.home != tt.want.home || !slices.Equal(got.groups, tt.want.groups) {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	// No passwd file at all: root still works.
	if u, err := resolveUser("", nil, nil); err != nil || u.uid != 0 || u.home != "/root" {
		t.Errorf("root without passwd: %+v %v", u, err)
	}
}

func TestCapabilitySets(t *testing.T) {
	// This machine's bounding set lacks CAP_SYS_RESOURCE (bit 24).
	sets := newCapabilitySets(0x1fffeffffff)
	for _, s := range [][]string{sets.privileged, sets.unprivileged} {
		if slices.Contains(s, "CAP_SYS_RESOURCE") {
			t.Errorf("CAP_SYS_RESOURCE in %v", s)
		}
	}
	if slices.Contains(sets.unprivileged, "CAP_SYS_ADMIN") || !slices.Contains(sets.privileged, "CAP_SYS_ADMIN") ||
		!slices.Contains(sets.unprivileged, "CAP_NET_BIND_SERVICE") {
		t.Errorf("sets %+v", sets)
	}
	// A full bounding set still never gives CAP_SYS_RESOURCE.
	if full := newCapabilitySets(^uint64(0)); slices.Contains(full.privileged, "CAP_SYS_RESOURCE") {
		t.Error("CAP_SYS_RESOURCE given to a privileged container")
	}
}

func TestOptionsValidation(t *testing.T) {
	dir := t.TempDir()
	o := Options{
		Root: dir, RuncPath: "runc", BridgeName: "a-very-long-bridge-name", Subnet: "nope",
		PortRangeStart: 10, PortRangeEnd: 5, HostIP: "x", CgroupParent: "a/b", KeeperPath: "/bin/true",
		Rootfses: map[string]string{"gone": filepath.Join(dir, "missing")}, DefaultRootfs: "other",
		CNIPluginDir: dir,
	}
	err := o.setDefaults()
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"BridgeName", "Subnet", "port range", "HostIP", "CgroupParent", `rootfs "gone"`,
		"DefaultRootfs", "RuncPath", "CNI plugin bridge"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	if err := (&Options{}).setDefaults(); err == nil || !strings.Contains(err.Error(), "Root is required") {
		t.Errorf("no root: %v", err)
	}
}

func TestContainerID(t *testing.T) {
	if got := containerID("app-guid_1.2"); got != "app-guid_1.2" {
		t.Errorf("plain handle mapped to %q", got)
	}
	odd := containerID("has space/and:colon")
	if !strings.HasPrefix(odd, "h-") || !runcIDPattern.MatchString(odd) || odd != containerID("has space/and:colon") {
		t.Errorf("odd handle mapped to %q", odd)
	}
}

// runc's messages for a missing executable are recognised, so that Run
// returns an *exec.Error (the Garden server's ExecutableNotFoundError), and
// other exec failures are not.
func TestExecNotFound(t *testing.T) {
	for _, tc := range []struct {
		msg, cause string
		ok         bool
	}{
		{`exec failed: unable to start container process: exec: "/no/such/binary": stat /no/such/binary: no such file or directory`, "stat /no/such/binary: no such file or directory", true},
		{`exec failed: unable to start container process: exec: "nosuch": executable file not found in $PATH`, "executable file not found in $PATH", true},
		{`exec failed: unable to start container process: exec: "/etc/passwd": permission denied`, "", false},
		{`exec failed: unable to start container process: chdir to cwd ("/nope") set in config.json failed: no such file or directory`, "", false},
		{`container "x" does not exist`, "", false},
	} {
		cause, ok := execNotFound(tc.msg)
		if ok != tc.ok || cause != tc.cause {
			t.Errorf("execNotFound(%q) = %q, %v; want %q, %v", tc.msg, cause, ok, tc.cause, tc.ok)
		}
	}
}

func TestDefaultPathAndHomeRelativePaths(t *testing.T) {
	if pathFor(0) != defaultPath || pathFor(2000) != "/usr/local/bin:/usr/bin:/bin" {
		t.Errorf("pathFor: %q %q", pathFor(0), pathFor(2000))
	}
	for _, tc := range [][3]string{
		{"/home/vcap", "/abs", "/abs"},
		{"/home/vcap", "rel", "/home/vcap/rel"},
		{"/home/vcap", "rel/", "/home/vcap/rel/"},
		{"/home/vcap", "./", "/home/vcap/"},
		{"/", "", "/"},
		{"/", "./", "/"},
	} {
		if got := inHome(tc[0], tc[1]); got != tc[2] {
			t.Errorf("inHome(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}
