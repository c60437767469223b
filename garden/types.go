package garden

import (
	"net"
	"time"
)

// Properties are string key/value metadata attached to a container.
type Properties map[string]string

// Property names the server keeps for itself; they show up in
// ContainerInfo.Properties like any other property.
const (
	// PropertyState is "created" once a Create has finished. A list filter
	// without it only matches created containers; StateFilterAll matches all.
	PropertyState = "garden.state"
	// PropertyGraceTime holds the container's grace time in nanoseconds, as a
	// decimal string, so that it survives a server restart.
	PropertyGraceTime = "garden.grace-time"
	// StateCreated is the value of PropertyState after a successful Create.
	StateCreated = "created"
	// StateFilterAll, as the PropertyState filter value, matches every container.
	StateFilterAll = "all"
)

// ContainerSpec is the body of POST /containers. Every field is optional.
type ContainerSpec struct {
	// Handle names the container; empty lets the server generate one.
	Handle string `json:"handle,omitempty"`
	// GraceTime is the idle time after which the container is destroyed;
	// 0 takes the server's default.
	GraceTime time.Duration `json:"grace_time,omitempty"`
	// RootFSPath is the deprecated form of Image.URI.
	RootFSPath string `json:"rootfs,omitempty"`
	// Image is the container's root filesystem.
	Image ImageRef `json:"image,omitempty"`
	// BindMounts are mounted into the container.
	BindMounts []BindMount `json:"bind_mounts,omitempty"`
	// Network is a subnet or a fixed IP in CIDR form; empty lets the server choose.
	Network string `json:"network,omitempty"`
	// Properties are stored with the container.
	Properties Properties `json:"properties,omitempty"`
	// Env is prepended to every process's env ("K=V").
	Env []string `json:"env,omitempty"`
	// Privileged asks for a container without a user namespace.
	Privileged bool `json:"privileged,omitempty"`
	// Limits are the container's resource limits.
	Limits Limits `json:"limits,omitempty"`
	// NetOut lists egress rules.
	NetOut []NetOutRule `json:"netout_rules,omitempty"`
	// NetIn lists port mappings to make at create.
	NetIn []NetIn `json:"netin,omitempty"`
}

// ImageRef names an image. A zero ImageRef ({} on the wire) means "not set".
type ImageRef struct {
	// URI is a path, docker://..., raw:///dir or preloaded+layer:...
	URI string `json:"uri,omitempty"`
	// Username and Password authenticate to a registry.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// BindMountMode says whether a bind mount is writable.
type BindMountMode uint8

const (
	// BindMountModeRO is a read-only mount (the default).
	BindMountModeRO BindMountMode = 0
	// BindMountModeRW is a writable mount.
	BindMountModeRW BindMountMode = 1
)

// BindMountOrigin says where a bind mount's source lives.
type BindMountOrigin uint8

const (
	// BindMountOriginHost is a host path (the default).
	BindMountOriginHost BindMountOrigin = 0
	// BindMountOriginContainer is a path inside the container.
	BindMountOriginContainer BindMountOrigin = 1
)

// BindMount mounts SrcPath at DstPath.
type BindMount struct {
	SrcPath string          `json:"src_path,omitempty"`
	DstPath string          `json:"dst_path,omitempty"`
	Mode    BindMountMode   `json:"mode,omitempty"`
	Origin  BindMountOrigin `json:"origin,omitempty"`
}

// Limits groups a container's resource limits; a zero member means unlimited.
type Limits struct {
	Bandwidth BandwidthLimits `json:"bandwidth_limits,omitempty"`
	CPU       CPULimits       `json:"cpu_limits,omitempty"`
	Disk      DiskLimits      `json:"disk_limits,omitempty"`
	Memory    MemoryLimits    `json:"memory_limits,omitempty"`
	Pid       PidLimits       `json:"pid_limits,omitempty"`
}

// BandwidthLimits are in bytes per second.
type BandwidthLimits struct {
	RateInBytesPerSecond      uint64 `json:"rate,omitempty"`
	BurstRateInBytesPerSecond uint64 `json:"burst,omitempty"`
}

// CPULimits are relative CPU weights; LimitInShares is deprecated for Weight.
type CPULimits struct {
	Weight        uint64 `json:"weight,omitempty"`
	LimitInShares uint64 `json:"limit_in_shares,omitempty"`
}

// DiskLimitScope says what a disk limit counts.
type DiskLimitScope uint8

const (
	// DiskLimitScopeTotal counts the rootfs too.
	DiskLimitScopeTotal DiskLimitScope = 0
	// DiskLimitScopeExclusive counts only the container's own writes.
	DiskLimitScopeExclusive DiskLimitScope = 1
)

// DiskLimits bound a container's disk usage.
type DiskLimits struct {
	InodeSoft uint64         `json:"inode_soft,omitempty"`
	InodeHard uint64         `json:"inode_hard,omitempty"`
	ByteSoft  uint64         `json:"byte_soft,omitempty"`
	ByteHard  uint64         `json:"byte_hard,omitempty"`
	Scope     DiskLimitScope `json:"scope,omitempty"`
}

// MemoryLimits bound a container's memory.
type MemoryLimits struct {
	LimitInBytes uint64 `json:"limit_in_bytes,omitempty"`
}

// PidLimits bound a container's process count.
type PidLimits struct {
	Max uint64 `json:"max,omitempty"`
}

// NetIn is one port mapping of ContainerSpec.NetIn. Both keys are always sent.
type NetIn struct {
	HostPort      uint32 `json:"host_port"`
	ContainerPort uint32 `json:"container_port"`
}

// Protocol is a NetOutRule protocol.
type Protocol uint8

const (
	// ProtocolAll matches every protocol.
	ProtocolAll Protocol = iota
	// ProtocolTCP matches TCP.
	ProtocolTCP
	// ProtocolUDP matches UDP.
	ProtocolUDP
	// ProtocolICMP matches ICMP.
	ProtocolICMP
	// ProtocolICMPv6 matches ICMPv6.
	ProtocolICMPv6
)

// NetOutRule allows egress; each zero field means "everything".
type NetOutRule struct {
	Protocol Protocol     `json:"protocol,omitempty"`
	Networks []IPRange    `json:"networks,omitempty"`
	Ports    []PortRange  `json:"ports,omitempty"`
	ICMPs    *ICMPControl `json:"icmps,omitempty"`
	Log      bool         `json:"log,omitempty"`
}

// IPRange is an inclusive range of addresses.
type IPRange struct {
	Start net.IP `json:"start,omitempty"`
	End   net.IP `json:"end,omitempty"`
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	Start uint16 `json:"start,omitempty"`
	End   uint16 `json:"end,omitempty"`
}

// ICMPType is an ICMP message type.
type ICMPType uint8

// ICMPCode is an ICMP message code.
type ICMPCode uint8

// ICMPControl selects ICMP messages; a nil Code means any code. Type 0
// (echo reply) is omitted on the wire, as upstream encodes it; an absent
// type decodes to 0.
type ICMPControl struct {
	Type ICMPType  `json:"type,omitempty"`
	Code *ICMPCode `json:"code,omitempty"`
}

// CreateResponse is the body answering POST /containers.
type CreateResponse struct {
	Handle string
}

// ListResponse is the body answering GET /containers.
type ListResponse struct {
	Handles []string
}

// StopRequest is the body of PUT /containers/:h/stop.
type StopRequest struct {
	Kill bool `json:"kill"`
}

// PropertyValue is the body of PUT and the answer of GET /containers/:h/properties/:key.
type PropertyValue struct {
	Value string `json:"value"`
}

// NetInRequest is the body of POST /containers/:h/net/in; Handle is ignored.
type NetInRequest struct {
	Handle        string `json:"handle,omitempty"`
	HostPort      uint32 `json:"host_port,omitempty"`
	ContainerPort uint32 `json:"container_port,omitempty"`
}

// NetInResponse answers POST /containers/:h/net/in.
type NetInResponse struct {
	HostPort      uint32 `json:"host_port,omitempty"`
	ContainerPort uint32 `json:"container_port,omitempty"`
}

// Capacity is the host's physical capacity.
type Capacity struct {
	MemoryInBytes          uint64 `json:"memory_in_bytes,omitempty"`
	DiskInBytes            uint64 `json:"disk_in_bytes,omitempty"`
	SchedulableDiskInBytes uint64 `json:"schedulable_disk_in_bytes,omitempty"`
	MaxContainers          uint64 `json:"max_containers,omitempty"`
}

// Container states reported in ContainerInfo.State.
const (
	// ContainerStateActive is a container whose processes may run.
	ContainerStateActive = "active"
	// ContainerStateStopped is a container after Stop.
	ContainerStateStopped = "stopped"
)

// ContainerInfo describes a container; its keys are CapitalCase.
type ContainerInfo struct {
	State         string
	Events        []string
	HostIP        string
	ContainerIP   string
	ContainerIPv6 string
	ExternalIP    string
	ContainerPath string
	ProcessIDs    []string
	Properties    Properties
	MappedPorts   []PortMapping
}

// PortMapping is an established NetIn.
type PortMapping struct {
	HostPort      uint32
	ContainerPort uint32
}

// ContainerInfoEntry is one value of the bulk_info answer.
type ContainerInfoEntry struct {
	Info ContainerInfo
	Err  *Error
}

// ContainerMetricsEntry is one value of the bulk_metrics answer.
type ContainerMetricsEntry struct {
	Metrics Metrics
	Err     *Error
}

// Metrics is a container's usage; its keys are CapitalCase.
type Metrics struct {
	MemoryStat  ContainerMemoryStat
	CPUStat     ContainerCPUStat
	DiskStat    ContainerDiskStat
	NetworkStat *ContainerNetworkStat
	PidStat     ContainerPidStat
	// Age is the time since the container was created (ns on the wire).
	Age time.Duration
	// CPUEntitlement is the CPU time the container is entitled to, in ns.
	CPUEntitlement uint64
}

// ContainerMemoryStat holds cgroup memory statistics (snake_case keys) and
// TotalUsageTowardLimit (CapitalCase), the usage counted toward the limit.
type ContainerMemoryStat struct {
	ActiveAnon              uint64 `json:"active_anon"`
	ActiveFile              uint64 `json:"active_file"`
	Cache                   uint64 `json:"cache"`
	HierarchicalMemoryLimit uint64 `json:"hierarchical_memory_limit"`
	InactiveAnon            uint64 `json:"inactive_anon"`
	InactiveFile            uint64 `json:"inactive_file"`
	MappedFile              uint64 `json:"mapped_file"`
	Pgfault                 uint64 `json:"pgfault"`
	Pgmajfault              uint64 `json:"pgmajfault"`
	Pgpgin                  uint64 `json:"pgpgin"`
	Pgpgout                 uint64 `json:"pgpgout"`
	Rss                     uint64 `json:"rss"`
	TotalActiveAnon         uint64 `json:"total_active_anon"`
	TotalActiveFile         uint64 `json:"total_active_file"`
	TotalCache              uint64 `json:"total_cache"`
	TotalInactiveAnon       uint64 `json:"total_inactive_anon"`
	TotalInactiveFile       uint64 `json:"total_inactive_file"`
	TotalMappedFile         uint64 `json:"total_mapped_file"`
	TotalPgfault            uint64 `json:"total_pgfault"`
	TotalPgmajfault         uint64 `json:"total_pgmajfault"`
	TotalPgpgin             uint64 `json:"total_pgpgin"`
	TotalPgpgout            uint64 `json:"total_pgpgout"`
	TotalRss                uint64 `json:"total_rss"`
	TotalUnevictable        uint64 `json:"total_unevictable"`
	Unevictable             uint64 `json:"unevictable"`
	Swap                    uint64 `json:"swap"`
	HierarchicalMemswLimit  uint64 `json:"hierarchical_memsw_limit"`
	TotalSwap               uint64 `json:"total_swap"`
	TotalUsageTowardLimit   uint64
	Anon                    uint64 `json:"anon"`
	File                    uint64 `json:"file"`
	SwapCached              uint64 `json:"swapcached"`
}

// ContainerCPUStat is cumulative CPU time in ns.
type ContainerCPUStat struct {
	Usage  uint64
	User   uint64
	System uint64
}

// ContainerDiskStat is disk usage.
type ContainerDiskStat struct {
	TotalBytesUsed      uint64
	TotalInodesUsed     uint64
	ExclusiveBytesUsed  uint64
	ExclusiveInodesUsed uint64
}

// ContainerNetworkStat counts network bytes.
type ContainerNetworkStat struct {
	RxBytes uint64
	TxBytes uint64
}

// ContainerPidStat is the process count and its limit.
type ContainerPidStat struct {
	Current uint64
	Max     uint64
}
