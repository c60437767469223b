package process

import (
	"fmt"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/lager/v3"
)

// Config is the process backend's section of a daemon's JSON config file
// (the rep's "process", gavel-garden's "process").
type Config struct {
	// RootDir holds one directory per container; required.
	RootDir string `json:"root_dir"`
	// PortRangeStart and PortRangeEnd bound the host ports (default 61000–61999).
	PortRangeStart uint32 `json:"port_range_start"`
	PortRangeEnd   uint32 `json:"port_range_end"`
	// HostIP is the address apps are reached on (default 127.0.0.1).
	HostIP string `json:"host_ip"`
	// KeeperPath is the gavel-keeper binary each process runs under
	// (absolute; default: the daemon re-executes itself as the keeper, which
	// starts processes more slowly and takes more memory per process).
	KeeperPath string `json:"keeper_path"`
}

// Validate checks the section without side effects; each error names its
// field under section (e.g. "process.root_dir").
func (c Config) Validate(section string) []error {
	var errs []error
	if c.RootDir == "" {
		errs = append(errs, fmt.Errorf("%s.root_dir: is required with the process backend", section))
	}
	if c.PortRangeEnd < c.PortRangeStart {
		errs = append(errs, fmt.Errorf("%s.port_range_end: must be >= port_range_start", section))
	}
	if k := c.KeeperPath; k != "" && !filepath.IsAbs(k) {
		errs = append(errs, fmt.Errorf("%s.keeper_path: must be an absolute path (got %q)", section, k))
	}
	return errs
}

// Options are the backend options the section describes.
func (c Config) Options(graceTime time.Duration, logger lager.Logger) Options {
	return Options{
		Root: c.RootDir, PortRangeStart: c.PortRangeStart, PortRangeEnd: c.PortRangeEnd, HostIP: c.HostIP,
		KeeperPath: c.KeeperPath, GraceTime: graceTime, Logger: logger,
	}
}
