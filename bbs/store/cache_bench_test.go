package store

import (
	"fmt"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// lifecycleEvents builds the watch events of lrps × perLRP instances being
// claimed and then started, as the BBS writes them during a placement (the
// rows built by models.Claim and models.Start, in watch responses of batch
// events), with the UNCLAIMED rows they replace. rows[i] is the model of
// events[i].
func lifecycleEvents(tb testing.TB, keys Keys, lrps, perLRP int) (unclaimed, events []*clientv3.Event, rows []*modelsv1.ActualLRP) {
	tb.Helper()
	now := time.Unix(1_700_000_000, 0)
	rev := int64(1)
	ev := func(key string, row *modelsv1.ActualLRP) *clientv3.Event {
		data, err := proto.Marshal(row)
		if err != nil {
			tb.Fatal(err)
		}
		rev++
		return &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(key), Value: data, ModRevision: rev, CreateRevision: rev}}
	}
	var claims, starts []*clientv3.Event
	var claimRows, startRows []*modelsv1.ActualLRP
	for l := range lrps {
		guid := fmt.Sprintf("bench-%06d", l)
		for i := range perLRP {
			idx := int32(i)
			key := keys.Actual(guid, idx, models.Ordinary)
			akey := &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: idx, Domain: "bench"}
			row := &modelsv1.ActualLRP{Key: akey, State: models.Unclaimed, Presence: models.Ordinary, Since: now.UnixNano(), ModificationTag: models.NewTag()}
			unclaimed = append(unclaimed, ev(key, row))
			ik := &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("ig-%d-%d", l, i), CellId: fmt.Sprintf("cells-%02d-%d", l%4, i%25)}
			claimed, _, err := models.Claim(row, ik, now)
			if err != nil {
				tb.Fatal(err)
			}
			claims = append(claims, ev(key, claimed))
			claimRows = append(claimRows, claimed)
			running, _, err := models.Start(claimed, akey, models.StartInfo{InstanceKey: ik, NetInfo: netInfo(uint32(61000 + i))}, now)
			if err != nil {
				tb.Fatal(err)
			}
			starts = append(starts, ev(key, running))
			startRows = append(startRows, running)
		}
	}
	// Revisions follow the order the events are applied in.
	events = append(claims, starts...)
	for i, e := range append(unclaimed, events...) {
		e.Kv.ModRevision = int64(i + 2)
	}
	return unclaimed, events, append(claimRows, startRows...)
}

// BenchmarkCacheApplyLifecycle applies actual-LRP claim and start events to
// the watch cache, 128 events per watch response, as the watch does. One op
// is one event. "decode" is a record written by another process (or before
// the offer arrives): the cache decodes it; "own" is a record the store
// wrote and offered to the cache with its model.
func BenchmarkCacheApplyLifecycle(b *testing.B) {
	const batch = 128
	for _, mode := range []string{"decode", "own"} {
		b.Run(mode, func(b *testing.B) {
			keys := NewKeys("/gavel/v1/")
			c := newCache(nil, keys, lager.NewLogger("bench"), nil)
			unclaimed, events, rows := lifecycleEvents(b, keys, 100, 100)
			for i := 0; i < len(unclaimed); i += batch {
				c.applyResponse(unclaimed[i:min(i+batch, len(unclaimed))], false, 0)
			}
			// The store has each key as a string already.
			keyStrings := make([]string, len(events))
			for i, e := range events {
				keyStrings[i] = string(e.Kv.Key)
			}
			ws := make([]written, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				start := done % len(events)
				if start == 0 && done > 0 {
					// Each cycle replays the events at new revisions.
					b.StopTimer()
					for _, e := range events {
						e.Kv.ModRevision += int64(len(events))
					}
					b.StartTimer()
				}
				n := min(batch, b.N-done, len(events)-start)
				if mode == "own" {
					// One offer per request, as Store.apply makes.
					for i := range n {
						ws[i] = written{key: keyStrings[start+i], msg: rows[start+i]}
						c.offer(ws[i:i+1], events[start+i].Kv.ModRevision)
					}
				}
				c.applyResponse(events[start:start+n], false, 0)
				done += n
			}
			b.StopTimer()
			hits, decoded := c.OwnWriteStats()
			b.ReportMetric(float64(hits)/float64(hits+decoded), "own-share")
		})
	}
}
