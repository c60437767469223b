package runc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// capNames are the Linux capabilities by number (linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
	"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// containerCaps is what a root process of an unprivileged container gets
// (Docker's and Garden's default set). CAP_SYS_RESOURCE is never in it: a
// container must not raise its own limits.
var containerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
	"CAP_KILL", "CAP_AUDIT_WRITE",
}

// capabilitySets are the capability names a container's processes may hold.
type capabilitySets struct {
	// unprivileged is containerCaps within the host's bounding set.
	unprivileged []string
	// privileged is the host's bounding set without CAP_SYS_RESOURCE.
	privileged []string
}

// readCapabilities intersects the default sets with this process's
// bounding set (runc fails on a capability outside it).
func readCapabilities() (capabilitySets, error) {
	bnd, err := boundingSet("/proc/self/status")
	if err != nil {
		return capabilitySets{}, err
	}
	return newCapabilitySets(bnd), nil
}

func newCapabilitySets(bnd uint64) capabilitySets {
	var sets capabilitySets
	has := map[string]bool{}
	for i, name := range capNames {
		if bnd&(1<<uint(i)) == 0 {
			continue
		}
		has[name] = true
		if name != "CAP_SYS_RESOURCE" {
			sets.privileged = append(sets.privileged, name)
		}
	}
	for _, name := range containerCaps {
		if has[name] {
			sets.unprivileged = append(sets.unprivileged, name)
		}
	}
	return sets
}

// boundingSet reads CapBnd from a /proc/<pid>/status file.
func boundingSet(statusFile string) (uint64, error) {
	f, err := os.Open(statusFile)
	if err != nil {
		return 0, fmt.Errorf("read capability bounding set: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapBnd:"); ok {
			bnd, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("parse CapBnd %q: %w", v, err)
			}
			return bnd, nil
		}
	}
	return 0, fmt.Errorf("no CapBnd in %s", statusFile)
}
