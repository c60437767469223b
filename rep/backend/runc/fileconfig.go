package runc

import (
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	"code.cloudfoundry.org/lager/v3"
)

// Config is the runc backend's section of a daemon's JSON config file (the
// rep's "runc", gavel-garden's "runc"): real containers (overlay rootfs,
// namespaces, cgroup limits, a network namespace per container on a CNI
// bridge). It needs root, runc and the CNI plugins.
type Config struct {
	// RootDir is the depot (bundles, overlay layers, process state, IP
	// leases); required.
	RootDir string `json:"root_dir"`
	// RuncPath is the runc binary (default /usr/sbin/runc).
	RuncPath string `json:"runc_path"`
	// Rootfses maps a preloaded rootfs name (an LRP's or task's rootfs
	// "preloaded:NAME") to a directory used read-only under each container's
	// overlay. A rep cell advertises exactly these names (and
	// host_userland_rootfs) as its "preloaded" stacks.
	Rootfses map[string]string `json:"rootfses"`
	// HostUserlandRootfs names a preloaded rootfs that is the host's own
	// /usr, /bin, /sbin, /lib* and /etc bind-mounted read-only (nothing is
	// copied), so host programs run isolated; e.g. "cflinuxfs4".
	HostUserlandRootfs string `json:"host_userland_rootfs"`
	// DefaultRootfs is used for work that names no rootfs (default: the only
	// one, when exactly one is provided).
	DefaultRootfs string `json:"default_rootfs"`
	// CNIPluginDir holds the bridge, host-local, portmap and loopback plugins
	// (default /usr/lib/cni).
	CNIPluginDir string `json:"cni_plugin_dir"`
	// BridgeName is the bridge the cell's containers attach to, at most 15
	// bytes (default gavel0); every cell on one host needs its own.
	BridgeName string `json:"bridge_name"`
	// Subnet is the cell's container subnet (default 10.254.0.0/22); every
	// backend on one host needs its own.
	Subnet string `json:"subnet"`
	// PortRangeStart and PortRangeEnd bound the host ports mapped to
	// container ports (default 61000–61999).
	PortRangeStart uint32 `json:"port_range_start"`
	PortRangeEnd   uint32 `json:"port_range_end"`
	// HostIP is the address mapped ports are reported on (default 127.0.0.1).
	HostIP string `json:"host_ip"`
	// CgroupParent is the cgroup holding the cell's container cgroups
	// (default gavel-runc); every cell on one host needs its own.
	CgroupParent string `json:"cgroup_parent"`
	// KeeperPath is the statically linked gavel-keeper (absolute): the
	// parent of every `runc exec`, and each container's init (default: the
	// rep's own binary, which must then be static).
	KeeperPath string `json:"keeper_path"`
	// DNSServers go to each container's /etc/resolv.conf (default the
	// host's non-loopback nameservers).
	DNSServers []string `json:"dns_servers"`
}

// rootfsNamePattern is what a preloaded rootfs name may contain.
var rootfsNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.:-]+$`)

// Validate checks the section without side effects; each error names its
// field under section (e.g. "runc.root_dir").
func (r Config) Validate(section string) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if r.RootDir == "" {
		add("%s.root_dir: is required", section)
	}
	if len(r.Rootfses) == 0 && r.HostUserlandRootfs == "" {
		add("%s.rootfses: name at least one rootfs directory (or set %[1]s.host_userland_rootfs)", section)
	}
	for name, dir := range r.Rootfses {
		if !rootfsNamePattern.MatchString(name) {
			add("%s.rootfses: name %q must match %s", section, name, rootfsNamePattern)
		}
		if !filepath.IsAbs(dir) {
			add("%s.rootfses[%s]: must be an absolute path (got %q)", section, name, dir)
		}
		if name == r.HostUserlandRootfs {
			add("%s.rootfses[%s]: is also %[1]s.host_userland_rootfs; give each name one source", section, name)
		}
	}
	if n := r.HostUserlandRootfs; n != "" && !rootfsNamePattern.MatchString(n) {
		add("%s.host_userland_rootfs: must match %s (got %q)", section, rootfsNamePattern, n)
	}
	if d := r.DefaultRootfs; d != "" && d != r.HostUserlandRootfs {
		if _, ok := r.Rootfses[d]; !ok {
			add("%s.default_rootfs: %q is neither in %[1]s.rootfses nor %[1]s.host_userland_rootfs", section, d)
		}
	}
	if r.PortRangeEnd < r.PortRangeStart {
		add("%s.port_range_end: must be >= port_range_start", section)
	}
	if k := r.KeeperPath; k != "" && !filepath.IsAbs(k) {
		add("%s.keeper_path: must be an absolute path (got %q)", section, k)
	}
	return errs
}

// Options are the backend options the section describes.
func (r Config) Options(graceTime time.Duration, logger lager.Logger) Options {
	return Options{
		Root: r.RootDir, RuncPath: r.RuncPath, Rootfses: r.Rootfses, HostUserlandRootfs: r.HostUserlandRootfs,
		DefaultRootfs: r.DefaultRootfs, CNIPluginDir: r.CNIPluginDir, BridgeName: r.BridgeName, Subnet: r.Subnet,
		DNSServers: r.DNSServers, PortRangeStart: r.PortRangeStart, PortRangeEnd: r.PortRangeEnd, HostIP: r.HostIP,
		CgroupParent: r.CgroupParent, GraceTime: graceTime, KeeperPath: r.KeeperPath, Logger: logger,
	}
}
