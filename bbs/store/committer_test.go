package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/internal/etcdtest"
)

// A mutation that only reads (guards) a key another mutation writes must not
// share its transaction: etcd evaluates every nested compare against the
// state before the transaction, so the guard would pass on a stale value.
func TestGuardOnAKeyAnotherRequestWritesIsHonoured(t *testing.T) {
	client := etcdtest.Shared(t)
	prefix := etcdtest.Prefix(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	put, err := client.Put(ctx, prefix+"shared", "v1")
	require.NoError(t, err)
	rev := put.Header.Revision

	c := NewCommitter(clientv3.RetryKVClient(client), CommitterOptions{Workers: 1, MaxOps: 16}, nil)
	writer := &mutation{}
	writer.guard(prefix+"shared", rev)
	writer.put(prefix+"shared", []byte("v2"))
	reader := &mutation{}
	reader.guard(prefix+"shared", rev) // reads the value the writer replaces
	reader.put(prefix+"derived", []byte("from v1"))

	// Queue both before the committer runs, so they would share a batch.
	results := make([]commitResult, 2)
	var wg sync.WaitGroup
	for i, m := range []*mutation{writer, reader} {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = c.Commit(ctx, m) }()
		require.Eventually(t, func() bool { return len(c.queue) == i+1 }, 5*time.Second, time.Millisecond)
	}
	go func() { _ = c.Run(ctx) }()
	wg.Wait()
	require.NoError(t, results[0].err)
	require.NoError(t, results[1].err)
	require.True(t, results[0].ok, "the writer's guard held")
	require.False(t, results[1].ok, "the reader's guard saw the writer's change")
	got, err := client.Get(ctx, prefix+"derived")
	require.NoError(t, err)
	require.Empty(t, got.Kvs, "nothing derived from the stale value was written")
}
