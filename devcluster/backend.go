package devcluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	gardenapp "github.com/gavelhq/gavel/garden/app"
	repapp "github.com/gavelhq/gavel/rep/app"
	"github.com/gavelhq/gavel/rep/backend/runc"
)

// HostUserlandRootfs is the preloaded rootfs name under which container
// cells run apps on the host's own userland (read-only), so `gavel push`'s
// default rootfs (preloaded:cflinuxfs4) runs the quickstart's Python app.
const HostUserlandRootfs = "cflinuxfs4"

// BusyboxRootfs is the preloaded rootfs name of the minimal busybox rootfs
// gavel dev builds for its container cells (when a static busybox is at
// /bin/busybox).
const BusyboxRootfs = "busybox"

// buildBusyboxRootfs builds (or completes) the busybox rootfs in the data
// dir and returns its absolute path, or "" (logged) when there is no static
// busybox.
func (c *Cluster) buildBusyboxRootfs() string {
	dir, err := filepath.Abs(filepath.Join(c.opts.DataDir, "rootfs", BusyboxRootfs))
	if err == nil {
		err = runc.BuildBusyboxRootfs(dir, "/bin/busybox")
	}
	if err != nil {
		c.logger.Info("no-busybox-rootfs", lager.Data{"reason": err.Error(), "hint": "apt-get install busybox-static"})
		return ""
	}
	return dir
}

// Backends lists the cell backends gavel dev can run.
func Backends() []string {
	return []string{repapp.BackendProcess, repapp.BackendRunc, repapp.BackendGarden}
}

// CheckContainerHost says why this machine cannot run container cells
// (the runc and garden backends), or nil when it can.
func CheckContainerHost(cniPluginDir string) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (run gavel dev as root)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		if _, err := os.Stat(runc.DefaultRuncPath); err != nil {
			missing = append(missing, "runc")
		}
	}
	if cniPluginDir == "" {
		cniPluginDir = runc.DefaultCNIPluginDir
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniPluginDir, p)); err != nil {
			missing = append(missing, "the CNI plugin "+p)
			break
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		missing = append(missing, "iptables")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("real containers need %v; on Debian or Ubuntu: apt-get install runc containernetworking-plugins iptables busybox-static (or use --backend process)", missing)
}

// clusterTag is a short name derived from the data dir, so two dev clusters
// on one machine never share a bridge, a subnet or a cgroup.
func (c *Cluster) clusterTag() (tag string, octet int) {
	abs, err := filepath.Abs(c.opts.DataDir)
	if err != nil {
		abs = c.opts.DataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:3]), 100 + int(sum[3])%100
}

// configureBackend sets cell i's backend section.
func (c *Cluster) configureBackend(cfg *repapp.Config, i int) error {
	ports := c.opts.PortRangeStart + uint32(i)*1000
	switch c.opts.Backend {
	case repapp.BackendProcess:
		cfg.Backend = repapp.BackendProcess
		cfg.Process = repapp.ProcessConfig{
			RootDir:        filepath.Join(c.opts.DataDir, "cells", cfg.CellID),
			PortRangeStart: ports, PortRangeEnd: ports + 999, HostIP: "127.0.0.1", KeeperPath: c.opts.KeeperPath,
		}
		return nil
	case repapp.BackendRunc:
		cfg.Backend = repapp.BackendRunc
		cfg.Runc = c.runcConfig(cfg.CellID, i, ports)
		return checkSubnetFree(cfg.Runc.Subnet, cfg.Runc.BridgeName)
	case repapp.BackendGarden:
		runc := c.runcConfig(cfg.CellID, i, ports)
		cfg.Backend = repapp.BackendGarden
		cfg.Garden = repapp.GardenConfig{Network: "unix", Address: c.gardenSocket(cfg.CellID), MemoryLimitsEnforced: true}
		cfg.RootFSProviders = map[string][]string{"preloaded": {HostUserlandRootfs}}
		if c.busyboxRootfs != "" {
			cfg.RootFSProviders["preloaded"] = append(cfg.RootFSProviders["preloaded"], BusyboxRootfs)
		}
		return checkSubnetFree(runc.Subnet, runc.BridgeName)
	default:
		return fmt.Errorf("backend %q: must be one of %v", c.opts.Backend, Backends())
	}
}

// runcConfig is cell i's runc backend: its own depot, bridge, /24, cgroup
// parent and port range; the host userland as cflinuxfs4.
func (c *Cluster) runcConfig(cellID string, i int, ports uint32) repapp.RuncConfig {
	tag, octet := c.clusterTag()
	keeper := c.opts.KeeperPath
	if keeper != "" {
		if abs, err := filepath.Abs(keeper); err == nil {
			keeper = abs
		}
	}
	var rootfses map[string]string
	if c.busyboxRootfs != "" {
		rootfses = map[string]string{BusyboxRootfs: c.busyboxRootfs}
	}
	return repapp.RuncConfig{
		RootDir:            filepath.Join(c.opts.DataDir, "cells", cellID+"-runc"),
		Rootfses:           rootfses,
		HostUserlandRootfs: HostUserlandRootfs,
		BridgeName:         "gv" + tag + "-" + strconv.Itoa(i+1),
		Subnet:             fmt.Sprintf("10.%d.%d.0/24", octet, i+1),
		CgroupParent:       "gavel-dev-" + tag + "-" + cellID,
		PortRangeStart:     ports, PortRangeEnd: ports + 999, HostIP: "127.0.0.1",
		KeeperPath: keeper,
	}
}

// checkSubnetFree fails when an interface other than bridge already has an
// address in subnet (another network on this machine uses it).
func checkSubnetFree(subnet, bridge string) error {
	_, want, err := net.ParseCIDR(subnet)
	if err != nil {
		return err
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		if ifc.Name == bridge {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && want.Contains(ipn.IP) {
				return fmt.Errorf("subnet %s is already used by %s (%s); use another --data-dir", subnet, ifc.Name, ipn)
			}
		}
	}
	return nil
}

// gardenSocket is the unix socket of cell's Garden server: absolute when
// that fits a socket address, else relative to the working directory.
func (c *Cluster) gardenSocket(cellID string) string {
	rel := filepath.Join(c.opts.DataDir, "cells", cellID+"-garden.sock")
	if abs, err := filepath.Abs(rel); err == nil && len(abs) < 100 {
		return abs
	}
	return rel
}

// gardenServer is cell i's Garden server (gavel-garden's wiring, without its
// debug and health listeners) over its own runc backend. It destroys its
// containers when it stops, as gavel dev's cells do.
func (c *Cluster) gardenServer(cfg repapp.Config, i int) ifrit.Runner {
	gcfg := gardenapp.DefaultConfig()
	gcfg.ListenNetwork, gcfg.ListenAddress = "unix", cfg.Garden.Address
	gcfg.DebugAddress, gcfg.HealthAddress = "", ""
	gcfg.Backend = gardenapp.BackendRunc
	gcfg.Runc = c.runcConfig(cfg.CellID, i, c.opts.PortRangeStart+uint32(i)*1000)
	gcfg.GraceTime = cfg.GraceTime
	gcfg.DestroyContainersOnExit = true
	return ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		if err := gcfg.Validate(); err != nil {
			return fmt.Errorf("garden server config: %w", err)
		}
		return runNested(gardenapp.New(gcfg, c.logger.Session(cfg.CellID+"-garden")).Runner(), signals, ready)
	})
}
