package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	"github.com/gavelhq/gavel/garden"
	"github.com/gavelhq/gavel/rep/backend"
)

// toBackendContainerSpec maps a Create body to a backend spec, adding the
// server's bookkeeping properties. spec.Handle and spec.GraceTime are
// already defaulted.
func toBackendContainerSpec(spec garden.ContainerSpec) (backend.ContainerSpec, error) {
	if err := checkName("handle", spec.Handle, MaxHandleLength); err != nil {
		return backend.ContainerSpec{}, err
	}
	if spec.RootFSPath != "" && spec.Image.URI != "" {
		return backend.ContainerSpec{}, errors.New("cannot have both rootfs and image.uri")
	}
	if spec.GraceTime < 0 {
		return backend.ContainerSpec{}, fmt.Errorf("negative grace time %d", spec.GraceTime)
	}
	props := backend.Properties{}
	for k, v := range spec.Properties {
		if err := checkName("property name", k, MaxPropertyNameLength); err != nil {
			return backend.ContainerSpec{}, err
		}
		if len(v) > MaxPropertyValueLength {
			return backend.ContainerSpec{}, fmt.Errorf("property %s: value longer than %d bytes", k, MaxPropertyValueLength)
		}
		props[k] = v
	}
	props[garden.PropertyGraceTime] = strconv.FormatInt(int64(spec.GraceTime), 10)
	props[garden.PropertyState] = garden.StateCreated

	image := spec.Image.URI
	if image == "" {
		image = spec.RootFSPath
	}
	b := backend.ContainerSpec{
		Handle:     spec.Handle,
		Image:      image,
		Privileged: spec.Privileged,
		Env:        spec.Env,
		Properties: props,
		Limits: backend.Limits{
			MemoryInBytes: spec.Limits.Memory.LimitInBytes,
			DiskInBytes:   spec.Limits.Disk.ByteHard,
			MaxPids:       spec.Limits.Pid.Max,
			CPUWeight:     spec.Limits.CPU.Weight,
		},
	}
	if b.Limits.DiskInBytes == 0 {
		b.Limits.DiskInBytes = spec.Limits.Disk.ByteSoft
	}
	if b.Limits.CPUWeight == 0 {
		b.Limits.CPUWeight = spec.Limits.CPU.LimitInShares
	}
	for _, n := range spec.NetIn {
		b.NetIn = append(b.NetIn, backend.NetIn{HostPort: n.HostPort, ContainerPort: n.ContainerPort})
	}
	for _, m := range spec.BindMounts {
		if m.Origin != garden.BindMountOriginHost {
			return backend.ContainerSpec{}, fmt.Errorf("bind mount %s: only host-origin bind mounts are supported", m.DstPath)
		}
		b.BindMounts = append(b.BindMounts, backend.BindMount{
			SrcPath: m.SrcPath, DstPath: m.DstPath, ReadWrite: m.Mode == garden.BindMountModeRW,
		})
	}
	return b, nil
}

// parseGraceTime reads the grace time a container was created with; a
// missing or malformed property means "never reap".
func parseGraceTime(props backend.Properties) time.Duration {
	ns, err := strconv.ParseInt(props[garden.PropertyGraceTime], 10, 64)
	if err != nil || ns < 0 {
		return 0
	}
	return time.Duration(ns)
}

// Terminal size when a TTY spec has no window size (guardian's default).
const (
	defaultTTYColumns = 80
	defaultTTYRows    = 24
)

// toBackendProcessSpec maps a Run body. Image and BindMounts ("peas") run
// in the container itself; OverrideContainerLimits is not supported and
// ignored.
func toBackendProcessSpec(spec garden.ProcessSpec) (backend.ProcessSpec, error) {
	if spec.Path == "" {
		// guardian answers an empty path as runc does: executable not found.
		return backend.ProcessSpec{}, &exec.Error{Name: "", Err: exec.ErrNotFound}
	}
	b := backend.ProcessSpec{
		ID: spec.ID, Path: spec.Path, Args: spec.Args, Env: spec.Env, Dir: spec.Dir, User: spec.User,
	}
	if spec.Limits.Nofile != nil {
		b.Limits.Nofile = *spec.Limits.Nofile
	}
	if spec.Limits.Nproc != nil {
		b.Limits.Nproc = *spec.Limits.Nproc
	}
	if spec.TTY != nil {
		tty := toBackendTTY(*spec.TTY)
		b.TTY = &tty
	}
	return b, nil
}

func toBackendTTY(spec garden.TTYSpec) backend.TTYSpec {
	if spec.WindowSize == nil {
		return backend.TTYSpec{Columns: defaultTTYColumns, Rows: defaultTTYRows}
	}
	return backend.TTYSpec{Columns: uint32(spec.WindowSize.Columns), Rows: uint32(spec.WindowSize.Rows)}
}

func toGardenCapacity(c backend.Capacity) garden.Capacity {
	return garden.Capacity{
		MemoryInBytes:          c.MemoryInBytes,
		DiskInBytes:            c.DiskInBytes,
		SchedulableDiskInBytes: c.DiskInBytes,
		MaxContainers:          c.MaxContainers,
	}
}

// toGardenInfo maps a backend's info. Without a network namespace the
// container IP is the host IP; ExternalIP is always the host IP.
func toGardenInfo(info backend.ContainerInfo) garden.ContainerInfo {
	g := garden.ContainerInfo{
		State:         info.State,
		Events:        info.Events,
		HostIP:        info.HostIP,
		ContainerIP:   info.ContainerIP,
		ExternalIP:    info.HostIP,
		ContainerPath: info.Path,
		ProcessIDs:    info.ProcessIDs,
		Properties:    garden.Properties(info.Properties),
	}
	if g.State == "" {
		g.State = garden.ContainerStateActive
	}
	if g.ContainerIP == "" && info.SharedHostNetwork {
		g.ContainerIP = info.HostIP
	}
	if g.Events == nil {
		g.Events = []string{}
	}
	for _, m := range info.MappedPorts {
		g.MappedPorts = append(g.MappedPorts, garden.PortMapping{HostPort: m.HostPort, ContainerPort: m.ContainerPort})
	}
	return g
}

// toGardenMetrics maps a backend's metrics. The backend's MemoryStat names
// are the cgroup names the Garden keys use; a container's disk usage counts
// as exclusive (there is no shared rootfs layer to subtract).
func toGardenMetrics(m backend.ContainerMetrics) garden.Metrics {
	stats := make(map[string]uint64, len(m.MemoryStat)+1)
	for k, v := range m.MemoryStat {
		stats[k] = v
	}
	stats["TotalUsageTowardLimit"] = m.MemoryUsageInBytes
	var mem garden.ContainerMemoryStat
	if b, err := json.Marshal(stats); err == nil {
		_ = json.Unmarshal(b, &mem)
	}
	mem.TotalUsageTowardLimit = m.MemoryUsageInBytes
	g := garden.Metrics{
		MemoryStat: mem,
		CPUStat: garden.ContainerCPUStat{
			Usage: uint64(m.CPUUsage), User: uint64(m.CPUUser), System: uint64(m.CPUSystem),
		},
		DiskStat: garden.ContainerDiskStat{
			TotalBytesUsed: m.DiskBytesUsed, TotalInodesUsed: m.DiskInodesUsed,
			ExclusiveBytesUsed: m.DiskBytesUsed, ExclusiveInodesUsed: m.DiskInodesUsed,
		},
		PidStat: garden.ContainerPidStat{Current: m.PidsCurrent, Max: m.PidsMax},
		Age:     m.Age,
	}
	if m.HasNetworkStats {
		g.NetworkStat = &garden.ContainerNetworkStat{RxBytes: m.RxBytes, TxBytes: m.TxBytes}
	}
	return g
}
