package locket_test

import (
	"context"
	"os"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/locket"
	"github.com/gavelhq/gavel/locket/consultest"
)

// The mirror copies presences and locks held in Consul into etcd, follows
// changes with blocking queries, deletes copies of records that are gone,
// and on start removes what a predecessor left behind.
func TestMirrorCopiesConsulRecordsIntoEtcd(t *testing.T) {
	d := consultest.New(t)
	b := consulBackend(t, d, 0)
	etcd := etcdtest.Shared(t)
	prefix := etcdtest.Prefix(t)
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	stale := locket.PresenceKey(prefix, "gone-cell")
	_, err := etcd.Put(c, stale, "left by a previous mirror")
	require.NoError(t, err)
	cell, err := b.Acquire(c, locket.AcquireRequest{Key: locket.PresenceKey(prefix, "cell-1"), Value: []byte("p1"), TTL: consulTTL})
	require.NoError(t, err)
	lock, err := b.Acquire(c, locket.AcquireRequest{Key: locket.LockKey(prefix, "auctioneer"), Value: []byte("lock"), TTL: consulTTL})
	require.NoError(t, err)

	m := ifrit.Invoke(locket.NewMirror(locket.MirrorOptions{Consul: b, Etcd: etcd, KeyPrefix: prefix, Logger: lager.NewLogger("mirror")}))
	defer func() {
		m.Signal(os.Interrupt)
		require.NoError(t, <-m.Wait())
	}()

	etcdKeys := func(p string) map[string]string {
		resp, err := etcd.Get(c, p, clientv3.WithPrefix())
		require.NoError(t, err)
		out := map[string]string{}
		for _, kv := range resp.Kvs {
			out[string(kv.Key)] = string(kv.Value)
		}
		return out
	}
	// Ready means both prefixes were copied once.
	require.Equal(t, map[string]string{locket.PresenceKey(prefix, "cell-1"): "p1"}, etcdKeys(locket.PresencePrefix(prefix)))
	require.Equal(t, map[string]string{locket.LockKey(prefix, "auctioneer"): "lock"}, etcdKeys(locket.LockPrefix(prefix)))

	cell2, err := b.Acquire(c, locket.AcquireRequest{Key: locket.PresenceKey(prefix, "cell-2"), Value: []byte("p2"), TTL: consulTTL})
	require.NoError(t, err)
	require.NoError(t, cell.Release(c))
	require.Eventually(t, func() bool {
		got := etcdKeys(locket.PresencePrefix(prefix))
		return len(got) == 1 && got[locket.PresenceKey(prefix, "cell-2")] == "p2"
	}, 10*time.Second, 20*time.Millisecond, "cell-1 released and cell-2 registered show in etcd")
	require.NoError(t, cell2.Release(c))
	require.NoError(t, lock.Release(c))
}
