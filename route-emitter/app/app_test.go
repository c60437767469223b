package app_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	bbsapp "github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/route-emitter/app"
	"github.com/gavelhq/gavel/route-emitter/internal/natstest"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

// fixture is a BBS on the shared etcd, a NATS server and a recording router.
type fixture struct {
	prefix string
	bbs    *client.Client
	bbsAt  string
	nats   *natstest.Server
	router *natstest.Router
}

func newFixture(t *testing.T, users ...*server.User) *fixture {
	t.Helper()
	f := &fixture{prefix: etcdtest.Prefix(t)}
	cfg := bbsapp.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.InstanceID = "bbs-1"
	cfg.KeyPrefix = f.prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.LockTTL = config.Duration(2 * time.Second)
	cfg.LockRetryInterval = config.Duration(200 * time.Millisecond)
	cfg.Convergence.Interval = config.Duration(time.Hour) // the test plays the cells; no cell presences
	require.NoError(t, cfg.Validate())
	b := bbsapp.New(cfg, lager.NewLogger("bbs"))
	runUntilCleanup(t, "bbs", b.Runner())
	f.bbsAt = b.Addr()
	require.Eventually(t, b.Held, 10*time.Second, 20*time.Millisecond, "bbs never took the lock")
	c, err := client.New(client.Config{Addresses: []string{f.bbsAt}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	f.bbs = c
	f.nats = natstest.Start(t, users...)
	routerUser, routerPass := "", ""
	if len(users) > 0 {
		routerUser, routerPass = "router", "router-secret"
	}
	f.router = natstest.NewRouter(t, f.nats.URL(routerUser, routerPass))
	return f
}

func runUntilCleanup(t *testing.T, name string, r ifrit.Runner) ifrit.Process {
	t.Helper()
	proc := ifrit.Background(r)
	t.Cleanup(func() {
		proc.Signal(os.Interrupt)
		select {
		case <-proc.Wait():
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop", name)
		}
	})
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		t.Fatalf("%s exited: %v", name, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not start", name)
	}
	return proc
}

// emitterConfig is a global-mode emitter with the lock on the fixture's
// prefix and no periodic re-broadcast, so every message a test sees comes
// from what the test does.
func (f *fixture) emitterConfig(t *testing.T, id string) app.Config {
	cfg := app.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.NATSURLs = []string{f.nats.URL("", "")}
	cfg.NATSReconnectWait = config.Duration(50 * time.Millisecond)
	cfg.NATSMaxReconnectWait = config.Duration(200 * time.Millisecond)
	cfg.BBSAddresses = []string{f.bbsAt}
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.KeyPrefix = f.prefix
	cfg.InstanceID = id
	cfg.LockTTL = config.Duration(2 * time.Second)
	cfg.LockRetryInterval = config.Duration(200 * time.Millisecond)
	cfg.RegisterInterval = config.Duration(time.Hour)
	cfg.RouteStaleThreshold = config.Duration(120 * time.Second) // a setting (unset by default): exercised here
	cfg.JitterFactor = 0
	cfg.DebugAddress = "127.0.0.1:0"
	return cfg
}

func (f *fixture) startEmitter(t *testing.T, cfg app.Config) *app.RouteEmitter {
	t.Helper()
	require.NoError(t, cfg.Validate())
	e := app.New(cfg, lager.NewLogger("route-emitter"))
	proc := ifrit.Background(e.Runner())
	t.Cleanup(func() {
		proc.Signal(os.Interrupt)
		select {
		case <-proc.Wait():
		case <-time.After(20 * time.Second):
			t.Error("route emitter did not stop")
		}
	})
	return e
}

var webRoutes = []routingtable.Route{
	{Hostname: "web.example.com", Port: 8080, RouteServiceURL: "https://rs.example.com"},
	{Hostname: "www.example.com", Port: 8080, IsolationSegment: "iso-1"},
}

func (f *fixture) desire(t *testing.T, guid string, instances int32, routes ...routingtable.Route) {
	t.Helper()
	_, err := f.bbs.DesireLRP(context.Background(), &bbsv1.DesireLRPRequest{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: guid, Domain: "apps", LogGuid: "log-" + guid, RootFs: "preloaded:cflinuxfs4",
		Instances: instances, MemoryMb: 128, DiskMb: 256, Ports: []uint32{8080},
		Routes: map[string]string{routingtable.CFRouterKey: routingtable.MarshalRoutes(routes...)},
		MetricTags: map[string]*modelsv1.MetricTagValue{
			"space": {Static: "space-1"},
			"index": {Dynamic: modelsv1.MetricTagValue_DYNAMIC_VALUE_INDEX},
		},
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app"}}},
	}})
	require.NoError(t, err)
}

// run claims and starts one instance as a cell would.
func (f *fixture) run(t *testing.T, guid string, index int32, cell string) {
	t.Helper()
	ctx := context.Background()
	ik := &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("%s-ig-%d", guid, index), CellId: cell}
	_, err := f.bbs.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: guid, Index: index, InstanceKey: ik})
	require.NoError(t, err)
	_, err = f.bbs.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{
		ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: index, Domain: "apps"},
		InstanceKey:  ik,
		NetInfo: &modelsv1.ActualLRPNetInfo{
			Address: fmt.Sprintf("10.0.0.%d", index+1), InstanceAddress: fmt.Sprintf("10.255.0.%d", index+1),
			Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61000 + uint32(index), ContainerTlsProxyPort: 61443, HostTlsProxyPort: 62000 + uint32(index)}},
		},
		AvailabilityZone: "z1",
	})
	require.NoError(t, err)
}

func (f *fixture) since(t *testing.T, guid string) map[string]int64 {
	resp, err := f.bbs.ListActualLRPs(context.Background(), &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{guid}})
	require.NoError(t, err)
	out := map[string]int64{}
	for _, a := range resp.GetActualLrps() {
		out[a.GetInstanceKey().GetInstanceGuid()] = a.GetSince()
	}
	return out
}

// waitCount waits until the router got n messages on subject and returns them.
func waitCount(t *testing.T, r *natstest.Router, subject string, n int, within time.Duration) []natstest.Received {
	t.Helper()
	var got []natstest.Received
	require.Eventuallyf(t, func() bool {
		got = r.Messages(subject)
		return len(got) >= n
	}, within, 10*time.Millisecond, "want %d %s messages within %s", n, subject, within)
	return got
}

func keys(msgs []natstest.Received) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, fmt.Sprintf("%s %s:%d", m.Message.URIs[0], m.Message.Host, m.Message.Port))
	}
	sort.Strings(out)
	return out
}

func TestSixRegistrationsWithEveryFieldWithinASecondOfRunning(t *testing.T) {
	f := newFixture(t)
	// Two emitters contend for the lock: exactly six messages prove only one emits.
	f.startEmitter(t, f.emitterConfig(t, "emitter-a"))
	f.startEmitter(t, f.emitterConfig(t, "emitter-b"))
	f.desire(t, "web", 3, webRoutes...)
	time.Sleep(500 * time.Millisecond) // both emitters up, one holding the lock

	for i := range int32(3) {
		f.run(t, "web", i, "cell-1")
	}
	running := time.Now()
	regs := waitCount(t, f.router, "router.register", 6, time.Second)
	require.WithinDuration(t, running, regs[len(regs)-1].At, time.Second)
	time.Sleep(300 * time.Millisecond)
	regs = f.router.Messages("router.register")
	require.Len(t, regs, 6, "exactly six registrations: %v", keys(regs))
	require.Empty(t, f.router.Messages("router.unregister"))

	since := f.since(t, "web")
	var want []routingtable.RegistryMessage
	for i := range 3 {
		ig := fmt.Sprintf("web-ig-%d", i)
		for _, r := range webRoutes {
			want = append(want, routingtable.RegistryMessage{
				Host: fmt.Sprintf("10.0.0.%d", i+1), Port: uint32(61000 + i), TLSPort: uint32(62000 + i),
				URIs: []string{r.Hostname}, App: "log-web", PrivateInstanceID: ig,
				PrivateInstanceIndex: fmt.Sprint(i), ServerCertDomainSAN: ig, RouteServiceURL: r.RouteServiceURL,
				Tags:             map[string]string{"component": "route-emitter", "space": "space-1", "index": fmt.Sprint(i)},
				IsolationSegment: r.IsolationSegment, AvailabilityZone: "z1",
				EndpointUpdatedAtNs: since[ig], StaleThresholdInSeconds: 120,
			})
		}
	}
	var got []routingtable.RegistryMessage
	for _, r := range regs {
		got = append(got, r.Message)
		require.NotZero(t, r.Message.EndpointUpdatedAtNs)
		// The wire names are gorouter's.
		for _, field := range []string{"host", "port", "tls_port", "uris", "app", "private_instance_id", "private_instance_index",
			"server_cert_domain_san", "tags", "availability_zone", "endpoint_updated_at_ns", "stale_threshold_in_seconds"} {
			require.Contains(t, r.Raw, field)
		}
	}
	require.ElementsMatch(t, want, got)
}

func TestScaleDownAndRemoveUnregister(t *testing.T) {
	f := newFixture(t)
	e := f.startEmitter(t, f.emitterConfig(t, "emitter-a"))
	f.desire(t, "web", 3, webRoutes...)
	for i := range int32(3) {
		f.run(t, "web", i, "cell-1")
	}
	waitCount(t, f.router, "router.register", 6, 5*time.Second)
	f.router.Reset()

	one := int32(1)
	_, err := f.bbs.UpdateDesiredLRP(context.Background(), &bbsv1.UpdateDesiredLRPRequest{
		ProcessGuid: "web", Update: &modelsv1.DesiredLRPUpdate{Instances: &one},
	})
	require.NoError(t, err)
	waitCount(t, f.router, "router.unregister", 4, time.Second)
	time.Sleep(200 * time.Millisecond)
	unregs := f.router.Messages("router.unregister")
	require.Equal(t, []string{
		"web.example.com 10.0.0.2:61001", "web.example.com 10.0.0.3:61002",
		"www.example.com 10.0.0.2:61001", "www.example.com 10.0.0.3:61002",
	}, keys(unregs), "indices 1 and 2 go, on both hostnames")
	require.Empty(t, f.router.Messages("router.register"))
	m := e.Metrics()
	require.Equal(t, 2.0, metricValue(t, m.RoutesTotal), "one instance × two hostnames")
	require.Equal(t, 6.0, metricValue(t, m.RoutesRegistered))
	require.Equal(t, 4.0, metricValue(t, m.RoutesUnregistered))
	require.Equal(t, 10.0, metricValue(t, m.MessagesEmitted.WithLabelValues("router.register"))+
		metricValue(t, m.MessagesEmitted.WithLabelValues("router.unregister")))
	var sync dto.Metric
	require.NoError(t, m.SyncDuration.Write(&sync))
	require.GreaterOrEqual(t, sync.GetHistogram().GetSampleCount(), uint64(1), "the first sync is observed")
	f.router.Reset()

	_, err = f.bbs.RemoveDesiredLRP(context.Background(), &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: "web"})
	require.NoError(t, err)
	waitCount(t, f.router, "router.unregister", 2, time.Second)
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, []string{"web.example.com 10.0.0.1:61000", "www.example.com 10.0.0.1:61000"},
		keys(f.router.Messages("router.unregister")))
}

func TestReconnectsToARestartedNATSAndReemitsTheTable(t *testing.T) {
	emitterUser := &server.User{Username: "emitter", Password: "emitter-secret"}
	routerUser := &server.User{Username: "router", Password: "router-secret"}
	f := newFixture(t, emitterUser, routerUser)
	cfg := f.emitterConfig(t, "emitter-a")
	cfg.NATSURLs = []string{f.nats.URL("emitter", "emitter-secret")}
	f.startEmitter(t, cfg)
	f.desire(t, "web", 2, webRoutes...)
	f.run(t, "web", 0, "cell-1")
	f.run(t, "web", 1, "cell-1")
	first := waitCount(t, f.router, "router.register", 4, 5*time.Second)

	f.nats.Stop()
	time.Sleep(500 * time.Millisecond)
	// Back, first for the router only: it reconnects and subscribes before
	// the emitter may, so nothing the emitter sends on reconnecting is missed.
	f.nats.Restart(routerUser)
	require.Eventually(t, func() bool { return f.router.Conn.IsConnected() && f.router.Conn.Flush() == nil },
		10*time.Second, 10*time.Millisecond)
	f.router.Reset()
	f.nats.SetUsers(emitterUser, routerUser)

	again := waitCount(t, f.router, "router.register", 4, 10*time.Second)
	require.Equal(t, keys(first), keys(again))
	for _, m := range again {
		require.Zero(t, m.Message.EndpointUpdatedAtNs, "a re-broadcast carries no update time")
	}
}

func TestRouterStartSetsTheReemissionInterval(t *testing.T) {
	f := newFixture(t)
	f.startEmitter(t, f.emitterConfig(t, "emitter-a"))
	f.desire(t, "web", 1, webRoutes...)
	f.run(t, "web", 0, "cell-1")
	waitCount(t, f.router, "router.register", 2, 5*time.Second)
	time.Sleep(time.Second)
	require.Len(t, f.router.Messages("router.register"), 2, "no re-emission before a router asks (register_interval is 1h)")
	f.router.Reset()

	f.router.SendStart(t, 2)
	time.Sleep(7 * time.Second)
	regs := f.router.Messages("router.register")
	// Bursts of two registrations at about 0 s, 2 s, 4 s and 6 s after the start.
	var bursts []time.Time
	for _, m := range regs {
		if len(bursts) == 0 || m.At.Sub(bursts[len(bursts)-1]) > 500*time.Millisecond {
			bursts = append(bursts, m.At)
		}
	}
	require.Len(t, regs, 2*len(bursts), "each broadcast is the whole table")
	require.GreaterOrEqual(t, len(bursts), 3, "bursts at %v", bursts)
	require.LessOrEqual(t, len(bursts), 4, "bursts at %v", bursts)
	for i := 1; i < len(bursts); i++ {
		gap := bursts[i].Sub(bursts[i-1])
		require.InDelta(t, 2*time.Second, gap, float64(400*time.Millisecond), "gap %d is %s", i, gap)
	}
}

func TestCellLocalEmitterRegistersOnlyItsCell(t *testing.T) {
	f := newFixture(t)
	cfg := f.emitterConfig(t, "emitter-cell-2")
	cfg.CellID = "cell-2"
	cfg.Etcd = etcdclient.Config{} // no lock in cell-local mode
	f.startEmitter(t, cfg)
	f.desire(t, "web", 3, webRoutes...)
	f.run(t, "web", 0, "cell-1")
	f.run(t, "web", 1, "cell-2")
	f.run(t, "web", 2, "cell-1")
	waitCount(t, f.router, "router.register", 2, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, []string{"web.example.com 10.0.0.2:61001", "www.example.com 10.0.0.2:61001"},
		keys(f.router.Messages("router.register")))
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}
