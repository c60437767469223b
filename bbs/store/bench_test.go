package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// BenchmarkDesireLRP desires one-instance LRPs from 64 concurrent clients
// (each desire is one transaction of desired + run + actual records, grouped
// with its neighbours by the committer).
func BenchmarkDesireLRP(b *testing.B) {
	f := newFixture(b)
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.store.DesireLRP(f.ctx, desired(fmt.Sprintf("pg-%d", n.Add(1)), 1)); err != nil {
				b.Error(err)
			}
		}
	})
	b.StopTimer()
	txns, muts := f.store.Committer().Stats()
	b.ReportMetric(float64(muts)/float64(txns), "requests/txn")
}

// BenchmarkClaimAndStart claims then starts instances from 64 concurrent cells' worth of callers.
func BenchmarkClaimAndStart(b *testing.B) {
	f := newFixture(b)
	const per = 1000
	lrps := b.N/per + 1
	for i := 0; i < lrps; i++ {
		if _, err := f.store.DesireLRP(f.ctx, desired(fmt.Sprintf("pg-%d", i), per)); err != nil {
			b.Fatal(err)
		}
	}
	t0, m0 := f.store.Committer().Stats()
	var next atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			guid, index := fmt.Sprintf("pg-%d", i/per), int32(i%per)
			cell := fmt.Sprintf("cell-%d", i%1000)
			k := &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("ig-%d", i), CellId: cell}
			if err := f.store.ClaimActualLRP(f.ctx, guid, index, k); err != nil {
				b.Error(err)
				return
			}
			key := &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: index, Domain: "d"}
			if err := f.store.StartActualLRP(f.ctx, key, models.StartInfo{InstanceKey: k, NetInfo: netInfo(uint32(61000 + i%1000))}); err != nil {
				b.Error(err)
			}
		}
	})
	b.StopTimer()
	t1, m1 := f.store.Committer().Stats()
	b.ReportMetric(float64(m1-m0)/float64(t1-t0), "requests/txn")
}

// loadRunning writes n RUNNING rows spread over cells directly into etcd
// (setup only: the lifecycle is measured above) and waits for the cache.
func loadRunning(b *testing.B, n, cells int) *fixture {
	f := newFixture(b)
	ctx := context.Background()
	ops := make([]clientv3.Op, 0, 1000)
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := f.client.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := 0; i < n; i++ {
		guid, index := fmt.Sprintf("pg-%05d", i/100), int32(i%100)
		row := &modelsv1.ActualLRP{
			Key:         &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: index, Domain: "cf-apps"},
			InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("ig-%d", i), CellId: fmt.Sprintf("cell-%04d", i%cells)},
			NetInfo:     netInfo(uint32(61000 + i%1000)), State: models.Running, Presence: models.Ordinary,
			Since: time.Now().UnixNano(), ModificationTag: models.NewTag(),
		}
		data, _ := proto.Marshal(row)
		ops = append(ops, clientv3.OpPut(f.store.Keys().Actual(guid, index, models.Ordinary), string(data)))
		if len(ops) == cap(ops) {
			flush()
		}
	}
	flush()
	resp, err := f.client.Get(ctx, "/")
	if err != nil {
		b.Fatal(err)
	}
	if err := f.store.Cache().WaitForRevision(ctx, resp.Header.Revision); err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkListActualLRPsByCell100k lists one cell's instances out of
// 100,000 on 1,000 cells, from the watch cache (what a rep's bulk sync asks).
func BenchmarkListActualLRPsByCell100k(b *testing.B) {
	f := loadRunning(b, 100_000, 1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rows, _ := f.store.ListActualLRPs(ActualFilter{CellID: fmt.Sprintf("cell-%04d", i%1000)})
		if len(rows) != 100 {
			b.Fatalf("got %d rows", len(rows))
		}
	}
}

// BenchmarkListAllActualLRPs100k lists all 100,000 instances from the watch cache.
func BenchmarkListAllActualLRPs100k(b *testing.B) {
	f := loadRunning(b, 100_000, 1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rows, _ := f.store.ListActualLRPs(ActualFilter{})
		if len(rows) != 100_000 {
			b.Fatalf("got %d rows", len(rows))
		}
	}
}

// BenchmarkSubscribedWrites desires LRPs of 100 instances and claims each
// instance while subscribers read every event, and reports the process's
// CPU (etcd, store and subscribers together) per instance: what each
// subscriber adds to the writes.
//
// The cell-subscribers case has 100 subscribers, each filtered to one of the
// 100 cells the instances are claimed on (as cell-local route emitters
// subscribe): each receives the desired events and its own cell's claims.
func BenchmarkSubscribedWrites(b *testing.B) {
	type setup struct {
		name        string
		subscribers int
		perCell     bool
	}
	for _, c := range []setup{{"subscribers=0", 0, false}, {"subscribers=1", 1, false}, {"subscribers=4", 4, false}, {"cell-subscribers=100", 100, true}} {
		subscribers := c.subscribers
		b.Run(c.name, func(b *testing.B) {
			f := newFixture(b)
			ctx, cancel := context.WithCancel(f.ctx)
			defer cancel()
			const per = 100
			lrps := b.N/per + 1
			want := lrps * (2*per + 1) // per LRP a desired event, per instance a created and a changed one
			if c.perCell {
				want = lrps * 2 // per LRP the desired event and one claim on the subscriber's cell
			}
			done := make(chan struct{}, subscribers)
			for i := 0; i < subscribers; i++ {
				filter := EventFilter{Kinds: AllEventKinds()}
				if c.perCell {
					filter.CellID = fmt.Sprintf("cell-%d", i)
				}
				events, errs := f.store.Subscribe(ctx, f.store.Cache().Revision(), filter)
				go func() {
					n := 0
					for range events {
						if n++; n == want {
							done <- struct{}{}
						}
					}
					select {
					case err := <-errs:
						b.Error(err)
					default:
					}
				}()
			}
			cpu0 := processCPU(b)
			b.ResetTimer()
			for i := 0; i < lrps; i++ {
				guid := fmt.Sprintf("pg-%d", i)
				if _, err := f.store.DesireLRP(f.ctx, desired(guid, per)); err != nil {
					b.Fatal(err)
				}
				var claims sync.WaitGroup
				for index := int32(0); index < per; index++ {
					claims.Go(func() {
						if err := f.store.ClaimActualLRP(f.ctx, guid, index, ik(fmt.Sprintf("cell-%d", index))); err != nil {
							b.Error(err)
						}
					})
				}
				claims.Wait()
			}
			for i := 0; i < subscribers; i++ {
				select {
				case <-done:
				case <-time.After(time.Minute):
					b.Fatal("a subscriber did not get every event")
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(lrps*per), "cpu-µs/instance")
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
