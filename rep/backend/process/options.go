package process

import (
	"errors"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"
)

// Defaults for Options.
const (
	// DefaultPortRangeStart is the first host port handed to containers.
	DefaultPortRangeStart = 61000
	// DefaultPortRangeEnd is the last host port handed to containers.
	DefaultPortRangeEnd = 61999
	// DefaultHostIP is the address mapped ports are reachable on.
	DefaultHostIP = "127.0.0.1"
	// DefaultGraceTime is how long Stop waits after SIGTERM before SIGKILL.
	DefaultGraceTime = 10 * time.Second
	// DefaultMaxContainers is the container capacity reported by Capacity.
	DefaultMaxContainers = 250
	// DefaultCgroupRoot is where the cgroup v2 hierarchy is probed.
	DefaultCgroupRoot = "/sys/fs/cgroup"
	// DefaultCgroupParent is the cgroup (below the root) holding container cgroups.
	DefaultCgroupParent = "gavel"
	// DefaultPollInterval is the longest wait between two reads of a process's
	// output file and between two liveness checks of a rediscovered process.
	DefaultPollInterval = 100 * time.Millisecond
)

// Options configure a Backend.
type Options struct {
	// Root is the directory holding one directory per container; required.
	Root string
	// PortRangeStart and PortRangeEnd bound the host ports (inclusive);
	// default 61000–61999.
	PortRangeStart, PortRangeEnd uint32
	// HostIP is the IP reported in ContainerInfo; default 127.0.0.1.
	HostIP string
	// GraceTime is the SIGTERM→SIGKILL wait of Stop(kill=false); default 10 s.
	GraceTime time.Duration
	// MemoryInBytes and DiskInBytes override the capacity read from the host
	// (/proc/meminfo and statfs of Root).
	MemoryInBytes, DiskInBytes uint64
	// MaxContainers is the container capacity; default 250.
	MaxContainers uint64
	// CgroupRoot is where a cgroup v2 hierarchy is probed; default /sys/fs/cgroup.
	CgroupRoot string
	// CgroupParent is the cgroup below CgroupRoot for container cgroups; default "gavel".
	CgroupParent string
	// DisableCgroups turns memory limit enforcement off without probing.
	DisableCgroups bool
	// KillOnParentExit sets PR_SET_PDEATHSIG=SIGKILL on each process's keeper
	// and on the process, so the keeper dies with the backend's OS process and
	// the process with its keeper (no exit status is recorded then, and the
	// rest of the process's group is not killed). Off by default: it defeats
	// rediscovery.
	KillOnParentExit bool
	// KeeperPath is the keeper binary every process runs under: absolute, and
	// answering the keeper protocol (cmd/gavel-keeper does). Default: the
	// backend's own binary, re-executed through /proc/self/exe, whose main
	// must call RunKeeper when KeeperRequested. The dedicated keeper starts
	// faster and takes less memory per process than a large binary does.
	KeeperPath string
	// LaunchPidFile, when set, makes every process a launched one: its
	// Path is a launcher (such as `runc exec --detach --pid-file FILE`)
	// that starts the real process, writes the real process's pid to the
	// file LaunchPidFile returns for the container handle and process ID,
	// and exits 0. The keeper is a child subreaper, so the real process
	// becomes its child once the launcher is gone, and it keeps it as a
	// direct child: Run reports its pid, Wait its exit status, Signal goes
	// to its process group. A launcher that exits non-zero fails Run.
	// Used by rep/backend/runc; nil for plain processes.
	LaunchPidFile func(handle, processID string) string
	// PollInterval is the longest output-tail and liveness poll wait; default 100 ms.
	PollInterval time.Duration
	// Logger receives the backend's logs; default a no-op logger.
	Logger lager.Logger
}

func (o *Options) setDefaults() error {
	if o.Root == "" {
		return errors.New("process backend: Root is required")
	}
	if o.PortRangeStart == 0 && o.PortRangeEnd == 0 {
		o.PortRangeStart, o.PortRangeEnd = DefaultPortRangeStart, DefaultPortRangeEnd
	}
	if o.PortRangeStart == 0 || o.PortRangeEnd < o.PortRangeStart || o.PortRangeEnd > 65535 {
		return fmt.Errorf("process backend: invalid port range %d-%d", o.PortRangeStart, o.PortRangeEnd)
	}
	if o.HostIP == "" {
		o.HostIP = DefaultHostIP
	}
	if o.GraceTime <= 0 {
		o.GraceTime = DefaultGraceTime
	}
	if o.MaxContainers == 0 {
		o.MaxContainers = DefaultMaxContainers
	}
	if o.CgroupRoot == "" {
		o.CgroupRoot = DefaultCgroupRoot
	}
	if o.CgroupParent == "" {
		o.CgroupParent = DefaultCgroupParent
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Logger == nil {
		o.Logger = lager.NewLogger("process-backend")
	}
	return nil
}
