package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/bbstest"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

// testConfig is a BBS on the shared etcd under the test's own prefix.
func testConfig(t *testing.T, prefix, id string) Config {
	cfg := DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.InstanceID = id
	cfg.KeyPrefix = prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.LockTTL = config.Duration(2 * time.Second)
	cfg.LockRetryInterval = config.Duration(200 * time.Millisecond)
	require.NoError(t, cfg.Validate())
	return cfg
}

// startBBS runs a BBS in this process until the test ends.
func startBBS(t *testing.T, cfg Config) *BBS {
	t.Helper()
	b := New(cfg, lager.NewLogger("bbs"))
	proc := ifrit.Background(b.Runner())
	t.Cleanup(func() {
		proc.Signal(os.Interrupt)
		select {
		case <-proc.Wait():
		case <-time.After(20 * time.Second):
			t.Error("bbs did not stop")
		}
	})
	select {
	case <-b.ready:
	case err := <-proc.Wait():
		t.Fatalf("bbs exited: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("bbs did not start")
	}
	return b
}

func dial(t *testing.T, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Addresses: addrs})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func waitActive(t *testing.T, b *BBS) {
	t.Helper()
	require.Eventually(t, b.Held, 10*time.Second, 20*time.Millisecond, "bbs never took the lock")
}

func lrp(guid string, instances int32) *modelsv1.DesiredLRP {
	return &modelsv1.DesiredLRP{
		ProcessGuid: guid, Domain: "d", RootFs: "preloaded:cflinuxfs4", Instances: instances, MemoryMb: 128, DiskMb: 256,
		PlacementTags: []string{"blue"},
		Action:        &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app"}}},
	}
}

func TestWorkIsSentToTheActiveAuctioneer(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	rec := bbstest.StartAuctioneer(t, prefix)
	b := startBBS(t, testConfig(t, prefix, "bbs-1"))
	waitActive(t, b)
	c := dial(t, b.Addr())
	ctx := context.Background()

	_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg-1", 3)})
	require.NoError(t, err)
	_, err = c.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: "t-1", Domain: "d", Definition: &modelsv1.TaskDefinition{
		RootFs: "docker:///busybox", MemoryMb: 10, Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/true"}}},
	}})
	require.NoError(t, err)

	require.Eventually(t, func() bool { l, tk := rec.Snapshot(); return len(l) == 1 && len(tk) == 1 }, 10*time.Second, 20*time.Millisecond)
	lrps, tasks := rec.Snapshot()
	require.Equal(t, "pg-1", lrps[0].GetProcessGuid())
	require.Equal(t, []int32{0, 1, 2}, lrps[0].GetIndices())
	require.Equal(t, int32(128), lrps[0].GetResource().GetMemoryMb())
	require.Equal(t, "preloaded:cflinuxfs4", lrps[0].GetPlacementConstraint().GetRootFs())
	require.Equal(t, []string{"blue"}, lrps[0].GetPlacementConstraint().GetPlacementTags())
	require.Equal(t, "t-1", tasks[0].GetTaskGuid())
	got, err := c.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: "pg-1"})
	require.NoError(t, err)
	require.Equal(t, got.GetDesiredLrp().GetModificationTag().GetEpoch(), lrps[0].GetDesiredEpoch(), "the request names the run info version a cell may run before claiming")
	require.Equal(t, got.GetRunInfoRevision(), lrps[0].GetRunInfoRevision())
	require.Positive(t, lrps[0].GetRunInfoRevision())

	// A crash that restarts at once asks for that index again.
	ik := &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig", CellId: "c1"}
	key := &modelsv1.ActualLRPKey{ProcessGuid: "pg-1", Index: 2, Domain: "d"}
	_, err = c.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "pg-1", Index: 2, InstanceKey: ik})
	require.NoError(t, err)
	_, err = c.CrashActualLRP(ctx, &bbsv1.CrashActualLRPRequest{ActualLrpKey: key, InstanceKey: ik, ErrorMessage: "exit 1"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { l, _ := rec.Snapshot(); return len(l) == 2 }, 10*time.Second, 20*time.Millisecond)
	lrps, _ = rec.Snapshot()
	require.Equal(t, []int32{2}, lrps[1].GetIndices())

	// Scaling up asks for the new indices only.
	_, err = c.UpdateDesiredLRP(ctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: "pg-1", Update: &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(5)}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { l, _ := rec.Snapshot(); return len(l) == 3 }, 10*time.Second, 20*time.Millisecond)
	lrps, _ = rec.Snapshot()
	require.Equal(t, []int32{3, 4}, lrps[2].GetIndices())
}

func TestWithNoAuctioneerWorkWaits(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	b := startBBS(t, testConfig(t, prefix, "bbs-1"))
	waitActive(t, b)
	c := dial(t, b.Addr())
	_, err := c.DesireLRP(context.Background(), &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg-1", 2)})
	require.NoError(t, err, "the desire succeeds without an auctioneer")
	resp, err := c.ListActualLRPs(context.Background(), &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{"pg-1"}})
	require.NoError(t, err)
	require.Len(t, resp.GetActualLrps(), 2)
	for _, a := range resp.GetActualLrps() {
		require.Equal(t, models.Unclaimed, a.GetState(), "the instances wait for convergence to ask again")
	}
}

func TestInvalidRequestsNameTheField(t *testing.T) {
	b := startBBS(t, testConfig(t, etcdtest.Prefix(t), "bbs-1"))
	waitActive(t, b)
	c := dial(t, b.Addr())
	ctx := context.Background()
	bad := lrp("pg", 1)
	bad.Instances = -1
	big := lrp("pg", 1)
	big.Annotation = strings.Repeat("a", 11*1024)
	cases := []struct {
		name  string
		call  func() error
		field string
	}{
		{"desire negative instances", func() error {
			_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: bad})
			return err
		}, "desired_lrp.instances"},
		{"desire big annotation", func() error {
			_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: big})
			return err
		}, "desired_lrp.annotation"},
		{"desire nothing", func() error { _, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{}); return err }, "desired_lrp"},
		{"update bad guid", func() error {
			_, err := c.UpdateDesiredLRP(ctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: "a b", Update: &modelsv1.DesiredLRPUpdate{}})
			return err
		}, "process_guid"},
		{"claim without instance", func() error {
			_, err := c.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "pg", Index: 0})
			return err
		}, "instance_key"},
		{"start without address", func() error {
			_, err := c.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg"}, InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "i", CellId: "c"}, NetInfo: &modelsv1.ActualLRPNetInfo{}})
			return err
		}, "net_info.address"},
		{"task without action", func() error {
			_, err := c.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: "t", Domain: "d", Definition: &modelsv1.TaskDefinition{RootFs: "docker:///x"}})
			return err
		}, "definition.action"},
		{"domain negative ttl", func() error {
			_, err := c.UpsertDomain(ctx, &bbsv1.UpsertDomainRequest{Domain: "d", TtlSeconds: -1})
			return err
		}, "ttl_seconds"},
		{"list index without guid", func() error {
			_, err := c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{Index: proto.Int32(1)})
			return err
		}, "index"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			require.Equal(t, codes.InvalidArgument, status.Code(err), "got %v", err)
			require.ErrorIs(t, err, models.ErrInvalid)
			require.Contains(t, err.Error(), tc.field+":")
		})
	}
	// Nothing was written by the refused requests.
	resp, err := c.ListDesiredLRPs(ctx, &bbsv1.ListDesiredLRPsRequest{})
	require.NoError(t, err)
	require.Empty(t, resp.GetDesiredLrps())
}

func TestErrorCodesOverTheWire(t *testing.T) {
	b := startBBS(t, testConfig(t, etcdtest.Prefix(t), "bbs-1"))
	waitActive(t, b)
	c := dial(t, b.Addr())
	ctx := context.Background()
	_, err := c.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: "missing"})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.ErrorIs(t, err, models.ErrNotFound)
	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg", 1)})
	require.NoError(t, err)
	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg", 1)})
	require.Equal(t, codes.AlreadyExists, status.Code(err))
	_, err = c.FailActualLRP(ctx, &bbsv1.FailActualLRPRequest{ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg"}, ErrorMessage: "x"})
	require.NoError(t, err)
	ik := &modelsv1.ActualLRPInstanceKey{InstanceGuid: "i", CellId: "c"}
	_, err = c.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "pg", InstanceKey: ik})
	require.NoError(t, err)
	_, err = c.FailActualLRP(ctx, &bbsv1.FailActualLRPRequest{ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg"}, ErrorMessage: "x"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, err.Error(), "CLAIMED", "the error names the current state")

	res, err := c.BatchClaimActualLRPs(ctx, &bbsv1.BatchClaimActualLRPsRequest{Claims: []*bbsv1.ClaimActualLRPRequest{
		{ProcessGuid: "pg", Index: 0, InstanceKey: ik},
		{ProcessGuid: "pg", Index: 7, InstanceKey: ik},
		{ProcessGuid: "pg", Index: 0, InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "other", CellId: "c2"}},
	}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), res.GetResults()[0].GetCode())
	require.Equal(t, int32(codes.NotFound), res.GetResults()[1].GetCode())
	require.Equal(t, int32(codes.FailedPrecondition), res.GetResults()[2].GetCode())
}

func TestPassiveReplicaRefusesWritesAndServesReads(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	active := startBBS(t, testConfig(t, prefix, "bbs-1"))
	waitActive(t, active)
	passive := startBBS(t, testConfig(t, prefix, "bbs-2"))
	require.False(t, passive.Held())

	ctx := context.Background()
	direct, err := client.New(client.Config{Addresses: []string{passive.Addr()}, Retries: 1, RetryDelay: time.Millisecond})
	require.NoError(t, err)
	defer direct.Close()
	_, err = direct.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg", 1)})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Contains(t, err.Error(), "passive")
	ping, err := direct.Ping(ctx, &bbsv1.PingRequest{})
	require.NoError(t, err)
	require.False(t, ping.GetAvailable())

	both := dial(t, passive.Addr(), active.Addr())
	for i := 0; i < 5; i++ {
		_, err = both.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg-"+string(rune('a'+i)), 1)})
		require.NoError(t, err, "the client finds the active replica")
	}
	require.Eventually(t, func() bool {
		resp, err := direct.ListDesiredLRPs(ctx, &bbsv1.ListDesiredLRPsRequest{})
		return err == nil && len(resp.GetDesiredLrps()) == 5
	}, 5*time.Second, 20*time.Millisecond, "the passive replica serves reads from its own cache")
}

func TestEventsOverGRPCResume(t *testing.T) {
	b := startBBS(t, testConfig(t, etcdtest.Prefix(t), "bbs-1"))
	waitActive(t, b)
	c := dial(t, b.Addr())
	ctx := context.Background()
	list, err := c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{})
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	stream, err := c.SubscribeEvents(sctx, &bbsv1.SubscribeEventsRequest{SinceRevision: list.GetRevision(), Kinds: []bbsv1.EventKind{bbsv1.EventKind_EVENT_KIND_ACTUAL_LRP}})
	require.NoError(t, err)
	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg", 2)})
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	require.NotNil(t, first.GetEvent().GetActualLrpInstanceCreated())
	cancel()

	resumed, err := c.SubscribeEvents(ctx, &bbsv1.SubscribeEventsRequest{SinceRevision: first.GetEvent().GetRevision() - 1, Kinds: []bbsv1.EventKind{bbsv1.EventKind_EVENT_KIND_ACTUAL_LRP}})
	require.NoError(t, err)
	var indices []int32
	for len(indices) < 2 {
		e, err := resumed.Recv()
		require.NoError(t, err)
		indices = append(indices, e.GetEvent().GetActualLrpInstanceCreated().GetActualLrp().GetKey().GetIndex())
	}
	require.ElementsMatch(t, []int32{0, 1}, indices, "resuming before the desire's revision replays both instances")

	_, err = c.SubscribeEvents(ctx, &bbsv1.SubscribeEventsRequest{SinceRevision: -1})
	require.NoError(t, err) // the error arrives on the first receive
}

func TestTaskCallbackRetriedThenTaskDeleted(t *testing.T) {
	var calls atomic.Int32
	var body map[string]any
	var mu sync.Mutex
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		data, _ := io.ReadAll(r.Body)
		mu.Lock()
		_ = json.Unmarshal(data, &body)
		mu.Unlock()
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer cb.Close()
	b := startBBS(t, testConfig(t, etcdtest.Prefix(t), "bbs-1"))
	waitActive(t, b)
	c := dial(t, b.Addr())
	ctx := context.Background()
	_, err := c.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: "t", Domain: "d", Definition: &modelsv1.TaskDefinition{
		RootFs: "docker:///x", CompletionCallbackUrl: cb.URL, Annotation: "note",
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/x"}}},
	}})
	require.NoError(t, err)
	_, err = c.StartTask(ctx, &bbsv1.StartTaskRequest{TaskGuid: "t", CellId: "c1"})
	require.NoError(t, err)
	_, err = c.CompleteTask(ctx, &bbsv1.CompleteTaskRequest{TaskGuid: "t", CellId: "c1", Result: "42"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := c.GetTask(ctx, &bbsv1.GetTaskRequest{TaskGuid: "t"})
		return status.Code(err) == codes.NotFound
	}, 15*time.Second, 50*time.Millisecond, "the task is deleted after a 200")
	require.Equal(t, int32(3), calls.Load())
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, "t", body["task_guid"])
	require.Equal(t, "42", body["result"])
	require.Equal(t, "note", body["annotation"])
}
