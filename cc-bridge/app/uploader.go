package app

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/cc-bridge/uploader"
	"github.com/gavelhq/gavel/internal/config"
)

// cc-uploader defaults.
const (
	DefaultUploaderListenAddress = "127.0.0.1:9090"
	DefaultUploaderDebugAddress  = "127.0.0.1:17014"
)

// UploaderConfig is cc-uploader's JSON config file.
type UploaderConfig struct {
	Common
	// CCUsername, CCPassword and CCTLS authenticate to the controller; when
	// cc_base_url is set, upload URIs must name its host (default: any host,
	// as Diego's cc-uploader).
	CCConn
	// JobPollingInterval is the wait between job polls (default 1s).
	JobPollingInterval config.Duration `json:"job_polling_interval"`
	// DefaultUploadTimeout bounds an upload and its job when the request gives none (default 5m).
	DefaultUploadTimeout config.Duration `json:"default_upload_timeout"`
}

// DefaultUploaderConfig returns the defaults.
func DefaultUploaderConfig() UploaderConfig {
	return UploaderConfig{
		Common:             Common{ListenAddress: DefaultUploaderListenAddress, DebugAddress: DefaultUploaderDebugAddress, LogLevel: "info"},
		JobPollingInterval: config.Duration(uploader.DefaultPollInterval), DefaultUploadTimeout: config.Duration(uploader.DefaultTimeout),
	}
}

// Validate checks the config without side effects; errors name the field.
func (c UploaderConfig) Validate() error {
	var errs []error
	c.Common.validate(&errs)
	c.CCConn.validate(&errs, false)
	positive(&errs, "job_polling_interval", c.JobPollingInterval)
	positive(&errs, "default_upload_timeout", c.DefaultUploadTimeout)
	if c.DefaultUploadTimeout.D() > uploader.MaxTimeout {
		errs = append(errs, errors.New("default_upload_timeout: at most 1h"))
	}
	return errors.Join(errs...)
}

// LoadUploader reads a config file over the defaults.
func LoadUploader(path string) (UploaderConfig, error) {
	cfg := DefaultUploaderConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// Uploader is the cc-uploader daemon.
type Uploader struct {
	daemon
	cfg UploaderConfig
}

// NewUploader builds the daemon from a validated config.
func NewUploader(cfg UploaderConfig, logger lager.Logger) *Uploader {
	return &Uploader{daemon: newDaemon("cc-uploader", cfg.Common, logger), cfg: cfg}
}

// Runner serves the upload API (after the debug server); a signal lets
// in-flight uploads finish first (up to ShutdownTimeout).
func (u *Uploader) Runner() ifrit.Runner {
	return u.members(u.serve(func() (http.Handler, error) {
		cc, err := u.cfg.ccClient()
		if err != nil {
			return nil, err
		}
		allowed := ""
		if u.cfg.CCBaseURL != "" {
			base, err := url.Parse(u.cfg.CCBaseURL)
			if err != nil {
				return nil, fmt.Errorf("cc_base_url: %w", err)
			}
			allowed = base.Host
		}
		return uploader.New(uploader.Options{
			AllowedHost: allowed,
			CCClient:    cc, PollInterval: u.cfg.JobPollingInterval.D(), DefaultTimeout: u.cfg.DefaultUploadTimeout.D(),
			CCUsername: u.cfg.CCUsername, CCPassword: u.cfg.CCPassword, Registry: u.registry, Logger: u.logger,
		}).Handler(), nil
	}))
}
