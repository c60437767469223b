package converger_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/converger"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/bbs/store"
	"github.com/gavelhq/gavel/internal/etcdtest"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// The benchmark fleet: N actual LRPs (N/10 desired LRPs of 10 instances, all
// RUNNING on 100 cells) and N/10 tasks (half RUNNING, a quarter PENDING, a
// quarter COMPLETED with a callback). A steady pass writes nothing and
// re-auctions the pending tasks; a lost-cell pass also marks the cell's 1%
// of instances SUSPECT and creates their replacements.
const (
	benchInstances = 10
	benchCells     = 100
)

type benchKV struct {
	key string
	val proto.Message
}

func benchFleet(actuals int, now time.Time, keys store.Keys) []benchKV {
	var kvs []benchKV
	for c := 0; c < benchCells; c++ {
		id := fmt.Sprintf("cell-%03d", c)
		kvs = append(kvs, benchKV{keys.Cell(id), &modelsv1.CellPresence{CellId: id, RepAddress: id + ":1800"}})
	}
	for g := 0; g < actuals/benchInstances; g++ {
		guid := fmt.Sprintf("pg-%06d", g)
		kvs = append(kvs, benchKV{keys.Schedule(guid), &modelsv1.DesiredLRPSchedulingInfo{
			Key: &modelsv1.DesiredLRPKey{ProcessGuid: guid, Domain: "d"}, Instances: benchInstances,
			Resource: &modelsv1.DesiredLRPResource{MemoryMb: 64, DiskMb: 64, RootFs: "preloaded:x"},
		}})
		for i := int32(0); i < benchInstances; i++ {
			cell := fmt.Sprintf("cell-%03d", (g*benchInstances+int(i))%benchCells)
			kvs = append(kvs, benchKV{keys.Actual(guid, i, models.Ordinary), benchRunning(guid, i, cell, now)})
		}
	}
	for n := 0; n < actuals/10; n++ {
		t := &modelsv1.Task{
			TaskGuid: fmt.Sprintf("task-%06d", n), Domain: "d", CreatedAt: now.UnixNano(), UpdatedAt: now.UnixNano(),
			Definition:      &modelsv1.TaskDefinition{RootFs: "docker:///x", MemoryMb: 16, CompletionCallbackUrl: "http://cc/cb"},
			ModificationTag: models.NewTag(),
		}
		switch n % 4 {
		case 0, 1:
			t.State, t.CellId = models.TaskRunning, fmt.Sprintf("cell-%03d", n%benchCells)
		case 2:
			t.State = models.TaskPending
		case 3:
			t.State, t.FirstCompletedAt = models.TaskCompleted, now.UnixNano()
		}
		kvs = append(kvs, benchKV{keys.Task(t.GetTaskGuid()), t})
	}
	return kvs
}

func benchRunning(guid string, i int32, cell string, now time.Time) *modelsv1.ActualLRP {
	return &modelsv1.ActualLRP{
		Key:         &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: i, Domain: "d"},
		InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("ig-%s-%d", guid, i), CellId: cell},
		NetInfo:     &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61000}}},
		State:       models.Running, Presence: models.Ordinary, Since: now.UnixNano(), ModificationTag: models.NewTag(),
	}
}

// load writes kvs straight to etcd, 128 keys per transaction, 8 at once.
func load(tb testing.TB, client *clientv3.Client, kvs []benchKV) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	sem := make(chan struct{}, 8)
	for start := 0; start < len(kvs); start += 128 {
		chunk := kvs[start:min(len(kvs), start+128)]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ops := make([]clientv3.Op, len(chunk))
			for i, kv := range chunk {
				b, err := proto.Marshal(kv.val)
				if err != nil {
					errs <- err
					return
				}
				ops[i] = clientv3.OpPut(kv.key, string(b))
			}
			if _, err := client.Txn(ctx).Then(ops...).Commit(); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	require.NoError(tb, <-errs)
}

type benchEnv struct {
	store *store.Store
	conv  *converger.Converger
	rec   *recorder
	fleet []benchKV
	keys  store.Keys
}

func newBenchEnv(b *testing.B, actuals int) *benchEnv {
	b.Helper()
	client := etcdtest.Shared(b)
	keys := store.NewKeys(etcdtest.Prefix(b))
	fleet := benchFleet(actuals, time.Now(), keys)
	load(b, client, fleet)
	ctx, cancel := context.WithCancel(context.Background())
	st := store.New(store.Options{Client: client, KeyPrefix: keys.Prefix(), Logger: lager.NewLogger("bench"),
		Committer: store.CommitterOptions{MaxOps: 128}})
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
		_, _ = client.Delete(context.Background(), keys.Prefix(), clientv3.WithPrefix())
	})
	require.NoError(b, st.WaitSynced(ctx))
	rec := &recorder{}
	conv, err := converger.New(converger.Options{Store: st, Auctions: rec, Cells: rec, Completions: rec, Config: converger.DefaultConfig(), Logger: lager.NewLogger("bench")})
	require.NoError(b, err)
	return &benchEnv{store: st, conv: conv, rec: rec, fleet: fleet, keys: keys}
}

func reportSteps(b *testing.B, snapshot, plan, apply time.Duration) {
	n := float64(b.N)
	b.ReportMetric(float64(snapshot.Microseconds())/1000/n, "snapshot-ms/op")
	b.ReportMetric(float64(plan.Microseconds())/1000/n, "plan-ms/op")
	b.ReportMetric(float64(apply.Microseconds())/1000/n, "apply-ms/op")
}

// BenchmarkPass is one steady convergence pass (snapshot, plan, apply) over a
// fleet in real etcd.
func BenchmarkPass(b *testing.B) {
	for _, n := range []int{10_000, 50_000, 100_000, 200_000} {
		b.Run(fmt.Sprintf("actuals=%d", n), func(b *testing.B) {
			if n > 100_000 && os.Getenv("GAVEL_BENCH_200K") == "" {
				b.Skip("set GAVEL_BENCH_200K=1 and run this size alone: the test etcd's 256 MB quota holds one 200k fleet")
			}
			env := newBenchEnv(b, n)
			ctx := context.Background()
			var snap, plan, apply time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := env.conv.Converge(ctx, "bench")
				if err != nil {
					b.Fatal(err)
				}
				if res.AuctionedTasks != n/40 || res.Applied != 0 {
					b.Fatalf("unexpected pass: %d tasks auctioned, %d changes", res.AuctionedTasks, res.Applied)
				}
				snap, plan, apply = snap+res.SnapshotTime, plan+res.PlanTime, apply+res.ApplyTime
				env.rec.take()
			}
			reportSteps(b, snap, plan, apply)
		})
	}
}

// BenchmarkPassLostCell is a pass right after one of the 100 cells vanished:
// 1% of the instances become SUSPECT with UNCLAIMED replacements (one guarded
// change each, committed in batches) and are auctioned, and the cell's
// running tasks fail. The fleet is restored between iterations, off the clock.
func BenchmarkPassLostCell(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("actuals=%d", n), func(b *testing.B) {
			env := newBenchEnv(b, n)
			client := etcdtest.Shared(b)
			ctx := context.Background()
			lost := env.keys.Cell("cell-007")
			var restore []benchKV
			var suspects []string
			for _, kv := range env.fleet {
				switch v := kv.val.(type) {
				case *modelsv1.ActualLRP:
					if v.GetInstanceKey().GetCellId() == "cell-007" {
						restore = append(restore, kv)
						suspects = append(suspects, env.keys.Actual(v.GetKey().GetProcessGuid(), v.GetKey().GetIndex(), models.Suspect))
					}
				case *modelsv1.Task:
					if v.GetCellId() == "cell-007" {
						restore = append(restore, kv)
					}
				case *modelsv1.CellPresence:
					if kv.key == lost {
						restore = append(restore, kv)
					}
				}
			}
			var snap, plan, apply time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				resp, err := client.Delete(ctx, lost)
				require.NoError(b, err)
				require.NoError(b, env.store.Cache().WaitForRevision(ctx, resp.Header.Revision))
				b.StartTimer()
				res, err := env.conv.Converge(ctx, "bench")
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Plan.Suspect) != n/benchCells || res.Applied < n/benchCells {
					b.Fatalf("unexpected pass: %d suspects, %d changes", len(res.Plan.Suspect), res.Applied)
				}
				snap, plan, apply = snap+res.SnapshotTime, plan+res.PlanTime, apply+res.ApplyTime
				b.StopTimer()
				env.rec.take()
				deleteKeys(b, client, suspects)
				load(b, client, restore)
				rev, err := client.Get(ctx, lost)
				require.NoError(b, err)
				require.NoError(b, env.store.Cache().WaitForRevision(ctx, rev.Header.Revision))
				b.StartTimer()
			}
			reportSteps(b, snap, plan, apply)
		})
	}
}

func deleteKeys(tb testing.TB, client *clientv3.Client, keys []string) {
	for start := 0; start < len(keys); start += 128 {
		var ops []clientv3.Op
		for _, k := range keys[start:min(len(keys), start+128)] {
			ops = append(ops, clientv3.OpDelete(k))
		}
		_, err := client.Txn(context.Background()).Then(ops...).Commit()
		require.NoError(tb, err)
	}
}

// BenchmarkPlan is the pure planner alone over an in-memory snapshot of the fleet.
func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{10_000, 25_000, 50_000, 100_000, 200_000} {
		b.Run(fmt.Sprintf("actuals=%d", n), func(b *testing.B) {
			now := time.Now()
			keys := store.NewKeys("")
			snap := &store.Snapshot{Desired: map[string]store.DesiredRow{}, Actuals: map[string][]store.ActualRow{},
				Cells: map[string]*modelsv1.CellPresence{}, Domains: map[string]*modelsv1.Domain{}}
			for i, kv := range benchFleet(n, now, keys) {
				switch v := kv.val.(type) {
				case *modelsv1.CellPresence:
					snap.Cells[v.GetCellId()] = v
				case *modelsv1.DesiredLRPSchedulingInfo:
					snap.Desired[v.GetKey().GetProcessGuid()] = store.DesiredRow{Info: v, Rev: int64(i)}
				case *modelsv1.ActualLRP:
					g := v.GetKey().GetProcessGuid()
					snap.Actuals[g] = append(snap.Actuals[g], store.ActualRow{ProcessGUID: g, Index: v.GetKey().GetIndex(), Presence: models.Ordinary, LRP: v, Rev: int64(i)})
				case *modelsv1.Task:
					snap.Tasks = append(snap.Tasks, store.TaskRow{Task: v, Rev: int64(i)})
				}
			}
			delete(snap.Cells, "cell-007")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p := converger.MakePlan(snap, now, converger.DefaultConfig())
				if len(p.Suspect) != n/benchCells {
					b.Fatalf("%d suspects", len(p.Suspect))
				}
			}
		})
	}
}
