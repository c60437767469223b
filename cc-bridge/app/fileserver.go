package app

import (
	"errors"
	"net/http"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/cc-bridge/fileserver"
	"github.com/gavelhq/gavel/internal/config"
)

// file-server defaults.
const (
	DefaultFileServerListenAddress = "127.0.0.1:8080"
	DefaultFileServerDebugAddress  = "127.0.0.1:17015"
)

// FileServerConfig is the file-server's JSON config file.
type FileServerConfig struct {
	Common
	// StaticDirectory is served under /v1/static/; required.
	StaticDirectory string `json:"static_directory"`
}

// DefaultFileServerConfig returns the defaults.
func DefaultFileServerConfig() FileServerConfig {
	return FileServerConfig{Common: Common{ListenAddress: DefaultFileServerListenAddress, DebugAddress: DefaultFileServerDebugAddress, LogLevel: "info"}}
}

// Validate checks the config without side effects; errors name the field.
func (c FileServerConfig) Validate() error {
	var errs []error
	c.Common.validate(&errs)
	if c.StaticDirectory == "" {
		errs = append(errs, errors.New("static_directory: is required"))
	}
	return errors.Join(errs...)
}

// LoadFileServer reads a config file over the defaults.
func LoadFileServer(path string) (FileServerConfig, error) {
	cfg := DefaultFileServerConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// FileServer is the file-server daemon.
type FileServer struct {
	daemon
	cfg FileServerConfig
}

// NewFileServer builds the daemon from a validated config.
func NewFileServer(cfg FileServerConfig, logger lager.Logger) *FileServer {
	return &FileServer{daemon: newDaemon("file-server", cfg.Common, logger), cfg: cfg}
}

// Runner serves the static directory (after the debug server).
func (f *FileServer) Runner() ifrit.Runner {
	return f.members(f.serve(func() (http.Handler, error) { return fileserver.Handler(f.cfg.StaticDirectory) }))
}
