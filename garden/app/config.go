package app

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/rep/backend/process"
	"github.com/gavelhq/gavel/rep/backend/runc"
)

// Defaults of gavel-garden.
const (
	// DefaultListenNetwork is where the Garden API is served: a unix socket,
	// since the Garden protocol has no authentication of its own.
	DefaultListenNetwork = "unix"
	// DefaultListenAddress is the socket path.
	DefaultListenAddress = "/run/gavel-garden/garden.sock"
	// DefaultDebugAddress serves /metrics and /debug/pprof.
	DefaultDebugAddress = "127.0.0.1:17019"
	// DefaultHealthAddress serves the gRPC health service.
	DefaultHealthAddress = "127.0.0.1:17020"
	// DefaultGraceTime is the SIGTERM→SIGKILL wait when a container stops.
	DefaultGraceTime = 10 * time.Second
	// DefaultHealthCheckInterval is the time between two backend pings.
	DefaultHealthCheckInterval = 10 * time.Second
	// BackendRunc and BackendProcess name the container backends.
	BackendRunc    = "runc"
	BackendProcess = "process"
)

// Config is gavel-garden's JSON config file.
type Config struct {
	// ListenNetwork is "unix" (default) or "tcp".
	ListenNetwork string `json:"listen_network"`
	// ListenAddress is the socket path (default /run/gavel-garden/garden.sock)
	// or, with tcp, host:port. The Garden protocol has no authentication:
	// a TCP address must be loopback unless insecure_remote_listen is set.
	ListenAddress string `json:"listen_address"`
	// InsecureRemoteListen allows a non-loopback TCP listen address: anyone
	// who reaches it can run processes as root on this host (default false).
	InsecureRemoteListen bool `json:"insecure_remote_listen"`
	// DebugAddress serves /metrics and /debug/pprof (default
	// 127.0.0.1:17019; empty disables it).
	DebugAddress string `json:"debug_address"`
	// DebugTLS, when set (ca_file, cert_file, key_file), serves the debug
	// endpoints over HTTPS to client certificates of role operator only, on
	// any address; without it debug_address must be a loopback address.
	DebugTLS tlsconfig.Files `json:"debug_tls"`
	// HealthAddress serves the gRPC health service, SERVING while the
	// backend answers its ping (default 127.0.0.1:17020; empty disables it).
	HealthAddress string `json:"health_address"`
	// HealthCheckInterval is the time between two backend pings (default 10s).
	HealthCheckInterval config.Duration `json:"health_check_interval"`
	// LogLevel is debug, info, error or fatal (default info).
	LogLevel string `json:"log_level"`
	// Backend is "runc" (default: real containers) or "process" (no isolation).
	Backend string `json:"backend"`
	// Runc configures the runc backend.
	Runc runc.Config `json:"runc"`
	// Process configures the process backend.
	Process process.Config `json:"process"`
	// DefaultGraceTime is the idle time after which a container created
	// without a grace_time is destroyed (default 0: never).
	DefaultGraceTime config.Duration `json:"default_grace_time"`
	// GraceTime is the SIGTERM→SIGKILL wait of a container's Stop (default 10s).
	GraceTime config.Duration `json:"grace_time"`
	// DestroyContainersOnExit destroys every container when the daemon stops
	// (default false: they keep running for the next start).
	DestroyContainersOnExit bool `json:"destroy_containers_on_exit"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ListenNetwork:       DefaultListenNetwork,
		ListenAddress:       DefaultListenAddress,
		DebugAddress:        DefaultDebugAddress,
		HealthAddress:       DefaultHealthAddress,
		HealthCheckInterval: config.Duration(DefaultHealthCheckInterval),
		LogLevel:            "info",
		Backend:             BackendRunc,
		GraceTime:           config.Duration(DefaultGraceTime),
	}
}

// Validate checks the config without side effects; errors name the field.
func (c Config) Validate() error {
	var errs []error
	if err := debugserver.CheckConfig(c.DebugAddress, c.DebugTLS); err != nil {
		errs = append(errs, err)
	}
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.ListenNetwork {
	case "unix":
		if c.ListenAddress == "" || !filepath.IsAbs(c.ListenAddress) {
			add("listen_address: must be an absolute socket path with listen_network unix (got %q)", c.ListenAddress)
		}
	case "tcp":
		host, _, err := net.SplitHostPort(c.ListenAddress)
		if err != nil {
			add("listen_address: want host:port with listen_network tcp (got %q)", c.ListenAddress)
		} else if ip := net.ParseIP(host); !c.InsecureRemoteListen && (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			add("listen_address: %q is not a loopback address; the Garden API has no authentication (set insecure_remote_listen to serve it anyway)", c.ListenAddress)
		}
	default:
		add("listen_network: must be \"unix\" or \"tcp\" (got %q)", c.ListenNetwork)
	}
	switch c.Backend {
	case BackendRunc:
		errs = append(errs, c.Runc.Validate("runc")...)
	case BackendProcess:
		errs = append(errs, c.Process.Validate("process")...)
	default:
		add("backend: must be %q or %q (got %q)", BackendRunc, BackendProcess, c.Backend)
	}
	if c.DefaultGraceTime.D() < 0 {
		add("default_grace_time: must be >= 0 (got %s)", c.DefaultGraceTime.D())
	}
	if c.GraceTime.D() <= 0 {
		add("grace_time: must be > 0 (got %s)", c.GraceTime.D())
	}
	if c.HealthCheckInterval.D() <= 0 {
		add("health_check_interval: must be > 0 (got %s)", c.HealthCheckInterval.D())
	}
	return errors.Join(errs...)
}

// Load reads a config file over the defaults (an empty path gives the defaults).
func Load(path string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}
