package bulker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/nsync/bulker"
	"github.com/gavelhq/gavel/nsync/nsynctest"
)

// BenchmarkPass10kApps1PercentStale times one bulker pass over 10,000 apps
// of which 100 are stale (the first pass, which desires them all, is setup).
func BenchmarkPass10kApps1PercentStale(b *testing.B) {
	const n, stale = 10_000, 100
	bbs := nsynctest.StartBBS(b, nil)
	cc := nsynctest.NewController()
	defer cc.Close()
	for i := range n {
		cc.SetApp(app(fmt.Sprintf("app-%05d", i), 1, "e0"))
	}
	bk := bulker.New(bulker.Config{ControllerURL: cc.URL(), ControllerUser: cc.User, ControllerPassword: cc.Password,
		PageSize: 500, Workers: 50, DomainTTL: time.Minute, Recipe: recipeConfig()},
		bbs.Client, bulker.NewMetrics(prometheus.NewRegistry()), lager.NewLogger("bulker"))
	res, err := bk.SyncApps(context.Background())
	require.NoError(b, err)
	require.Len(b, res.Desired, n)
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		for i := range stale {
			cc.SetApp(app(fmt.Sprintf("app-%05d", i*(n/stale)), 2, fmt.Sprintf("e%d", it+1)))
		}
		b.StartTimer()
		res, err := bk.SyncApps(context.Background())
		require.NoError(b, err)
		require.Len(b, res.Updated, stale)
	}
}
