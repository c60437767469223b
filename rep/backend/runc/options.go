package runc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"code.cloudfoundry.org/lager/v3"
)

// Defaults for Options.
const (
	// DefaultRuncPath is the runc binary.
	DefaultRuncPath = "/usr/sbin/runc"
	// DefaultCNIPluginDir holds the CNI plugins (Debian's containernetworking-plugins).
	DefaultCNIPluginDir = "/usr/lib/cni"
	// DefaultBridgeName is the bridge containers are attached to.
	DefaultBridgeName = "gavel0"
	// DefaultSubnet is the container subnet (host-local IPAM).
	DefaultSubnet = "10.254.0.0/22"
	// DefaultPortRangeStart is the first host port handed to containers.
	DefaultPortRangeStart = 61000
	// DefaultPortRangeEnd is the last host port handed to containers.
	DefaultPortRangeEnd = 61999
	// DefaultHostIP is the address mapped ports are reported on.
	DefaultHostIP = "127.0.0.1"
	// DefaultCgroupParent is the cgroup (below each hierarchy's root) that
	// holds the container cgroups.
	DefaultCgroupParent = "gavel-runc"
	// DefaultGraceTime is how long Stop waits after SIGTERM before SIGKILL.
	DefaultGraceTime = 10 * time.Second
	// DefaultMaxContainers is the container capacity reported by Capacity.
	DefaultMaxContainers = 250
	// DefaultNofile is the RLIMIT_NOFILE of a process that sets none.
	DefaultNofile = 1024
	// DefaultPollInterval is the longest wait between two reads of a
	// process's output file and between two liveness checks.
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultCgroupRoot is where the cgroup hierarchies are mounted.
	DefaultCgroupRoot = "/sys/fs/cgroup"
)

// Options configure a Backend. Only Root is required.
type Options struct {
	// Root is the depot: bundles, overlay layers, process state, CNI state
	// and runc's own state live below it. Required.
	Root string
	// RuncPath is the runc binary; default /usr/sbin/runc.
	RuncPath string
	// Rootfses maps a preloaded rootfs name (image URI "preloaded:NAME")
	// to a directory used read-only as the lower layer of each container's
	// overlay.
	Rootfses map[string]string
	// HostUserlandRootfs, when set, names a preloaded rootfs that is the
	// host's own userland: /usr, /bin, /sbin, /lib*, /etc bind-mounted
	// read-only into an otherwise empty root (nothing is copied), so host
	// programs (a Python app, say) run isolated.
	HostUserlandRootfs string
	// DefaultRootfs is the preloaded name used when ContainerSpec.Image is
	// empty; default: the only name when exactly one is provided.
	DefaultRootfs string
	// CNIPluginDir holds the bridge, host-local, portmap and loopback
	// plugins; default /usr/lib/cni.
	CNIPluginDir string
	// BridgeName is the bridge containers attach to (at most 15 bytes);
	// default gavel0. Two backends on one host need different names.
	BridgeName string
	// NetworkName names the CNI network: it appears in the comments of the
	// iptables rules CNI adds; default "gavel-" + BridgeName.
	NetworkName string
	// Subnet is the container subnet in CIDR form; default 10.254.0.0/22.
	Subnet string
	// DisableIPMasq turns off masquerading of container traffic leaving
	// the host (the bridge plugin's ipMasq).
	DisableIPMasq bool
	// DNSServers are written to each container's /etc/resolv.conf; default
	// the host's nameservers, without loopback ones.
	DNSServers []string
	// PortRangeStart and PortRangeEnd bound the host ports (inclusive);
	// default 61000–61999.
	PortRangeStart, PortRangeEnd uint32
	// HostIP is the IP reported in ContainerInfo.HostIP; default 127.0.0.1.
	HostIP string
	// CgroupRoot is where the cgroup hierarchies are mounted; default
	// /sys/fs/cgroup. v1 or v2 is detected there.
	CgroupRoot string
	// CgroupParent is the cgroup holding container cgroups; default
	// gavel-runc. Two backends on one host need different parents.
	CgroupParent string
	// GraceTime is the SIGTERM→SIGKILL wait of Stop(kill=false); default 10 s.
	GraceTime time.Duration
	// MemoryInBytes and DiskInBytes override the capacity read from the host.
	MemoryInBytes, DiskInBytes uint64
	// MaxContainers is the container capacity; default 250.
	MaxContainers uint64
	// KeeperPath is the keeper binary (cmd/gavel-keeper, or any binary
	// whose main runs process.RunKeeper when process.KeeperRequested): it
	// keeps every `runc exec`, and, bind-mounted read-only into each
	// container, it is the container's init and tar helper, so it must be
	// statically linked (CGO_ENABLED=0). Default: this binary.
	KeeperPath string
	// PollInterval is the longest output-tail and liveness poll wait;
	// default 100 ms.
	PollInterval time.Duration
	// Logger receives the backend's logs; default a logger with no sinks.
	Logger lager.Logger
}

// runcIDPattern is what runc accepts as a container id.
var runcIDPattern = regexp.MustCompile(`^[\w+\-.]+$`)

func (o *Options) setDefaults() error {
	if o.Root == "" {
		return errors.New("runc backend: Root is required")
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return fmt.Errorf("runc backend: root: %w", err)
	}
	o.Root = root
	if o.RuncPath == "" {
		o.RuncPath = DefaultRuncPath
	}
	if o.CNIPluginDir == "" {
		o.CNIPluginDir = DefaultCNIPluginDir
	}
	if o.BridgeName == "" {
		o.BridgeName = DefaultBridgeName
	}
	if o.NetworkName == "" {
		o.NetworkName = "gavel-" + o.BridgeName
	}
	if o.Subnet == "" {
		o.Subnet = DefaultSubnet
	}
	if o.PortRangeStart == 0 && o.PortRangeEnd == 0 {
		o.PortRangeStart, o.PortRangeEnd = DefaultPortRangeStart, DefaultPortRangeEnd
	}
	if o.HostIP == "" {
		o.HostIP = DefaultHostIP
	}
	if o.CgroupRoot == "" {
		o.CgroupRoot = DefaultCgroupRoot
	}
	if o.CgroupParent == "" {
		o.CgroupParent = DefaultCgroupParent
	}
	if o.GraceTime <= 0 {
		o.GraceTime = DefaultGraceTime
	}
	if o.MaxContainers == 0 {
		o.MaxContainers = DefaultMaxContainers
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Logger == nil {
		o.Logger = lager.NewLogger("runc-backend")
	}
	if o.KeeperPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("runc backend: keeper path: %w", err)
		}
		o.KeeperPath = exe
	}
	if o.DefaultRootfs == "" {
		names := o.rootfsNames()
		if len(names) == 1 {
			o.DefaultRootfs = names[0]
		}
	}
	return o.validate()
}

// validate checks the options after defaults, collecting every problem.
func (o *Options) validate() error {
	var errs []error
	if len(o.BridgeName) > 15 {
		errs = append(errs, fmt.Errorf("BridgeName %q: longer than 15 bytes", o.BridgeName))
	}
	if _, _, err := net.ParseCIDR(o.Subnet); err != nil {
		errs = append(errs, fmt.Errorf("Subnet: %w", err))
	}
	if o.PortRangeStart == 0 || o.PortRangeEnd < o.PortRangeStart || o.PortRangeEnd > 65535 {
		errs = append(errs, fmt.Errorf("invalid port range %d-%d", o.PortRangeStart, o.PortRangeEnd))
	}
	if net.ParseIP(o.HostIP) == nil {
		errs = append(errs, fmt.Errorf("HostIP %q: not an IP address", o.HostIP))
	}
	if !runcIDPattern.MatchString(o.CgroupParent) {
		errs = append(errs, fmt.Errorf("CgroupParent %q: only letters, digits, '_', '+', '-' and '.'", o.CgroupParent))
	}
	for name, dir := range o.Rootfses {
		if name == o.HostUserlandRootfs {
			errs = append(errs, fmt.Errorf("rootfs %q: both a directory and the host userland", name))
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("rootfs %q: %s is not a directory", name, dir))
		}
	}
	if o.DefaultRootfs != "" && !o.provides(o.DefaultRootfs) {
		errs = append(errs, fmt.Errorf("DefaultRootfs %q: not in Rootfses or HostUserlandRootfs", o.DefaultRootfs))
	}
	for _, p := range []struct{ name, path string }{{"RuncPath", o.RuncPath}, {"KeeperPath", o.KeeperPath}} {
		if !filepath.IsAbs(p.path) {
			errs = append(errs, fmt.Errorf("%s %q: must be absolute", p.name, p.path))
		} else if _, err := os.Stat(p.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(o.CNIPluginDir, plugin)); err != nil {
			errs = append(errs, fmt.Errorf("CNI plugin %s: %w (install containernetworking-plugins)", plugin, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("runc backend: invalid options: %w", err)
	}
	return nil
}

// rootfsNames lists the preloaded names provided, sorted.
func (o *Options) rootfsNames() []string {
	var names []string
	for n := range o.Rootfses {
		names = append(names, n)
	}
	if o.HostUserlandRootfs != "" {
		names = append(names, o.HostUserlandRootfs)
	}
	sort.Strings(names)
	return names
}

func (o *Options) provides(name string) bool {
	_, ok := o.Rootfses[name]
	return ok || (name != "" && name == o.HostUserlandRootfs)
}
