// Command gavel-etcd runs the BBS's embedded etcd (internal/etcdserver) as a
// process of its own, so that a BBS pointed at it as an external cluster and
// the etcd can be measured apart: gavel bench runs it by default to report
// etcd's CPU separately from the BBS's. Its JSON config holds the same
// embedded_etcd section as the BBS's, a debug_address serving etcd's
// Prometheus metrics and pprof, and a log_level. SIGTERM stops it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"
	"github.com/tedsuo/ifrit/sigmon"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/etcdserver"
	"github.com/gavelhq/gavel/internal/logging"
)

// Config is gavel-etcd's JSON config file.
type Config struct {
	// DebugAddress serves /metrics (etcd's own) and /debug/pprof; it must
	// be a loopback address (port 0 picks a free one). Empty: no debug server.
	DebugAddress string `json:"debug_address"`
	// LogLevel is the lager level of this command's own logs (default info).
	LogLevel string `json:"log_level"`
	// EmbeddedEtcd is the etcd, as in the BBS's config (data_dir required).
	EmbeddedEtcd etcdserver.Config `json:"embedded_etcd"`
}

// validate checks cfg; errors name the field.
func (c Config) validate() error {
	var errs []error
	if c.DebugAddress != "" {
		if err := debugserver.CheckLoopback(c.DebugAddress); err != nil {
			errs = append(errs, fmt.Errorf("debug_address: %w", err))
		}
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("log_level: %w", err))
	}
	if err := c.EmbeddedEtcd.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("embedded_etcd: %w", err))
	}
	return errors.Join(errs...)
}

func main() {
	configPath := flag.String("config", "", "path to the JSON config file")
	flag.Parse()

	cfg := Config{LogLevel: "info"}
	err := errors.New("-config is required")
	if *configPath != "" {
		err = config.Load(*configPath, &cfg)
	}
	if err == nil {
		err = cfg.validate()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gavel-etcd: config: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New("gavel-etcd", cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gavel-etcd: %v\n", err)
		os.Exit(2)
	}
	var members grouper.Members
	if cfg.DebugAddress != "" {
		// etcd registers its metrics with the default registry.
		members = append(members, grouper.Member{Name: "debug", Runner: debugserver.New(cfg.DebugAddress, nil, logger)})
	}
	members = append(members, grouper.Member{Name: "etcd", Runner: etcdserver.New(cfg.EmbeddedEtcd, logger)})
	process := ifrit.Invoke(sigmon.New(grouper.NewOrdered(os.Interrupt, members)))
	if err := <-process.Wait(); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
