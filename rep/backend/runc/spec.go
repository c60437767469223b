package runc

import (
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

// Paths inside every container.
const (
	// initPath is where the keeper binary is bind-mounted (read-only): it
	// runs as PID 1 (process.InitFlag) and as the tar helper.
	initPath = "/.gavel/init"
	// defaultPath is the PATH of a root process whose env sets none.
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// defaultUserPath is the PATH of any other user's process (guardian's
	// choice too: no sbin directories).
	defaultUserPath = "/usr/local/bin:/usr/bin:/bin"
)

// pathFor is the default PATH of a process running as uid.
func pathFor(uid uint32) string {
	if uid == 0 {
		return defaultPath
	}
	return defaultUserPath
}

// inHome resolves a container path relative to a user's home directory,
// keeping a trailing "/" (which StreamOut gives a meaning).
func inHome(home, p string) string {
	if path.IsAbs(p) {
		return p
	}
	joined := path.Join(home, p)
	if strings.HasSuffix(p, "/") && joined != "/" {
		joined += "/"
	}
	return joined
}

// maskedPaths and readonlyPaths are runc's defaults (`runc spec`).
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// bundleSpec is what a container's config.json is made from.
type bundleSpec struct {
	handle     string
	rootfs     string // the overlay's merged directory
	hostsFile  string
	resolvFile string
	netnsPath  string
	cgroupPath string
	keeperPath string
	hostBinds  []string // host-userland directories
	binds      []backend.BindMount
	limits     backend.Limits
	privileged bool
	swapLimit  bool
	caps       []string
}

// ociSpec builds the container's OCI runtime spec: PID 1 is the keeper in
// init mode; mount, pid, uts, ipc and network namespaces; limits.
func ociSpec(b bundleSpec) *specs.Spec {
	initCaps := capSet(b.caps)
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
	for _, d := range b.hostBinds {
		mounts = append(mounts, specs.Mount{Destination: d, Type: "bind", Source: d, Options: []string{"rbind", "ro", "nosuid", "nodev"}})
	}
	mounts = append(mounts,
		specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: b.hostsFile, Options: []string{"bind", "rw"}},
		specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: b.resolvFile, Options: []string{"bind", "rw"}},
		specs.Mount{Destination: initPath, Type: "bind", Source: b.keeperPath, Options: []string{"bind", "ro", "nosuid", "nodev"}},
	)
	for _, bm := range b.binds {
		mode := "ro"
		if bm.ReadWrite {
			mode = "rw"
		}
		mounts = append(mounts, specs.Mount{Destination: path.Clean(bm.DstPath), Type: "bind", Source: bm.SrcPath, Options: []string{"rbind", mode}})
	}
	res := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if b.limits.MemoryInBytes > 0 {
		limit := int64(b.limits.MemoryInBytes)
		oomKill := false
		res.Memory = &specs.LinuxMemory{Limit: &limit, DisableOOMKiller: &oomKill}
		if b.swapLimit {
			// memory+swap = memory: no swap to escape the limit into.
			swap := limit
			res.Memory.Swap = &swap
		}
	}
	if b.limits.CPUWeight > 0 {
		shares := b.limits.CPUWeight
		res.CPU = &specs.LinuxCPU{Shares: &shares}
	}
	if b.limits.MaxPids > 0 {
		res.Pids = &specs.LinuxPids{Limit: int64(b.limits.MaxPids)}
	}
	s := &specs.Spec{
		Version:  specs.Version,
		Hostname: b.handle,
		Root:     &specs.Root{Path: b.rootfs},
		Process: &specs.Process{
			Args:            []string{initPath, process.InitFlag},
			Env:             []string{"PATH=" + defaultPath, "GOMAXPROCS=1", "GOGC=50"},
			Cwd:             "/",
			User:            specs.User{UID: 0, GID: 0},
			Capabilities:    initCaps,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: DefaultNofile, Soft: DefaultNofile}},
			NoNewPrivileges: true,
		},
		Mounts: mounts,
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: b.netnsPath},
			},
			CgroupsPath: b.cgroupPath,
			Resources:   res,
		},
	}
	if !b.privileged {
		s.Linux.MaskedPaths = maskedPaths
		s.Linux.ReadonlyPaths = readonlyPaths
	}
	return s
}

// capSet gives caps in every set (bounding, effective, permitted; no
// ambient or inheritable).
func capSet(caps []string) *specs.LinuxCapabilities {
	return &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
}

// processSpec is the runc exec process.json of a process.
func processSpec(spec backend.ProcessSpec, u user, env []string, dir string, caps []string) *specs.Process {
	args := append([]string{spec.Path}, spec.Args...)
	p := &specs.Process{
		Args: args,
		Env:  env,
		Cwd:  dir,
		User: specs.User{UID: u.uid, GID: u.gid, AdditionalGids: u.groups},
	}
	nofile := uint64(DefaultNofile)
	if spec.Limits.Nofile > 0 {
		nofile = spec.Limits.Nofile
	}
	p.Rlimits = append(p.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile})
	if spec.Limits.Nproc > 0 {
		p.Rlimits = append(p.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NPROC", Hard: spec.Limits.Nproc, Soft: spec.Limits.Nproc})
	}
	if u.uid == 0 {
		p.Capabilities = capSet(caps)
	} else {
		// A non-root user keeps the bounding set (setuid programs) but holds nothing.
		p.Capabilities = &specs.LinuxCapabilities{Bounding: caps}
	}
	return p
}
