package tps_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/protobuf/proto"

	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	"github.com/gavelhq/gavel/cc-bridge/cctest"
	"github.com/gavelhq/gavel/cc-bridge/internal/bridgetest"
	"github.com/gavelhq/gavel/cc-bridge/tps"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

func desire(t *testing.T, b *bridgetest.BBS, guid string, instances int32) {
	_, err := b.Client.DesireLRP(t.Context(), &bbsv1.DesireLRPRequest{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: guid, Domain: tps.DefaultDomain, RootFs: "preloaded:cflinuxfs4", Instances: instances,
		MemoryMb: 64, DiskMb: 64, Ports: []uint32{8080},
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/true"}}},
	}})
	require.NoError(t, err)
}

func key(guid string, index int32) *modelsv1.ActualLRPKey {
	return &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: index, Domain: tps.DefaultDomain}
}

func ik(instance, cell string) *modelsv1.ActualLRPInstanceKey {
	return &modelsv1.ActualLRPInstanceKey{InstanceGuid: instance, CellId: cell}
}

// run plays a cell: claim and start index i of guid.
func run(t *testing.T, b *bridgetest.BBS, guid string, i int32, instance, cell string, hostPort uint32) {
	ctx := t.Context()
	_, err := b.Client.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: guid, Index: i, InstanceKey: ik(instance, cell)})
	require.NoError(t, err)
	_, err = b.Client.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: key(guid, i), InstanceKey: ik(instance, cell),
		NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: hostPort}}}})
	require.NoError(t, err)
}

func getJSON(t *testing.T, url string, into any) int {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.NoError(t, json.NewDecoder(resp.Body).Decode(into))
	return resp.StatusCode
}

func TestListener(t *testing.T) {
	b := bridgetest.StartBBS(t)
	desire(t, b, "web", 3)
	desire(t, b, "idle", 1)
	run(t, b, "web", 0, "inst-0", "cell-1", 61001)
	_, err := b.Client.ClaimActualLRP(t.Context(), &bbsv1.ClaimActualLRPRequest{ProcessGuid: "web", Index: 1, InstanceKey: ik("inst-1", "cell-1")})
	require.NoError(t, err)
	_, err = b.Client.FailActualLRP(t.Context(), &bbsv1.FailActualLRPRequest{ActualLrpKey: key("web", 2), ErrorMessage: "found no compatible cell"})
	require.NoError(t, err)

	l := tps.NewListener(tps.ListenerOptions{BBS: b.Client, MaxBulkGuids: 3})
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()

	var got []bm.LRPInstance
	require.Equal(t, http.StatusOK, getJSON(t, srv.URL+"/v1/actual_lrps/web", &got))
	require.Len(t, got, 3)
	require.Equal(t, []string{bm.StateRunning, bm.StateStarting, bm.StateDown}, []string{got[0].State, got[1].State, got[2].State})
	require.Equal(t, "inst-0", got[0].InstanceGUID)
	require.Equal(t, "10.0.0.1", got[0].Host)
	require.Equal(t, uint32(61001), got[0].Port)
	require.Equal(t, "found no compatible cell", got[2].Details)
	require.NotZero(t, got[0].Since)

	var bulk map[string][]bm.LRPInstance
	require.Equal(t, http.StatusOK, getJSON(t, srv.URL+"/v1/bulk_actual_lrp_status?guids=web,idle,absent", &bulk))
	require.Len(t, bulk["web"], 3)
	require.Len(t, bulk["idle"], 1)
	require.Equal(t, bm.StateStarting, bulk["idle"][0].State, "UNCLAIMED without a placement error")
	require.Contains(t, bulk, "absent")
	require.Empty(t, bulk["absent"])

	var e bm.ErrorResponse
	require.Equal(t, http.StatusBadRequest, getJSON(t, srv.URL+"/v1/bulk_actual_lrp_status?guids=a,b,c,d", &e))
	require.Contains(t, e.Error, "guids: at most 3")
	require.Equal(t, http.StatusBadRequest, getJSON(t, srv.URL+"/v1/bulk_actual_lrp_status?guids=a,b%20c", &e))
	require.Contains(t, e.Error, "guids[1]: must match")
	require.Equal(t, http.StatusBadRequest, getJSON(t, srv.URL+"/v1/bulk_actual_lrp_status", &e))

	// The cell is not registered here: stats say so per instance instead of failing.
	require.Equal(t, http.StatusOK, getJSON(t, srv.URL+"/v1/actual_lrps/web/stats", &got))
	require.Len(t, got, 3)
	require.NotNil(t, got[0].Stats)
	require.Contains(t, got[0].Stats.Unavailable, "cell cell-1 is not registered")
	require.Equal(t, "instance is STARTING", got[1].Stats.Unavailable)
}

func TestResolveAndState(t *testing.T) {
	running := func(p modelsv1.ActualLRPPresence, inst string) *modelsv1.ActualLRP {
		return &modelsv1.ActualLRP{Key: key("g", 0), InstanceKey: ik(inst, "c"), State: modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING, Presence: p}
	}
	unclaimed := &modelsv1.ActualLRP{Key: key("g", 0), State: modelsv1.ActualLRPState_ACTUAL_LRP_STATE_UNCLAIMED, Presence: modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY}
	evac := running(modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_EVACUATING, "old")
	ord := running(modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY, "new")
	require.Equal(t, "old", tps.Resolve([]*modelsv1.ActualLRP{unclaimed, evac})[0].GetInstanceKey().GetInstanceGuid(),
		"the running evacuating copy while its replacement is unclaimed")
	require.Equal(t, "new", tps.Resolve([]*modelsv1.ActualLRP{evac, ord})[0].GetInstanceKey().GetInstanceGuid(),
		"the running ordinary instance once it runs")
	require.Len(t, tps.Resolve([]*modelsv1.ActualLRP{evac, ord, proto.Clone(unclaimed).(*modelsv1.ActualLRP)}), 1)

	crashed := &modelsv1.ActualLRP{State: modelsv1.ActualLRPState_ACTUAL_LRP_STATE_CRASHED, Since: time.Now().Add(-time.Hour).UnixNano()}
	require.Equal(t, bm.StateCrashed, tps.StateOf(crashed))
	require.Equal(t, bm.StateUnknown, tps.StateOf(&modelsv1.ActualLRP{}))
	require.Zero(t, tps.Instances([]*modelsv1.ActualLRP{crashed}, time.Now())[0].Uptime, "a crashed instance has no uptime")
}

func TestReadinessChange(t *testing.T) {
	tr, fa := true, false
	with := func(r *bool) *modelsv1.ActualLRP { return &modelsv1.ActualLRP{Routable: r} }
	cases := []struct {
		name          string
		before, after *bool
		ready, change bool
	}{
		{"unset to true", nil, &tr, true, true},
		{"unset to false", nil, &fa, false, true},
		{"false to unset", &fa, nil, true, true},
		{"true to unset", &tr, nil, false, false},
		{"flip to false", &tr, &fa, false, true},
		{"flip to true", &fa, &tr, true, true},
		{"same", &tr, &tr, false, false},
		{"both unset", nil, nil, false, false},
	}
	for _, tc := range cases {
		ready, change := tps.ReadinessChange(with(tc.before), with(tc.after))
		require.Equal(t, tc.change, change, tc.name)
		require.Equal(t, tc.ready, ready, tc.name)
	}
}

func TestWatcherCallbacks(t *testing.T) {
	b := bridgetest.StartBBS(t)
	cc, err := cctest.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer cc.Close()
	w := tps.NewWatcher(tps.WatcherOptions{BBS: b.Client, CCBaseURL: cc.URL(), RetryDelay: 10 * time.Millisecond})
	proc := ifrit.Background(w)
	defer func() {
		proc.Signal(os.Interrupt)
		require.NoError(t, <-proc.Wait())
	}()
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		t.Fatal(err)
	}

	desire(t, b, "app", 2)
	run(t, b, "app", 0, "i-0", "cell-1", 61001)
	run(t, b, "app", 1, "i-1", "cell-1", 61002)
	ctx := t.Context()
	_, err = b.Client.CrashActualLRP(ctx, &bbsv1.CrashActualLRPRequest{ActualLrpKey: key("app", 0), InstanceKey: ik("i-0", "cell-1"), ErrorMessage: "Exited with status 137"})
	require.NoError(t, err)
	require.NoError(t, cc.Wait(10*time.Second, func() bool { return len(cc.Crashes("app")) > 0 }))
	crash := cc.Crashes("app")[0]
	require.Equal(t, bm.CrashedRequest{Instance: "i-0", Index: 0, CellID: "cell-1", Reason: bm.ReasonCrashed,
		ExitDescription: "Exited with status 137", CrashCount: 1, CrashTimestamp: crash.CrashTimestamp}, crash)
	require.NotZero(t, crash.CrashTimestamp)

	// Index 1's cell drains: its instance is evacuated, then removed once replaced.
	_, err = b.Client.EvacuateRunningActualLRP(ctx, &bbsv1.EvacuateRunningActualLRPRequest{ActualLrpKey: key("app", 1), InstanceKey: ik("i-1", "cell-1"),
		NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61002}}}})
	require.NoError(t, err)
	_, err = b.Client.RemoveEvacuatingActualLRP(ctx, &bbsv1.RemoveEvacuatingActualLRPRequest{ActualLrpKey: key("app", 1), InstanceKey: ik("i-1", "cell-1")})
	require.NoError(t, err)
	require.NoError(t, cc.Wait(10*time.Second, func() bool { return len(cc.Reschedulings("app")) > 0 }))
	require.Equal(t, bm.ReschedulingRequest{Instance: "i-1", Index: 1, CellID: "cell-1", Reason: bm.ReasonEvacuating}, cc.Reschedulings("app")[0])
	require.Len(t, cc.Crashes("app"), 1, "one crash, one callback")
	ready := cc.ReadinessChanges("app")
	require.NotEmpty(t, ready, "a start sets routable: unset → true is reported")
	require.True(t, ready[0].Ready)

	// Another domain's instances are not reported.
	_, err = b.Client.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: "other", Domain: "other", RootFs: "preloaded:cflinuxfs4", Instances: 1, MemoryMb: 1, DiskMb: 1,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/true"}}},
	}})
	require.NoError(t, err)
	otherKey := &modelsv1.ActualLRPKey{ProcessGuid: "other", Domain: "other"}
	_, err = b.Client.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "other", InstanceKey: ik("o-0", "cell-1")})
	require.NoError(t, err)
	_, err = b.Client.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: otherKey, InstanceKey: ik("o-0", "cell-1"), NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1"}})
	require.NoError(t, err)
	_, err = b.Client.CrashActualLRP(ctx, &bbsv1.CrashActualLRPRequest{ActualLrpKey: otherKey, InstanceKey: ik("o-0", "cell-1"), ErrorMessage: "x"})
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	require.Empty(t, cc.Crashes("other"))
}

func TestWatcherRetriesServerErrors(t *testing.T) {
	b := bridgetest.StartBBS(t)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/crashed") {
			return // readiness_changed of the start
		}
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	w := tps.NewWatcher(tps.WatcherOptions{BBS: b.Client, CCBaseURL: srv.URL, Workers: 1, RetryDelay: 10 * time.Millisecond})
	proc := ifrit.Invoke(w)
	desire(t, b, "app", 1)
	run(t, b, "app", 0, "i-0", "cell-1", 61001)
	_, err := b.Client.CrashActualLRP(context.Background(), &bbsv1.CrashActualLRPRequest{ActualLrpKey: key("app", 0), InstanceKey: ik("i-0", "cell-1"), ErrorMessage: "boom"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return calls.Load() >= 3 }, 10*time.Second, 20*time.Millisecond)
	proc.Signal(os.Interrupt)
	require.NoError(t, <-proc.Wait())
	require.Equal(t, int32(3), calls.Load(), "two 502s, then delivered")
}
