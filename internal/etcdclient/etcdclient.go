package etcdclient

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/tlsconfig"
)

const (
	// DefaultDialTimeout bounds the dial and the connectivity check when the
	// context has no deadline.
	DefaultDialTimeout = 5 * time.Second
	// MaxCallSendMsgSize is the largest request the client sends (64 MiB).
	MaxCallSendMsgSize = 64 << 20
	// MaxCallRecvMsgSize is the largest response the client accepts
	// (unlimited in practice).
	MaxCallRecvMsgSize = math.MaxInt32
)

// Config says how to reach etcd.
type Config struct {
	// Endpoints are etcd client URLs, e.g. "https://10.0.0.1:2379".
	Endpoints []string `json:"endpoints"`
	// TLS files; when enabled, the client verifies the servers against
	// CAFile and presents CertFile/KeyFile.
	TLS tlsconfig.Files `json:"tls"`
	// DialTimeout bounds the dial and the first check; default 5 s.
	DialTimeout config.Duration `json:"dial_timeout"`
	// Username and Password authenticate to an etcd with auth enabled
	// (etcd's user/password auth; use them with tls, the password is sent
	// to the server). Certificate auth needs only tls.
	Username string `json:"username,omitempty"`
	// Password is Username's password; it is never logged.
	Password string `json:"password,omitempty"`
}

// Dial connects to etcd and checks that the cluster answers a read within
// ctx's deadline (or DialTimeout when ctx has none). The caller closes the
// client. Errors name the endpoints.
func Dial(ctx context.Context, cfg Config) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdclient: no endpoints configured")
	}
	if cfg.Password != "" && cfg.Username == "" {
		return nil, errors.New("etcdclient: password: needs a username")
	}
	for _, ep := range cfg.Endpoints {
		if strings.HasPrefix(ep, "https://") && !cfg.TLS.Enabled() {
			return nil, fmt.Errorf("etcdclient: endpoint %s is https: tls.ca_file (and cert_file, key_file for client-certificate auth) is required", ep)
		}
	}
	timeout := cfg.DialTimeout.D()
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	if deadline, ok := ctx.Deadline(); ok {
		// ctx's deadline governs the dial too (with a user and password
		// the dial includes authenticating, a bcrypt check on the server).
		timeout = max(time.Until(deadline), time.Millisecond)
	}
	ccfg := clientv3.Config{
		Endpoints:          cfg.Endpoints,
		DialTimeout:        timeout,
		MaxCallSendMsgSize: MaxCallSendMsgSize,
		MaxCallRecvMsgSize: MaxCallRecvMsgSize,
		// Failures surface as returned errors; clientv3's own info logs
		// would only clutter the daemon's lager output.
		Logger:   zap.NewNop(),
		Context:  context.WithoutCancel(ctx),
		Username: cfg.Username,
		Password: cfg.Password,
	}
	if cfg.TLS.Enabled() {
		tlsCfg, err := cfg.TLS.Client("")
		if err != nil {
			return nil, fmt.Errorf("etcdclient: %w", err)
		}
		ccfg.TLS = tlsCfg
	}
	eps := strings.Join(cfg.Endpoints, ",")
	client, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("etcdclient: dialing %s: %w", eps, err)
	}

	checkCtx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		checkCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// A linearizable read needs a leader: it proves the cluster serves.
	if _, err := client.Get(checkCtx, "health"); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("etcdclient: etcd at %s does not answer: %w", eps, err)
	}
	return client, nil
}
