package bench

import (
	"context"
	"strings"
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

// TestSVGShowsDesireProgressAndSeparateMarkers: the desired curve is drawn
// and every marker label gets its own line.
func TestSVGShowsDesireProgressAndSeparateMarkers(t *testing.T) {
	r := &Result{Setup: Setup{Instances: 100, Cells: 2}}
	r.Placement = Placement{AllRunning: true, Seconds: 9.5, DesireSeconds: 3}
	r.Recovery = &Recovery{KillAtSec: 9.6, KilledCells: 1, AllRunning: true, Seconds: 0.2}
	r.Timeline = []Point{{Sec: 0}, {Sec: 3, Desired: 100, Running: 40}, {Sec: 10, Desired: 100, Running: 100}}
	var b strings.Builder
	require.NoError(t, r.WriteSVG(&b))
	svg := b.String()
	require.Contains(t, svg, `class="desired"`)
	require.Contains(t, svg, "instances desired")
	require.Contains(t, svg, "all desired 3.0s")
	ys := map[string]bool{}
	for _, label := range []string{"all desired", "all running", "kill 1 cells", "recovered"} {
		i := strings.Index(svg, label)
		require.Positive(t, i, label)
		start := strings.LastIndex(svg[:i], `<text x="`)
		tag := svg[start:i]
		y := tag[strings.Index(tag, `y="`):]
		y = y[:strings.Index(y[3:], `"`)+4]
		require.False(t, ys[y], "%s shares its line %s with another marker", label, y)
		ys[y] = true
	}
}
