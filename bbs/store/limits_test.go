package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/converger"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/store"
	"github.com/gavelhq/gavel/internal/etcdtest"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// These tests run against an etcd with its default transaction limits
// (--max-txn-ops 128) or a small --max-request-bytes, which is where a
// write that grows with its input used to fail.

const etcdDefaultMaxTxnOps = 128

// limited is a store on an etcd of its own with the given limits, the store
// told the same limits.
type limited struct {
	store  *store.Store
	client *clientv3.Client
	ctx    context.Context
}

func newLimited(t *testing.T, etcd etcdtest.Options, opts store.Options) *limited {
	t.Helper()
	srv := etcdtest.StartWith(t, etcd)
	client := etcdtest.Client(t, srv)
	opts.Client = client
	opts.KeyPrefix = etcdtest.Prefix(t)
	opts.Logger = lager.NewLogger("store")
	if opts.MaxTxnOps == 0 {
		opts.MaxTxnOps = int(etcd.MaxTxnOps)
	}
	if opts.MaxRequestBytes == 0 {
		opts.MaxRequestBytes = int(etcd.MaxRequestBytes)
	}
	s := store.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, s.WaitSynced(wctx))
	return &limited{store: s, client: client, ctx: ctx}
}

func lrp(guid string, instances int32) *modelsv1.DesiredLRP {
	return &modelsv1.DesiredLRP{
		ProcessGuid: guid, Domain: "d", RootFs: "preloaded:cflinuxfs4", Instances: instances, MemoryMb: 64, DiskMb: 64,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app"}}},
	}
}

func scale(t *testing.T, l *limited, guid string, n int32) *store.UpdateResult {
	t.Helper()
	res, err := l.store.UpdateDesiredLRP(l.ctx, guid, &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(n)})
	require.NoError(t, err)
	return res
}

// requireIndices checks that guid's ordinary rows are exactly indices 0..n-1.
func requireIndices(t *testing.T, l *limited, guid string, n int) {
	t.Helper()
	rows, _ := l.store.ListActualLRPs(store.ActualFilter{ProcessGUIDs: []string{guid}})
	require.Len(t, rows, n)
	for i, r := range rows {
		require.Equal(t, int32(i), r.GetKey().GetIndex())
		require.Equal(t, models.Ordinary, r.GetPresence())
	}
	// The cache agrees with etcd itself.
	resp, err := l.client.Get(l.ctx, l.store.Keys().ActualPrefix(guid), clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	require.Equal(t, int64(n), resp.Count)
}

func TestScaleWithEtcdsDefaultMaxTxnOps(t *testing.T) {
	l := newLimited(t, etcdtest.Options{MaxTxnOps: etcdDefaultMaxTxnOps}, store.Options{})

	t.Run("200 to 328 and 300 to 0", func(t *testing.T) {
		_, err := l.store.DesireLRP(l.ctx, lrp("pg-a", 200))
		require.NoError(t, err)
		requireIndices(t, l, "pg-a", 200)
		res := scale(t, l, "pg-a", 328)
		require.Len(t, res.NewIndices, 128, "every new index is reported for placement")
		requireIndices(t, l, "pg-a", 328)

		_, err = l.store.DesireLRP(l.ctx, lrp("pg-b", 300))
		require.NoError(t, err)
		requireIndices(t, l, "pg-b", 300)
		scale(t, l, "pg-b", 0)
		requireIndices(t, l, "pg-b", 0)
	})

	t.Run("1 to 20000 and back to 0", func(t *testing.T) {
		_, err := l.store.DesireLRP(l.ctx, lrp("pg-big", 1))
		require.NoError(t, err)
		start := time.Now()
		res := scale(t, l, "pg-big", 20000)
		up := time.Since(start)
		require.Len(t, res.NewIndices, 19999)
		require.Equal(t, int32(19999), res.NewIndices[len(res.NewIndices)-1])
		requireIndices(t, l, "pg-big", 20000)
		start = time.Now()
		scale(t, l, "pg-big", 0)
		down := time.Since(start)
		requireIndices(t, l, "pg-big", 0)
		t.Logf("max-txn-ops %d: scale 1->20000 took %s, 20000->0 took %s", etcdDefaultMaxTxnOps, up, down)
	})

	t.Run("desire 20000 and remove with running instances", func(t *testing.T) {
		_, err := l.store.DesireLRP(l.ctx, lrp("pg-rm", 20000))
		require.NoError(t, err)
		requireIndices(t, l, "pg-rm", 20000)
		for i := int32(0); i < 5; i++ {
			require.NoError(t, l.store.ClaimActualLRP(l.ctx, "pg-rm", i*1000, &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig", CellId: "c1"}))
		}
		start := time.Now()
		removed, stop, err := l.store.RemoveDesiredLRP(l.ctx, "pg-rm")
		require.NoError(t, err)
		t.Logf("max-txn-ops %d: remove of 20000 instances took %s", etcdDefaultMaxTxnOps, time.Since(start))
		require.Equal(t, int32(20000), removed.GetInstances())
		require.Len(t, stop, 5, "the claimed instances are left for their cells to stop")
		rows, _ := l.store.ListActualLRPs(store.ActualFilter{ProcessGUIDs: []string{"pg-rm"}})
		require.Len(t, rows, 5, "every unclaimed row is gone")
		_, err = l.store.GetDesiredLRP("pg-rm")
		require.ErrorIs(t, err, models.ErrNotFound)
	})

	t.Run("remove 127 unclaimed", func(t *testing.T) {
		_, err := l.store.DesireLRP(l.ctx, lrp("pg-127", 127))
		require.NoError(t, err)
		_, _, err = l.store.RemoveDesiredLRP(l.ctx, "pg-127")
		require.NoError(t, err)
		requireIndices(t, l, "pg-127", 0)
	})

	t.Run("concurrent requests share transactions within the limit", func(t *testing.T) {
		_, err := l.store.DesireLRP(l.ctx, lrp("pg-claims", 400))
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make(chan error, 400)
		for i := int32(0); i < 400; i++ {
			wg.Add(1)
			go func(i int32) {
				defer wg.Done()
				errs <- l.store.ClaimActualLRP(l.ctx, "pg-claims", i, &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig", CellId: "c1"})
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})
}

// A RECREATE evacuation of an LRP too large for one guard per instance
// guards the LRP's whole row prefix instead.
func TestRecreateEvacuationOfALargeLRP(t *testing.T) {
	l := newLimited(t, etcdtest.Options{MaxTxnOps: etcdDefaultMaxTxnOps}, store.Options{})
	d := lrp("pg", 300)
	d.UpdateStrategy = modelsv1.UpdateStrategy_UPDATE_STRATEGY_RECREATE
	_, err := l.store.DesireLRP(l.ctx, d)
	require.NoError(t, err)
	info := func(i int32) models.StartInfo {
		return models.StartInfo{
			InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-" + string(rune('a'+i%26)), CellId: "c1"},
			NetInfo:     &modelsv1.ActualLRPNetInfo{Address: "127.0.0.1", Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61000}}},
		}
	}
	for i := int32(0); i < 300; i++ {
		key := &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: i, Domain: "d"}
		require.NoError(t, l.store.StartActualLRP(l.ctx, key, info(i)))
	}
	key := &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 7, Domain: "d"}
	res, err := l.store.EvacuateRunningActualLRP(l.ctx, key, info(7))
	require.NoError(t, err)
	require.True(t, res.Auction, "every instance runs, so this one moves")
	row, err := l.store.GetActualLRP("pg", 7, models.Ordinary)
	require.NoError(t, err)
	require.Equal(t, models.Unclaimed, row.GetState())
}

// A single record bigger than etcd's --max-request-bytes can never commit:
// it fails at once with ErrTooLarge (InvalidArgument over gRPC), while one
// just under it commits, with its instances in follow-up transactions.
func TestRecordsNearTheByteLimit(t *testing.T) {
	const limit = 64 << 10
	l := newLimited(t, etcdtest.Options{MaxTxnOps: etcdDefaultMaxTxnOps, MaxRequestBytes: limit}, store.Options{})
	withEnv := func(guid string, bytes int) *modelsv1.DesiredLRP {
		d := lrp(guid, 500)
		d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "BIG", Value: strings.Repeat("x", bytes)}}
		return d
	}
	_, err := l.store.DesireLRP(l.ctx, withEnv("pg-near", limit-2500))
	require.NoError(t, err, "a record just under the limit commits")
	got, err := l.store.GetDesiredLRP("pg-near")
	require.NoError(t, err)
	require.Len(t, got.GetEnvironmentVariables()[0].GetValue(), limit-2500)
	requireIndices(t, l, "pg-near", 500)

	_, err = l.store.DesireLRP(l.ctx, withEnv("pg-over", limit+100))
	require.ErrorIs(t, err, models.ErrTooLarge)
	require.Equal(t, codes.InvalidArgument, models.Code(err))
	require.Contains(t, err.Error(), "max-request-bytes")
	_, err = l.store.GetDesiredLRP("pg-over")
	require.ErrorIs(t, err, models.ErrNotFound)
}

// A BBS told larger limits than its etcd has (a misconfiguration) still
// never answers Unavailable for a write etcd refuses as too large.
func TestEtcdRefusalsAreNotUnavailable(t *testing.T) {
	const limit = 32 << 10
	l := newLimited(t, etcdtest.Options{MaxTxnOps: 16, MaxRequestBytes: limit},
		store.Options{MaxTxnOps: 1000, MaxRequestBytes: 1 << 20})
	big := lrp("pg-bytes", 0)
	big.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "BIG", Value: strings.Repeat("x", limit+100)}}
	_, err := l.store.DesireLRP(l.ctx, big)
	require.ErrorIs(t, err, models.ErrTooLarge)
	require.False(t, errors.Is(err, models.ErrUnavailable))
	require.Equal(t, codes.InvalidArgument, models.Code(err))

	_, err = l.store.DesireLRP(l.ctx, lrp("pg-ops", 0))
	require.NoError(t, err)
	_, err = l.store.UpdateDesiredLRP(l.ctx, "pg-ops", &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(50)})
	require.ErrorIs(t, err, models.ErrTooLarge, "etcd's too many operations is not retryable")
	require.Equal(t, codes.InvalidArgument, models.Code(err))
	require.Contains(t, err.Error(), "max-txn-ops")
}

// fakes for a converger that only writes.
type noAuctions struct{}

func (noAuctions) RequestLRPs(...*auctioneerv1.LRPStartRequest)   {}
func (noAuctions) RequestTasks(...*auctioneerv1.TaskStartRequest) {}

type noCells struct{}

func (noCells) StopLRPInstance(context.Context, *modelsv1.CellPresence, *modelsv1.ActualLRPKey, *modelsv1.ActualLRPInstanceKey) error {
	return nil
}

type noCompletions struct{}

func (noCompletions) Submit(*modelsv1.Task) {}

func converge(t *testing.T, l *limited) *converger.Result {
	t.Helper()
	c, err := converger.New(converger.Options{
		Store: l.store, Auctions: noAuctions{}, Cells: noCells{}, Completions: noCompletions{},
		Config: converger.AcceleratedConfig(), Logger: lager.NewLogger("converger"),
	})
	require.NoError(t, err)
	res, err := c.Converge(l.ctx, converger.TriggerInterval)
	require.NoError(t, err)
	return res
}

var errCrash = errors.New("injected crash between two transactions")

// crashAfter makes the store's split writes stop after k follow-up
// transactions, as a crash of the BBS between two of them would.
func crashAfter(l *limited, k int) {
	n := 0
	store.SetAfterChunkHook(l.store, func() error {
		n++
		if n >= k {
			return errCrash
		}
		return nil
	})
}

// A split write interrupted midway leaves a state that one convergence
// pass completes: missing instances created, extra ones retired, orphans of
// a removed LRP removed (the latter two in a fresh domain, as in Diego).
func TestInterruptedSplitWritesAreCompletedByConvergence(t *testing.T) {
	l := newLimited(t, etcdtest.Options{MaxTxnOps: etcdDefaultMaxTxnOps}, store.Options{})
	require.NoError(t, l.store.UpsertDomain(l.ctx, "d", 0))

	t.Run("desire", func(t *testing.T) {
		crashAfter(l, 3)
		_, err := l.store.DesireLRP(l.ctx, lrp("pg-desire", 2000))
		require.NoError(t, err, "the desire itself is durable")
		rows, _ := l.store.ListActualLRPs(store.ActualFilter{ProcessGUIDs: []string{"pg-desire"}})
		require.Greater(t, len(rows), 0)
		require.Less(t, len(rows), 2000, "the crash stopped the write midway")
		store.SetAfterChunkHook(l.store, nil)
		converge(t, l)
		requireIndices(t, l, "pg-desire", 2000)
	})

	t.Run("scale up", func(t *testing.T) {
		_, err := l.store.DesireLRP(l.ctx, lrp("pg-up", 1))
		require.NoError(t, err)
		crashAfter(l, 2)
		res := scale(t, l, "pg-up", 3000)
		require.Less(t, len(res.NewIndices), 2999)
		sched, err := l.store.GetSchedulingInfo("pg-up")
		require.NoError(t, err)
		require.Equal(t, int32(3000), sched.GetInstances(), "the desired count committed first")
		store.SetAfterChunkHook(l.store, nil)
		converge(t, l)
		requireIndices(t, l, "pg-up", 3000)
	})

	t.Run("scale down", func(t *testing.T) {
		_, err := l.store.DesireLRP(l.ctx, lrp("pg-down", 3000))
		require.NoError(t, err)
		crashAfter(l, 2)
		scale(t, l, "pg-down", 10)
		rows, _ := l.store.ListActualLRPs(store.ActualFilter{ProcessGUIDs: []string{"pg-down"}})
		require.Greater(t, len(rows), 10, "the crash left extra rows")
		store.SetAfterChunkHook(l.store, nil)
		converge(t, l)
		requireIndices(t, l, "pg-down", 10)
	})

	t.Run("remove", func(t *testing.T) {
		_, err := l.store.DesireLRP(l.ctx, lrp("pg-rm", 3000))
		require.NoError(t, err)
		crashAfter(l, 2)
		_, _, err = l.store.RemoveDesiredLRP(l.ctx, "pg-rm")
		require.NoError(t, err)
		_, err = l.store.GetDesiredLRP("pg-rm")
		require.ErrorIs(t, err, models.ErrNotFound, "the desired LRP went first")
		rows, _ := l.store.ListActualLRPs(store.ActualFilter{ProcessGUIDs: []string{"pg-rm"}})
		require.NotEmpty(t, rows, "the crash left orphans")
		store.SetAfterChunkHook(l.store, nil)
		converge(t, l)
		requireIndices(t, l, "pg-rm", 0)
	})
}
