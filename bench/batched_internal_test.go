package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/internal/etcdtest"
)

// TestMeasureBatchedEtcd runs the batched measurement on a real etcd: every
// transaction carries KeysPerTxn guarded puts that all succeed, and the
// keys are gone afterwards.
func TestMeasureBatchedEtcd(t *testing.T) {
	srv := etcdtest.StartWith(t, etcdtest.Options{MaxTxnOps: 1024})
	ctx := context.Background()
	res, err := measureBatchedEtcd(ctx, srv.Endpoints(), 2, 64, 100, 300*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, 2, res.Clients)
	require.Equal(t, 64, res.KeysPerTxn)
	require.Positive(t, res.Txns)
	require.Equal(t, res.Txns*64, res.Keys, "every nested guarded put succeeded")
	require.InDelta(t, float64(res.Keys)/res.Seconds, res.KeysPerSecond, 1e-6)
	require.Positive(t, res.LatencyP99Ms)

	cli := etcdtest.Client(t, srv)
	left, err := cli.Get(ctx, rawKeyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	require.Zero(t, left.Count)

	// A batch larger than the etcd's max-txn-ops is an error, not a rate.
	_, err = measureBatchedEtcd(ctx, srv.Endpoints(), 1, 2048, 10, 100*time.Millisecond)
	require.Error(t, err)
}

func TestBatchedRatio(t *testing.T) {
	ceiling, ratio := batchedRatio(1500, 90000, 3)
	require.InDelta(t, 30000, ceiling, 1e-9)
	require.InDelta(t, 0.05, ratio, 1e-9)
	ceiling, ratio = batchedRatio(1500, 0, 3)
	require.Zero(t, ceiling)
	require.Zero(t, ratio)
	_, ratio = batchedRatio(1500, 90000, 0)
	require.Zero(t, ratio)
}
