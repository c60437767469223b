package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/bbs/encryption"
	"github.com/gavelhq/gavel/internal/etcdtest"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

const secret = "hunter2-very-secret"

func keyring(t testing.TB, active string, labels ...string) *encryption.Keyring {
	t.Helper()
	keys := map[string][]byte{}
	for _, l := range labels {
		k := sha256.Sum256([]byte(l)) // one fixed key per label
		keys[l] = k[:]
	}
	kr, err := encryption.New(keys, active)
	require.NoError(t, err)
	return kr
}

// newStoreAt runs a store over prefix with keyring kr.
func newStoreAt(t testing.TB, prefix string, kr *encryption.Keyring) *fixture {
	t.Helper()
	client := etcdtest.Shared(t)
	s := New(Options{Client: client, KeyPrefix: prefix, Logger: lager.NewLogger("store"), Keyring: kr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, s.WaitSynced(wctx))
	return &fixture{store: s, client: client, ctx: ctx}
}

func secretLRP(guid string) *modelsv1.DesiredLRP {
	d := desired(guid, 2)
	d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "DB_PASSWORD", Value: secret}}
	return d
}

func secretTask() *modelsv1.TaskDefinition {
	return &modelsv1.TaskDefinition{RootFs: "docker:///busybox", EnvironmentVariables: []*modelsv1.EnvironmentVariable{{Name: "TOKEN", Value: secret}},
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/true"}}}}
}

// rawLabels reads every record under prefix straight from etcd and returns
// how many are under each key label, failing on any plaintext secret.
func rawLabels(t *testing.T, client *clientv3.Client, prefix string) map[string]int {
	t.Helper()
	resp, err := client.Get(context.Background(), prefix, clientv3.WithPrefix())
	require.NoError(t, err)
	keys := NewKeys(prefix)
	out := map[string]int{}
	for _, kv := range resp.Kvs {
		require.False(t, bytes.Contains(kv.Value, []byte(secret)), "plaintext secret in etcd at %s", kv.Key)
		if !sealedKind(keys.parse(string(kv.Key)).kind) {
			continue
		}
		label, _, err := encryption.Label(kv.Value)
		require.NoError(t, err)
		out[label]++
	}
	return out
}

func TestEncryptionLeavesNoPlaintextInEtcdAndReadsBack(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	f := newStoreAt(t, prefix, keyring(t, "k1", "k1"))
	_, err := f.store.DesireLRP(f.ctx, secretLRP("pg-secret"))
	require.NoError(t, err)
	_, err = f.store.DesireTask(f.ctx, "task-secret", "d", secretTask())
	require.NoError(t, err)
	require.NoError(t, f.store.UpsertDomain(f.ctx, "d", 0))

	labels := rawLabels(t, f.client, prefix)
	require.Equal(t, map[string]int{"k1": 6}, labels, "schedule, run, 2 instances, task and domain all under k1")

	// A second store (a restarted BBS) loads the sealed records.
	g := newStoreAt(t, prefix, keyring(t, "k1", "k1"))
	d, err := g.store.GetDesiredLRP("pg-secret")
	require.NoError(t, err)
	require.Equal(t, secret, d.GetEnvironmentVariables()[0].GetValue())
	task, err := g.store.GetTask("task-secret")
	require.NoError(t, err)
	require.Equal(t, secret, task.GetDefinition().GetEnvironmentVariables()[0].GetValue())
}

func TestPlaintextRecordsReadWhenEncryptionIsTurnedOn(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	f := newStoreAt(t, prefix, nil)
	_, err := f.store.DesireLRP(f.ctx, desired("pg-plain", 1))
	require.NoError(t, err)
	g := newStoreAt(t, prefix, keyring(t, "k1", "k1"))
	_, err = g.store.GetDesiredLRP("pg-plain")
	require.NoError(t, err)
	require.Empty(t, g.store.Cache().Undecodable())
}

func TestMissingKeyIsAnErrorNamingTheLabel(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	f := newStoreAt(t, prefix, keyring(t, "gone-key", "gone-key"))
	_, err := f.store.DesireLRP(f.ctx, secretLRP("pg-lost"))
	require.NoError(t, err)
	_, err = f.store.DesireTask(f.ctx, "task-lost", "d", secretTask())
	require.NoError(t, err)

	g := newStoreAt(t, prefix, keyring(t, "other", "other"))
	_, err = g.store.GetDesiredLRP("pg-lost")
	require.Error(t, err)
	require.Contains(t, err.Error(), `"gone-key"`)
	_, err = g.store.GetTask("task-lost")
	require.ErrorIs(t, err, encryption.ErrMissingKey)
	require.Contains(t, err.Error(), `"gone-key"`)
	bad := g.store.Cache().Undecodable()
	require.Len(t, bad, 5, "every record under the missing key is kept and counted, none dropped silently")
	for k, e := range bad {
		require.Contains(t, e.Error(), `"gone-key"`, k)
	}
	// Re-encryption cannot rewrite them and says which label is missing.
	err = g.store.Reencrypt(g.ctx, 2)
	require.Error(t, err)
	require.Contains(t, err.Error(), "gone-key")
	require.EqualValues(t, 5, g.store.ReencryptStats().Failed())
	require.EqualValues(t, 5, g.store.ReencryptStats().Remaining(), "the records left under the missing key")
}

func TestKeyRotationUnderWriteLoadLosesNothing(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	f := newStoreAt(t, prefix, keyring(t, "old", "old"))
	const n = 40
	for i := range n {
		_, err := f.store.DesireLRP(f.ctx, secretLRP(fmt.Sprintf("pg-%02d", i)))
		require.NoError(t, err)
		_, err = f.store.DesireTask(f.ctx, fmt.Sprintf("task-%02d", i), "d", secretTask())
		require.NoError(t, err)
	}
	require.Equal(t, map[string]int{"old": n * 5}, rawLabels(t, f.client, prefix))

	// A new BBS with both keys and "new" active takes over while writers
	// keep creating tasks and changing desired LRPs.
	g := newStoreAt(t, prefix, keyring(t, "new", "old", "new"))
	ctx, cancel := context.WithCancel(g.ctx)
	var wg sync.WaitGroup
	var written atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := g.store.DesireTask(ctx, fmt.Sprintf("load-%03d", i), "d", secretTask()); err == nil {
				written.Add(1)
			}
			inst := int32(2 + i%2)
			_, _ = g.store.UpdateDesiredLRP(ctx, fmt.Sprintf("pg-%02d", i%n), &modelsv1.DesiredLRPUpdate{Instances: &inst})
		}
	}()
	// A first pass stops after one page, as a crash would; the second resumes.
	pctx, pcancel := context.WithCancel(g.ctx)
	var pages atomic.Int32
	g.store.hooks.afterReencryptPage = func() {
		if pages.Add(1) == 1 {
			pcancel()
		}
	}
	require.Error(t, g.store.Reencrypt(pctx, 16))
	g.store.hooks.afterReencryptPage = nil
	require.Greater(t, g.store.ReencryptStats().Remaining(), int64(n*5/2), "the interrupted pass counted the whole remainder")
	ck, err := g.client.Get(g.ctx, prefix+reencryptCheckpoint)
	require.NoError(t, err)
	require.Len(t, ck.Kvs, 1)
	require.Contains(t, string(ck.Kvs[0].Value), `"label":"new","after":"`+prefix, "the interrupted pass left a checkpoint to resume from")
	require.NoError(t, g.store.Reencrypt(g.ctx, 16))
	cancel()
	wg.Wait()
	require.Positive(t, written.Load())
	require.Positive(t, g.store.ReencryptStats().Reencrypted())
	require.Zero(t, g.store.ReencryptStats().Remaining())

	labels := rawLabels(t, g.client, prefix)
	require.Equal(t, []string{"new"}, keysOf(labels), "every record ends under the new label")
	for i := range n {
		_, err := g.store.GetDesiredLRP(fmt.Sprintf("pg-%02d", i))
		require.NoError(t, err)
		_, err = g.store.GetTask(fmt.Sprintf("task-%02d", i))
		require.NoError(t, err)
	}
	for i := range int(written.Load()) {
		_, err := g.store.GetTask(fmt.Sprintf("load-%03d", i))
		require.NoError(t, err)
	}
	// Only the new key is needed now.
	h := newStoreAt(t, prefix, keyring(t, "new", "new"))
	for k, e := range h.store.Cache().Undecodable() {
		t.Errorf("undecodable %s: %v", k, e)
	}
	// A finished pass is not repeated.
	before := h.store.ReencryptStats().Reencrypted()
	require.NoError(t, h.store.Reencrypt(h.ctx, 16))
	require.Equal(t, before, h.store.ReencryptStats().Reencrypted())
}

func keysOf(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestReencryptionSendsNoEvents: rewriting a record under another key changes
// nothing a subscriber can see, so it emits no event.
func TestReencryptionSendsNoEvents(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	f := newStoreAt(t, prefix, keyring(t, "old", "old"))
	_, err := f.store.DesireLRP(f.ctx, secretLRP("pg-quiet"))
	require.NoError(t, err)
	g := newStoreAt(t, prefix, keyring(t, "new", "old", "new"))
	ctx, cancel := context.WithCancel(g.ctx)
	defer cancel()
	events, _ := g.store.Subscribe(ctx, g.store.Cache().Revision(), EventFilter{Kinds: AllEventKinds()})
	require.NoError(t, g.store.Reencrypt(g.ctx, 16))
	require.Positive(t, g.store.ReencryptStats().Reencrypted())
	// A real change afterwards is the first event the subscriber sees.
	_, err = g.store.DesireTask(g.ctx, "after", "d", secretTask())
	require.NoError(t, err)
	got := collect(t, events, 1)
	require.Equal(t, "after", got[0].GetTaskCreated().GetTask().GetTaskGuid(), "first event: %v", got[0])
}
