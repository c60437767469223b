package locket

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/hashicorp/consul/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WatchList calls f with every held record under prefix (keyed as [List]
// keys them) now and after each change, using Consul blocking queries,
// until ctx is done. A failed query is retried after a pause; f is not
// called for it. It returns ctx's error.
func (b *ConsulBackend) WatchList(ctx context.Context, prefix string, f func(map[string][]byte)) error {
	p := ConsulKey(prefix)
	var index uint64
	var last map[string][]byte
	for {
		pairs, meta, err := b.client.KV().List(p, (&api.QueryOptions{WaitIndex: index, WaitTime: b.waitTime}).WithContext(ctx))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			b.logger.Error("watch-list-failed", err, lager.Data{"prefix": p})
			index = 0
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(consulRetry):
			}
			continue
		}
		out := make(map[string][]byte, len(pairs))
		for _, pair := range pairs {
			if pair.Session != "" {
				out[pair.Key[len(p):]] = pair.Value
			}
		}
		// Consul may wake a query for a change elsewhere: compare.
		if last == nil || !maps.EqualFunc(out, last, func(a, b []byte) bool { return string(a) == string(b) }) {
			f(out)
			last = out
		}
		index = nextIndex(index, meta.LastIndex)
	}
}

// MirrorOptions configure a [Mirror].
type MirrorOptions struct {
	// Consul is where the records live.
	Consul *ConsulBackend
	// Etcd receives the copies.
	Etcd *clientv3.Client
	// KeyPrefix is the daemons' key prefix ("" means DefaultKeyPrefix).
	KeyPrefix string
	// Logger; default a logger with no sinks.
	Logger lager.Logger
}

// Mirror is an ifrit runner that copies the presences and locks held in
// Consul into etcd under the same keys (plain keys, no lease), and deletes
// the copies of records that are gone, so that a BBS whose cache watches
// etcd sees cells and the auctioneer's lock when the daemons keep them in
// Consul. Only the active BBS runs it; on start it reconciles the whole
// prefix, so a new active BBS corrects whatever its predecessor left.
type Mirror struct {
	opts MirrorOptions
}

// NewMirror returns a mirror runner.
func NewMirror(opts MirrorOptions) *Mirror {
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("locket")
	}
	return &Mirror{opts: opts}
}

// Run implements ifrit.Runner: it is ready once both prefixes were copied
// once, and stops on a signal.
func (m *Mirror) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if m.opts.Consul == nil || m.opts.Etcd == nil {
		return errors.New("locket: mirror needs a Consul backend and an etcd client")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prefixes := []string{PresencePrefix(m.opts.KeyPrefix), LockPrefix(m.opts.KeyPrefix)}
	first := make(chan string, len(prefixes))
	errc := make(chan error, len(prefixes))
	for _, prefix := range prefixes {
		go func() {
			once := false
			errc <- m.opts.Consul.WatchList(ctx, prefix, func(records map[string][]byte) {
				for {
					err := m.sync(ctx, prefix, records)
					if err == nil || ctx.Err() != nil {
						break
					}
					m.opts.Logger.Error("mirror-sync-failed", err, lager.Data{"prefix": prefix})
					select {
					case <-ctx.Done():
					case <-time.After(consulRetry):
					}
				}
				if !once {
					once = true
					first <- prefix
				}
			})
		}()
	}
	for range prefixes {
		select {
		case <-first:
		case sig := <-signals:
			m.opts.Logger.Info("mirror-stopped", lager.Data{"signal": sig.String()})
			return nil
		}
	}
	close(ready)
	<-signals
	return nil
}

// sync makes etcd's keys under prefix equal records.
func (m *Mirror) sync(ctx context.Context, prefix string, records map[string][]byte) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := m.opts.Etcd.Get(cctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("locket: mirror: listing %s in etcd: %w", prefix, err)
	}
	have := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		have[string(kv.Key)[len(prefix):]] = kv.Value
	}
	for name, value := range records {
		if v, ok := have[name]; ok && string(v) == string(value) {
			continue
		}
		if _, err := m.opts.Etcd.Put(cctx, prefix+name, string(value)); err != nil {
			return fmt.Errorf("locket: mirror: put %s%s: %w", prefix, name, err)
		}
	}
	for name := range have {
		if _, ok := records[name]; !ok {
			if _, err := m.opts.Etcd.Delete(cctx, prefix+name); err != nil {
				return fmt.Errorf("locket: mirror: delete %s%s: %w", prefix, name, err)
			}
		}
	}
	return nil
}
