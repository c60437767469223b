package garden

import (
	"encoding/json"
	"time"

	gardenapi "github.com/gavelhq/gavel/garden"
	"github.com/gavelhq/gavel/garden/client"
	"github.com/gavelhq/gavel/rep/backend"
)

func toGardenSpec(spec backend.ContainerSpec) gardenapi.ContainerSpec {
	g := gardenapi.ContainerSpec{
		Handle:     spec.Handle,
		Image:      gardenapi.ImageRef{URI: spec.Image},
		Privileged: spec.Privileged,
		Env:        spec.Env,
		Properties: gardenapi.Properties(spec.Properties),
		Limits: gardenapi.Limits{
			Memory: gardenapi.MemoryLimits{LimitInBytes: spec.Limits.MemoryInBytes},
			Disk:   gardenapi.DiskLimits{ByteHard: spec.Limits.DiskInBytes},
			Pid:    gardenapi.PidLimits{Max: spec.Limits.MaxPids},
			CPU:    gardenapi.CPULimits{Weight: spec.Limits.CPUWeight},
		},
	}
	for _, n := range spec.NetIn {
		g.NetIn = append(g.NetIn, gardenapi.NetIn{HostPort: n.HostPort, ContainerPort: n.ContainerPort})
	}
	for _, m := range spec.BindMounts {
		mode := gardenapi.BindMountModeRO
		if m.ReadWrite {
			mode = gardenapi.BindMountModeRW
		}
		g.BindMounts = append(g.BindMounts, gardenapi.BindMount{
			SrcPath: m.SrcPath, DstPath: m.DstPath, Mode: mode, Origin: gardenapi.BindMountOriginHost,
		})
	}
	return g
}

func toGardenProcessSpec(spec backend.ProcessSpec) gardenapi.ProcessSpec {
	g := gardenapi.ProcessSpec{ID: spec.ID, Path: spec.Path, Args: spec.Args, Env: spec.Env, Dir: spec.Dir, User: spec.User}
	if spec.Limits.Nofile != 0 {
		n := spec.Limits.Nofile
		g.Limits.Nofile = &n
	}
	if spec.Limits.Nproc != 0 {
		n := spec.Limits.Nproc
		g.Limits.Nproc = &n
	}
	if spec.TTY != nil {
		g.TTY = &gardenapi.TTYSpec{WindowSize: &gardenapi.WindowSize{Columns: uint16(spec.TTY.Columns), Rows: uint16(spec.TTY.Rows)}}
	}
	return g
}

func toClientIO(pio backend.ProcessIO) client.ProcessIO {
	return client.ProcessIO{Stdin: pio.Stdin, Stdout: pio.Stdout, Stderr: pio.Stderr}
}

func toBackendInfo(info gardenapi.ContainerInfo, memoryEnforced bool) backend.ContainerInfo {
	hostIP := info.ExternalIP
	if hostIP == "" {
		hostIP = info.HostIP
	}
	b := backend.ContainerInfo{
		State:               info.State,
		HostIP:              hostIP,
		ContainerIP:         info.ContainerIP,
		SharedHostNetwork:   info.ContainerIP == hostIP,
		Properties:          backend.Properties(info.Properties),
		Events:              info.Events,
		ProcessIDs:          info.ProcessIDs,
		MemoryLimitEnforced: memoryEnforced,
		Path:                info.ContainerPath,
	}
	for _, m := range info.MappedPorts {
		b.MappedPorts = append(b.MappedPorts, backend.PortMapping{HostPort: m.HostPort, ContainerPort: m.ContainerPort})
	}
	return b
}

func toBackendMetrics(m gardenapi.Metrics) backend.ContainerMetrics {
	stats := map[string]uint64{}
	if b, err := json.Marshal(m.MemoryStat); err == nil {
		_ = json.Unmarshal(b, &stats)
	}
	delete(stats, "TotalUsageTowardLimit")
	for k, v := range stats {
		if v == 0 {
			delete(stats, k)
		}
	}
	b := backend.ContainerMetrics{
		MemoryUsageInBytes: m.MemoryStat.TotalUsageTowardLimit,
		MemoryStat:         stats,
		CPUUsage:           time.Duration(m.CPUStat.Usage),
		CPUUser:            time.Duration(m.CPUStat.User),
		CPUSystem:          time.Duration(m.CPUStat.System),
		DiskBytesUsed:      m.DiskStat.ExclusiveBytesUsed,
		DiskInodesUsed:     m.DiskStat.ExclusiveInodesUsed,
		PidsCurrent:        m.PidStat.Current,
		PidsMax:            m.PidStat.Max,
		Age:                m.Age,
	}
	if m.NetworkStat != nil {
		b.RxBytes, b.TxBytes, b.HasNetworkStats = m.NetworkStat.RxBytes, m.NetworkStat.TxBytes, true
	}
	return b
}
