package locket

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"code.cloudfoundry.org/lager/v3"
	"github.com/hashicorp/consul/api"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/internal/config"
)

// Backend names for [Config].Backend.
const (
	// BackendEtcd keeps locks and presences in the daemon's etcd (default).
	BackendEtcd = "etcd"
	// BackendConsul keeps them in Consul (sessions and KV).
	BackendConsul = "consul"
)

// Config selects where a daemon keeps its locks and presences: the
// "locket" section of a daemon's JSON config. The zero value is etcd.
type Config struct {
	// Backend is "etcd" (default) or "consul".
	Backend string `json:"backend"`
	// Consul is the Consul agent to use when Backend is "consul".
	Consul ConsulConfig `json:"consul"`
}

// ConsulConfig says how to reach Consul.
type ConsulConfig struct {
	// Address is the agent's HTTP address, host:port or http(s)://host:port.
	Address string `json:"address"`
	// TokenFile, if set, holds the ACL token (surrounding whitespace is
	// trimmed).
	TokenFile string `json:"token_file"`
	// LockDelay is each session's lock-delay (default 0, none).
	LockDelay config.Duration `json:"lock_delay"`
}

// NeedsEtcd says whether the section keeps locks and presences in etcd, so
// a daemon that uses etcd for nothing else (rep, auctioneer, route emitter)
// needs etcd endpoints only then.
func (c Config) NeedsEtcd() bool { return c.Backend != BackendConsul }

// Store is a backend that is also a reader: what [Open] returns.
type Store interface {
	Backend
	Reader
}

// Validate checks the section; errors name the field and the rule.
func (c Config) Validate() error {
	var errs []error
	switch c.Backend {
	case "", BackendEtcd:
	case BackendConsul:
		if c.Consul.Address == "" {
			errs = append(errs, errors.New("locket.consul.address: is required when locket.backend is \"consul\""))
		} else if _, err := consulAddress(c.Consul.Address); err != nil {
			errs = append(errs, fmt.Errorf("locket.consul.address: %w", err))
		}
		if c.Consul.LockDelay < 0 {
			errs = append(errs, fmt.Errorf("locket.consul.lock_delay: must not be negative (got %s)", c.Consul.LockDelay.D()))
		}
	default:
		errs = append(errs, fmt.Errorf("locket.backend: must be %q or %q (got %q)", BackendEtcd, BackendConsul, c.Backend))
	}
	return errors.Join(errs...)
}

// consulAddress splits an address into scheme and host:port.
func consulAddress(addr string) (*url.URL, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("must be host:port or http(s)://host:port: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("must be host:port or http(s)://host:port (got %q)", addr)
	}
	return u, nil
}

// Open returns the backend cfg selects: etcd over etcdClient (which may be
// nil only when cfg selects Consul), or a Consul client. Open does no I/O
// beyond reading the token file.
func Open(cfg Config, etcdClient *clientv3.Client, logger lager.Logger) (Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Backend != BackendConsul {
		if etcdClient == nil {
			return nil, errors.New("locket: the etcd backend needs an etcd client")
		}
		return NewEtcdBackend(etcdClient, logger), nil
	}
	u, _ := consulAddress(cfg.Consul.Address)
	acfg := api.DefaultNonPooledConfig()
	acfg.Address, acfg.Scheme = u.Host, u.Scheme
	if cfg.Consul.TokenFile != "" {
		token, err := os.ReadFile(cfg.Consul.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("locket.consul.token_file: %w", err)
		}
		acfg.Token = strings.TrimSpace(string(token))
	}
	client, err := api.NewClient(acfg)
	if err != nil {
		return nil, fmt.Errorf("locket: consul client for %s: %w", cfg.Consul.Address, err)
	}
	return NewConsulBackend(client, ConsulOptions{LockDelay: cfg.Consul.LockDelay.D(), Logger: logger}), nil
}
