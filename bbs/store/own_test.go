package store

import (
	"context"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// An offered model is used only for the write it names (key and mod
// revision); any other event for that key is decoded from its value, and an
// offer for a revision the cache has passed is dropped, so nothing leaks.
func TestOfferedModelsMatchOnlyTheirWrite(t *testing.T) {
	keys := NewKeys("/gavel/v1/")
	c := newCache(nil, keys, lager.NewLogger("test"), nil)
	unclaimed, events, rows := lifecycleEvents(t, keys, 1, 3)
	c.applyResponse(unclaimed, false, 0)
	key := string(events[0].Kv.Key)
	id := c.keys.parse(key).actual

	// Offered at the event's revision: the cache keeps the very model.
	c.offer([]written{{key: key, msg: rows[0]}}, events[0].Kv.ModRevision)
	c.applyResponse(events[:1], false, 0)
	got := c.state.actuals[id].val
	assert.Same(t, rows[0], got, "the offered model is stored")
	hits, _ := c.OwnWriteStats()
	assert.EqualValues(t, 1, hits)
	assert.Empty(t, c.own, "the offer is consumed")

	// Another writer's write of the same key at another revision: the
	// offer (for a later revision) does not stand in for it.
	other := &modelsv1.ActualLRP{Key: got.GetKey(), State: models.Crashed, Presence: models.Ordinary, Since: 7}
	data, err := proto.Marshal(other)
	require.NoError(t, err)
	ev := *events[3]
	kv := *ev.Kv
	kv.Key, kv.Value = []byte(key), data
	ev.Kv = &kv
	c.offer([]written{{key: key, msg: rows[3]}}, kv.ModRevision+1)
	c.applyResponse(events[1:3], false, 0) // the other instances' claims
	c.applyResponse([]*clientv3.Event{&ev}, false, 0)
	got = c.state.actuals[id].val
	assert.NotSame(t, rows[3], got)
	assert.True(t, proto.Equal(other, got), "the other writer's value is decoded: %v", got)
	assert.Equal(t, models.Crashed, got.GetState())
	assert.NotContains(t, c.state.actualsByState[models.Claimed], id, "indices follow the decoded row")
	assert.Contains(t, c.state.actualsByState[models.Crashed], id)

	// An offer at or below the applied revision is dropped.
	c.offer([]written{{key: key, msg: rows[0]}}, kv.ModRevision)
	assert.Same(t, rows[3], c.own[key].msg, "the later offer stands, the stale one is dropped")
	// A stale offer the watch passes without its event goes away.
	c.offer([]written{{key: "/gavel/v1/nowhere", msg: rows[3]}}, kv.ModRevision+1)
	c.applyResponse(nil, true, kv.ModRevision+5)
	assert.Empty(t, c.own)
}

// Through the store: claims and starts are applied from the store's own
// models, and the cache holds exactly what etcd holds.
func TestOwnWritesAreNotDecodedBack(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(f.ctx, 20*time.Second)
	defer cancel()
	// An offer made after the watch already applied its event is dropped (the
	// event is decoded instead), so one write may miss; ten cannot all miss
	// unless offers are never used.
	const instances = 10
	_, err := f.store.DesireLRP(ctx, desired("own-1", instances))
	require.NoError(t, err)
	hits0, _ := f.store.Cache().OwnWriteStats()
	for i := range int32(instances) {
		k := &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-own", CellId: "cell-own"}
		k.InstanceGuid += string(rune('a' + i))
		require.NoError(t, f.store.ClaimActualLRP(ctx, "own-1", i, k))
		key := &modelsv1.ActualLRPKey{ProcessGuid: "own-1", Index: i, Domain: "d"}
		require.NoError(t, f.store.StartActualLRP(ctx, key, models.StartInfo{InstanceKey: k, NetInfo: netInfo(61000)}))
	}
	// The cache applies the writes from its watch: wait until it has seen
	// etcd's current revision before reading its counters and rows.
	now, err := f.client.Get(ctx, "/gavel-own-test-revision")
	require.NoError(t, err)
	require.NoError(t, f.store.Cache().WaitForRevision(ctx, now.Header.Revision))
	hits, _ := f.store.Cache().OwnWriteStats()
	assert.Positive(t, hits-hits0, "own writes taken from the store's models")
	for i := range int32(instances) {
		resp, err := f.client.Get(ctx, f.store.Keys().Actual("own-1", i, models.Ordinary))
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1)
		var inEtcd modelsv1.ActualLRP
		require.NoError(t, proto.Unmarshal(resp.Kvs[0].Value, &inEtcd))
		cached := f.row(t, "own-1", i)
		assert.True(t, proto.Equal(&inEtcd, cached), "index %d: cache %v, etcd %v", i, cached, &inEtcd)
		assert.Equal(t, models.Running, cached.GetState())
	}
}
