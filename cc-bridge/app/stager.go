package app

import (
	"errors"
	"fmt"
	"net/http"
	"os"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"

	"github.com/gavelhq/gavel/bbs/client"
	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	"github.com/gavelhq/gavel/cc-bridge/stager"
	"github.com/gavelhq/gavel/internal/config"
)

// Stager defaults.
const (
	DefaultStagerListenAddress = "127.0.0.1:8888"
	DefaultStagerDebugAddress  = "127.0.0.1:17011"
	DefaultFileServerURL       = "http://127.0.0.1:8080"
	DefaultCCUploaderURL       = "http://127.0.0.1:9090"
	// DefaultLifecycleBundle is where gavel-lifecycle's bundle is served for
	// buildpack/cflinuxfs4 unless lifecycle_bundles says otherwise.
	DefaultLifecycleBundle = "gavel-lifecycle/gavel-lifecycle.tgz"
)

// StagerConfig is the stager's JSON config file.
type StagerConfig struct {
	Common
	BBSConn
	CCConn
	// StagerURL is this stager's URL as the BBS reaches it for task
	// callbacks (default http://<bound listen address>).
	StagerURL string `json:"stager_url"`
	// FileServerURL is where cells download lifecycle bundles (default http://127.0.0.1:8080).
	FileServerURL string `json:"file_server_url"`
	// CCUploaderURL is cc-uploader's URL as cells reach it (default http://127.0.0.1:9090).
	CCUploaderURL string `json:"cc_uploader_url"`
	// LifecycleBundles maps "<lifecycle>/<stack>" to a path under the file
	// server's /v1/static/ (default {"buildpack/cflinuxfs4": "gavel-lifecycle/gavel-lifecycle.tgz"}).
	LifecycleBundles map[string]string `json:"lifecycle_bundles"`
	// DefaultStagingTimeout applies to requests without a timeout (default 15m).
	DefaultStagingTimeout config.Duration `json:"default_staging_timeout"`
	// PrivilegedContainers stages in privileged containers (default false).
	PrivilegedContainers bool `json:"privileged_containers"`
}

// DefaultStagerConfig returns the defaults.
func DefaultStagerConfig() StagerConfig {
	return StagerConfig{
		Common:                Common{ListenAddress: DefaultStagerListenAddress, DebugAddress: DefaultStagerDebugAddress, LogLevel: "info"},
		BBSConn:               BBSConn{BBSAddresses: []string{DefaultBBSAddress}},
		FileServerURL:         DefaultFileServerURL,
		CCUploaderURL:         DefaultCCUploaderURL,
		LifecycleBundles:      map[string]string{"buildpack/cflinuxfs4": DefaultLifecycleBundle},
		DefaultStagingTimeout: config.Duration(stager.DefaultStagingTimeout),
	}
}

// Validate checks the config without side effects; errors name the field.
func (c StagerConfig) Validate() error {
	var errs []error
	c.Common.validate(&errs)
	c.BBSConn.validate(&errs)
	c.CCConn.validate(&errs, false)
	validURL(&errs, "file_server_url", c.FileServerURL)
	validURL(&errs, "cc_uploader_url", c.CCUploaderURL)
	if c.StagerURL != "" {
		validURL(&errs, "stager_url", c.StagerURL)
	}
	if len(c.LifecycleBundles) == 0 {
		errs = append(errs, errors.New("lifecycle_bundles: at least one is required"))
	}
	for k, v := range c.LifecycleBundles {
		if v == "" {
			errs = append(errs, fmt.Errorf("lifecycle_bundles[%q]: path is empty", k))
		}
	}
	positive(&errs, "default_staging_timeout", c.DefaultStagingTimeout)
	return errors.Join(errs...)
}

// LoadStager reads a config file over the defaults (an empty path gives the defaults).
func LoadStager(path string) (StagerConfig, error) {
	cfg := DefaultStagerConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// Stager is the stager daemon.
type Stager struct {
	daemon
	cfg StagerConfig
}

// NewStager builds the daemon from a validated config.
func NewStager(cfg StagerConfig, logger lager.Logger) *Stager {
	return &Stager{daemon: newDaemon("stager", cfg.Common, logger), cfg: cfg}
}

// Runner serves the staging API (after the debug server).
func (s *Stager) Runner() ifrit.Runner {
	var bbs *client.Client
	api := s.serve(func() (http.Handler, error) {
		var err error
		if bbs, err = s.cfg.bbsClient(s.logger); err != nil {
			return nil, err
		}
		cc, err := s.cfg.ccClient()
		if err != nil {
			return nil, err
		}
		callback := s.cfg.StagerURL
		if callback == "" {
			callback = s.URL()
		}
		st := stager.New(stager.Options{
			BBS: bbs, CCClient: cc, CCBaseURL: s.cfg.CCBaseURL, CCUsername: s.cfg.CCUsername, CCPassword: s.cfg.CCPassword,
			Recipe: stager.RecipeOptions{
				FileServerURL: s.cfg.FileServerURL, LifecycleBundles: s.cfg.LifecycleBundles, UploaderURL: s.cfg.CCUploaderURL,
				CallbackURL: callback, DefaultTimeout: s.cfg.DefaultStagingTimeout.D(), Privileged: s.cfg.PrivilegedContainers,
			},
			Registry: s.registry, Logger: s.logger,
		})
		s.logger.Info("stager-starting", lager.Data{"callback_url": callback, "bundles": s.cfg.LifecycleBundles, "docker": bm.ErrDockerUnsupported.Error()})
		return st.Handler(), nil
	})
	closeBBS := grouper.Member{Name: "bbs-client", Runner: ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		close(ready)
		<-signals
		if bbs != nil {
			_ = bbs.Close()
		}
		return nil
	})}
	return s.members(closeBBS, api)
}
