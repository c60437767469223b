package routingtable

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func desired(instances int32, index uint32, hosts ...string) Desired {
	d := Desired{ProcessGUID: "p", Domain: "d", LogGUID: "log-p", Instances: instances, Tag: Tag{Epoch: "e", Index: index}}
	for _, h := range hosts {
		d.Routes = append(d.Routes, Route{Hostname: h, Port: 8080})
	}
	return d
}

func actual(index int32, tagIndex uint32) Actual {
	return Actual{
		ProcessGUID: "p", Index: index, InstanceGUID: fmt.Sprintf("ig-%d", index),
		Address: fmt.Sprintf("10.0.0.%d", index), InstanceAddress: fmt.Sprintf("10.255.0.%d", index),
		Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61000 + uint32(index), ContainerTlsProxyPort: 61443}},
		Since: 1000 + int64(index), Tag: Tag{Epoch: "a", Index: tagIndex},
	}
}

// summary renders messages as sorted "uri host:port" lines.
func summary(msgs []RegistryMessage) []string {
	out := []string{}
	for _, m := range msgs {
		out = append(out, fmt.Sprintf("%s %s:%d", m.URIs[0], m.Host, m.Port))
	}
	sort.Strings(out)
	return out
}

func TestTableChanges(t *testing.T) {
	cases := []struct {
		name       string
		setup      func(t *Table)
		change     func(t *Table) Messages
		reg, unreg []string
		routeCount int
	}{
		{
			name:   "an endpoint registers every route",
			setup:  func(t *Table) { t.SetDesired(desired(2, 1, "a.com", "b.com")) },
			change: func(t *Table) Messages { return t.UpsertActual(actual(0, 1)) },
			reg:    []string{"a.com 10.0.0.0:61000", "b.com 10.0.0.0:61000"}, routeCount: 2,
		},
		{
			name:   "routes arriving after the endpoint register it",
			setup:  func(t *Table) { t.UpsertActual(actual(0, 1)) },
			change: func(t *Table) Messages { return t.SetDesired(desired(1, 1, "a.com")) },
			reg:    []string{"a.com 10.0.0.0:61000"}, routeCount: 1,
		},
		{
			name:   "an undesired index is never added",
			setup:  func(t *Table) { t.SetDesired(desired(1, 1, "a.com")) },
			change: func(t *Table) Messages { return t.UpsertActual(actual(1, 1)) },
		},
		{
			name: "scale-down drops endpoints at or above the new count at once",
			setup: func(t *Table) {
				t.SetDesired(desired(3, 1, "a.com"))
				for i := range int32(3) {
					t.UpsertActual(actual(i, 1))
				}
			},
			change:     func(t *Table) Messages { return t.SetDesired(desired(1, 2, "a.com")) },
			unreg:      []string{"a.com 10.0.0.1:61001", "a.com 10.0.0.2:61002"},
			routeCount: 1,
		},
		{
			name: "a stale desired update is ignored",
			setup: func(t *Table) {
				t.SetDesired(desired(1, 5, "a.com"))
				t.UpsertActual(actual(0, 1))
			},
			change:     func(t *Table) Messages { return t.SetDesired(desired(1, 4, "b.com")) },
			routeCount: 1,
		},
		{
			name: "a stale actual update is ignored",
			setup: func(t *Table) {
				t.SetDesired(desired(1, 1, "a.com"))
				t.UpsertActual(actual(0, 5))
			},
			change: func(t *Table) Messages {
				a := actual(0, 4)
				a.Address = "10.9.9.9"
				return t.UpsertActual(a)
			},
			routeCount: 1,
		},
		{
			name: "a removal with an older tag is ignored",
			setup: func(t *Table) {
				t.SetDesired(desired(1, 1, "a.com"))
				t.UpsertActual(actual(0, 5))
			},
			change: func(t *Table) Messages {
				return t.RemoveActual("p", EndpointKey{InstanceGUID: "ig-0"}, Tag{Epoch: "a", Index: 4})
			},
			routeCount: 1,
		},
		{
			name: "a removed endpoint unregisters its routes",
			setup: func(t *Table) {
				t.SetDesired(desired(1, 1, "a.com", "b.com"))
				t.UpsertActual(actual(0, 5))
			},
			change: func(t *Table) Messages {
				return t.RemoveActual("p", EndpointKey{InstanceGUID: "ig-0"}, Tag{Epoch: "a", Index: 5})
			},
			unreg: []string{"a.com 10.0.0.0:61000", "b.com 10.0.0.0:61000"},
		},
		{
			name: "a route change unregisters only the hostname that went",
			setup: func(t *Table) {
				t.SetDesired(desired(1, 1, "a.com", "b.com"))
				t.UpsertActual(actual(0, 1))
			},
			change:     func(t *Table) Messages { return t.SetDesired(desired(1, 2, "b.com", "c.com")) },
			reg:        []string{"c.com 10.0.0.0:61000"},
			unreg:      []string{"a.com 10.0.0.0:61000"},
			routeCount: 2,
		},
		{
			name: "a metric tag change re-registers in place, with no unregister",
			setup: func(t *Table) {
				t.SetDesired(desired(1, 1, "a.com"))
				t.UpsertActual(actual(0, 1))
			},
			change: func(t *Table) Messages {
				d := desired(1, 2, "a.com")
				d.MetricTags = map[string]MetricTag{"space": {Static: "s"}}
				return t.SetDesired(d)
			},
			reg: []string{"a.com 10.0.0.0:61000"}, routeCount: 1,
		},
		{
			name: "an endpoint that only got a new tag emits nothing",
			setup: func(t *Table) {
				t.SetDesired(desired(1, 1, "a.com"))
				t.UpsertActual(actual(0, 1))
			},
			change:     func(t *Table) Messages { return t.UpsertActual(actual(0, 2)) },
			routeCount: 1,
		},
		{
			name: "the same instance turning evacuating emits nothing",
			setup: func(t *Table) {
				t.SetDesired(desired(1, 1, "a.com"))
				t.UpsertActual(actual(0, 1))
			},
			change: func(t *Table) Messages {
				var out Messages
				ev := actual(0, 2)
				ev.Evacuating = true
				out.Merge(t.UpsertActual(ev))
				out.Merge(t.RemoveActual("p", EndpointKey{InstanceGUID: "ig-0"}, Tag{Epoch: "a", Index: 2}))
				return out
			},
			routeCount: 1,
		},
		{
			name: "an evacuating instance and its replacement are both registered",
			setup: func(t *Table) {
				t.SetDesired(desired(1, 1, "a.com"))
				ev := actual(0, 1)
				ev.Evacuating = true
				t.UpsertActual(ev)
			},
			change: func(t *Table) Messages {
				r := actual(0, 1)
				r.InstanceGUID, r.Address = "ig-new", "10.0.1.0"
				return t.UpsertActual(r)
			},
			reg:        []string{"a.com 10.0.1.0:61000"},
			routeCount: 2,
		},
		{
			name: "removing the desired LRP unregisters everything",
			setup: func(t *Table) {
				t.SetDesired(desired(2, 1, "a.com"))
				t.UpsertActual(actual(0, 1))
				t.UpsertActual(actual(1, 1))
			},
			change: func(t *Table) Messages { return t.RemoveDesired("p", Tag{Epoch: "e", Index: 1}) },
			unreg:  []string{"a.com 10.0.0.0:61000", "a.com 10.0.0.1:61001"},
		},
		{
			name: "a desired removal with an older tag is ignored",
			setup: func(t *Table) {
				t.SetDesired(desired(1, 3, "a.com"))
				t.UpsertActual(actual(0, 1))
			},
			change:     func(t *Table) Messages { return t.RemoveDesired("p", Tag{Epoch: "e", Index: 2}) },
			routeCount: 1,
		},
		{
			name: "a route on a port the instance does not map is skipped",
			setup: func(t *Table) {
				d := desired(1, 1, "a.com")
				d.Routes = append(d.Routes, Route{Hostname: "admin.com", Port: 9090})
				t.SetDesired(d)
			},
			change: func(t *Table) Messages { return t.UpsertActual(actual(0, 1)) },
			reg:    []string{"a.com 10.0.0.0:61000"}, routeCount: 1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tbl := New(Options{})
			c.setup(tbl)
			msgs := c.change(tbl)
			want := func(s []string) []string {
				if s == nil {
					return []string{}
				}
				return s
			}
			require.Equal(t, want(c.reg), summary(msgs.Registrations), "registrations")
			require.Equal(t, want(c.unreg), summary(msgs.Unregistrations), "unregistrations")
			require.Equal(t, c.routeCount, tbl.RouteCount())
			require.Len(t, tbl.Registrations(), c.routeCount)
		})
	}
}

func TestMessageFields(t *testing.T) {
	tbl := New(Options{StaleThresholdSeconds: 120})
	d := desired(2, 1)
	d.Routes = []Route{{Hostname: "a.com", Port: 8080, RouteServiceURL: "https://rs", IsolationSegment: "iso", Protocol: "http2"}}
	d.MetricTags = map[string]MetricTag{
		"space": {Static: "s1"},
		"i":     {Dynamic: modelsv1.MetricTagValue_DYNAMIC_VALUE_INDEX},
		"g":     {Dynamic: modelsv1.MetricTagValue_DYNAMIC_VALUE_INSTANCE_GUID},
	}
	tbl.SetDesired(d)
	a := actual(1, 1)
	a.Ports[0].HostTlsProxyPort = 62001
	a.AvailabilityZone = "z2"
	msgs := tbl.UpsertActual(a)
	require.Equal(t, []RegistryMessage{{
		Host: "10.0.0.1", Port: 61001, TLSPort: 62001, URIs: []string{"a.com"}, App: "log-p",
		PrivateInstanceID: "ig-1", PrivateInstanceIndex: "1", ServerCertDomainSAN: "ig-1", RouteServiceURL: "https://rs",
		Tags:             map[string]string{"component": "route-emitter", "space": "s1", "i": "1", "g": "ig-1"},
		IsolationSegment: "iso", AvailabilityZone: "z2", EndpointUpdatedAtNs: 1001, StaleThresholdInSeconds: 120, Protocol: "http2",
	}}, msgs.Registrations)
	// The re-broadcast carries no update time.
	require.Zero(t, tbl.Registrations()[0].EndpointUpdatedAtNs)
}

func TestDirectInstanceRoutes(t *testing.T) {
	for _, c := range []struct {
		name      string
		direct    bool
		preferred modelsv1.ActualLRPNetInfo_PreferredAddress
		want      string
	}{
		{"host by default", false, modelsv1.ActualLRPNetInfo_PREFERRED_ADDRESS_UNSPECIFIED, "10.0.0.0:61000"},
		{"instance when configured", true, modelsv1.ActualLRPNetInfo_PREFERRED_ADDRESS_UNSPECIFIED, "10.255.0.0:8080"},
		{"instance when the instance prefers it", false, modelsv1.ActualLRPNetInfo_PREFERRED_ADDRESS_INSTANCE, "10.255.0.0:8080"},
		{"host when the instance prefers it", true, modelsv1.ActualLRPNetInfo_PREFERRED_ADDRESS_HOST, "10.0.0.0:61000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tbl := New(Options{DirectInstanceRoutes: c.direct})
			tbl.SetDesired(desired(1, 1, "a.com"))
			a := actual(0, 1)
			a.Preferred = c.preferred
			regs := tbl.UpsertActual(a).Registrations
			require.Len(t, regs, 1)
			require.Equal(t, c.want, fmt.Sprintf("%s:%d", regs[0].Host, regs[0].Port))
		})
	}
}

func TestDiffOfTwoTables(t *testing.T) {
	old := Build(Options{}, []Desired{desired(2, 1, "a.com", "b.com")}, []Actual{actual(0, 1), actual(1, 1)})
	require.Equal(t, 4, old.RouteCount())
	next := Build(Options{}, []Desired{desired(2, 2, "b.com", "c.com")}, []Actual{actual(0, 1)})
	msgs := Diff(old, next)
	require.Equal(t, []string{"c.com 10.0.0.0:61000"}, summary(msgs.Registrations))
	require.Equal(t, []string{"a.com 10.0.0.0:61000", "a.com 10.0.0.1:61001", "b.com 10.0.0.1:61001"}, summary(msgs.Unregistrations))
	require.Empty(t, Diff(next, next).Registrations)
	require.Equal(t, []string{"b.com 10.0.0.0:61000", "c.com 10.0.0.0:61000"}, summary(Diff(New(Options{}), next).Registrations))
}

func TestParseRoutes(t *testing.T) {
	routes, err := ParseRoutes(map[string]string{
		CFRouterKey:  `[{"hostnames":["a.com","b.com"],"port":8080,"route_service_url":"https://rs"},{"hostnames":["c.com"],"port":9090}]`,
		"tcp-router": `[]`,
	})
	require.NoError(t, err)
	require.Equal(t, []Route{
		{Hostname: "a.com", Port: 8080, RouteServiceURL: "https://rs"},
		{Hostname: "b.com", Port: 8080, RouteServiceURL: "https://rs"},
		{Hostname: "c.com", Port: 9090},
	}, routes)
	none, err := ParseRoutes(map[string]string{"tcp-router": `[]`})
	require.NoError(t, err)
	require.Empty(t, none)
	_, err = ParseRoutes(map[string]string{CFRouterKey: `{"not":"a list"}`})
	require.ErrorContains(t, err, "cf-router")
}

func TestActualFromKeepsOnlyRunningRoutable(t *testing.T) {
	no, yes := false, true
	for _, c := range []struct {
		name     string
		state    modelsv1.ActualLRPState
		routable *bool
		want     bool
	}{
		{"running, routable unset", modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING, nil, true},
		{"running, routable", modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING, &yes, true},
		{"running, not routable", modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING, &no, false},
		{"claimed", modelsv1.ActualLRPState_ACTUAL_LRP_STATE_CLAIMED, nil, false},
		{"crashed", modelsv1.ActualLRPState_ACTUAL_LRP_STATE_CRASHED, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ok := ActualFrom(&modelsv1.ActualLRP{
				Key: &modelsv1.ActualLRPKey{ProcessGuid: "p"}, InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig"},
				State: c.state, Routable: c.routable,
			})
			require.Equal(t, c.want, ok)
		})
	}
}

func TestTagOrder(t *testing.T) {
	require.True(t, Tag{Epoch: "e", Index: 1}.SucceededBy(Tag{Epoch: "e", Index: 2}))
	require.False(t, Tag{Epoch: "e", Index: 2}.SucceededBy(Tag{Epoch: "e", Index: 2}))
	require.False(t, Tag{Epoch: "e", Index: 3}.SucceededBy(Tag{Epoch: "e", Index: 2}))
	require.True(t, Tag{Epoch: "e", Index: 3}.SucceededBy(Tag{Epoch: "f", Index: 0}), "a new epoch is a recreated record")
	require.True(t, Tag{}.SucceededBy(Tag{Epoch: "e"}))
}

// Per-route options (gorouter's lb_algo, hash_header) travel in
// router.register as the desired route gave them.
func TestRouteOptionsAreRegistered(t *testing.T) {
	routes, err := ParseRoutes(map[string]string{CFRouterKey: `[{"hostnames":["a.com"],"port":8080,"options":{"lb_algo":"least-connection"}}]`})
	require.NoError(t, err)
	tbl := New(Options{})
	d := desired(1, 1)
	d.Routes = routes
	tbl.SetDesired(d)
	msgs := tbl.UpsertActual(actual(0, 1))
	require.Len(t, msgs.Registrations, 1)
	raw, err := json.Marshal(msgs.Registrations[0])
	require.NoError(t, err)
	require.Contains(t, string(raw), `"options":{"lb_algo":"least-connection"}`)
	require.NotContains(t, string(raw), "stale_threshold_in_seconds", "unset by default, as Diego's")
	// A change of options alone is a change of the registration.
	d2 := desired(1, 2)
	d2.Routes = []Route{routes[0]}
	d2.Routes[0].Options = `{"lb_algo":"round-robin"}`
	require.Len(t, tbl.SetDesired(d2).Registrations, 1)
}

func TestNetCombinesOneRevisionsMessages(t *testing.T) {
	m := func(port uint32, tag string, at int64) RegistryMessage {
		return RegistryMessage{Host: "10.0.0.1", Port: port, URIs: []string{"a.com"}, PrivateInstanceID: "ig", Tags: map[string]string{"t": tag}, EndpointUpdatedAtNs: at}
	}
	unreg := func(r RegistryMessage) Messages {
		r.EndpointUpdatedAtNs = 0
		return Messages{Unregistrations: []RegistryMessage{r}}
	}
	reg := func(r RegistryMessage) Messages { return Messages{Registrations: []RegistryMessage{r}} }
	// Unregistered and registered unchanged: nothing.
	require.True(t, Net(unreg(m(1, "x", 0)), reg(m(1, "x", 5))).Empty())
	// Registered with other content: an update in place, no update time.
	got := Net(unreg(m(1, "x", 0)), reg(m(1, "y", 5)))
	require.Empty(t, got.Unregistrations)
	require.Equal(t, []RegistryMessage{m(1, "y", 0)}, got.Registrations)
	// A new endpoint changed again: the last content with the first update time.
	got = Net(reg(m(2, "x", 7)), reg(m(2, "y", 0)))
	require.Equal(t, []RegistryMessage{m(2, "y", 7)}, got.Registrations)
	// Last an unregistration: it stands.
	got = Net(reg(m(3, "x", 7)), unreg(m(3, "x", 0)))
	require.Empty(t, got.Registrations)
	require.Len(t, got.Unregistrations, 1)
	// Other keys are untouched.
	got = Net(unreg(m(4, "x", 0)), reg(m(5, "x", 9)))
	require.Len(t, got.Unregistrations, 1)
	require.Equal(t, []RegistryMessage{m(5, "x", 9)}, got.Registrations)
}
