package executor

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/backend"
)

func envMap(t *testing.T, env []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		require.True(t, ok, "entry %q has no '='", kv)
		_, dup := m[k]
		require.False(t, dup, "name %s twice", k)
		m[k] = v
	}
	return m
}

func TestInstanceEnvPorts(t *testing.T) {
	type port struct {
		External uint32 `json:"external"`
		Internal uint32 `json:"internal"`
	}
	for _, tc := range []struct {
		name   string
		ports  []PortMapping
		shared bool
		want   []port
	}{
		{name: "no port", want: []port{}},
		{name: "one port", ports: []PortMapping{{ContainerPort: 8080, HostPort: 61001}}, want: []port{{61001, 8080}}},
		{name: "two ports", ports: []PortMapping{{8080, 61001}, {9090, 61002}}, want: []port{{61001, 8080}, {61002, 9090}}},
		{name: "shared host network", ports: []PortMapping{{8080, 61001}, {9090, 61002}}, shared: true, want: []port{{61001, 61001}, {61002, 61002}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := RunRequest{InstanceGuid: "ig", InstanceIndex: 7, Env: []*modelsv1.EnvironmentVariable{{Name: "A", Value: "b=c"}}}
			env := envMap(t, instanceEnv(req, backend.ContainerInfo{SharedHostNetwork: tc.shared}, NetInfo{HostIP: "10.0.0.1", InternalIP: "10.255.0.2", Ports: tc.ports}))
			want, err := json.Marshal(tc.want)
			require.NoError(t, err)
			require.JSONEq(t, string(want), env["CF_INSTANCE_PORTS"])
			require.Equal(t, "ig", env["CF_INSTANCE_GUID"])
			require.Equal(t, "7", env["CF_INSTANCE_INDEX"])
			require.Equal(t, "7", env["INSTANCE_INDEX"])
			require.Equal(t, "10.255.0.2", env["CF_INSTANCE_INTERNAL_IP"])
			require.Equal(t, "b=c", env["A"])
			if len(tc.ports) == 0 {
				require.Equal(t, "", env["CF_INSTANCE_PORT"])
				require.Equal(t, "", env["CF_INSTANCE_ADDR"])
				require.NotContains(t, env, "PORT")
				return
			}
			first := tc.want[0]
			require.Equal(t, strconv.Itoa(int(first.Internal)), env["PORT"])
			require.Equal(t, env["PORT"], env["VCAP_APP_PORT"])
			require.Equal(t, strconv.Itoa(int(first.External)), env["CF_INSTANCE_PORT"])
			require.Equal(t, "10.0.0.1:"+env["CF_INSTANCE_PORT"], env["CF_INSTANCE_ADDR"])
		})
	}
}

// The request's variables follow the instance's, in order, however many
// there are.
func TestInstanceEnvKeepsTheRequestsVariablesInOrder(t *testing.T) {
	var req RunRequest
	for i := range 40 {
		req.Env = append(req.Env, &modelsv1.EnvironmentVariable{Name: "V" + strconv.Itoa(i), Value: strings.Repeat("x", i)})
	}
	env := instanceEnv(req, backend.ContainerInfo{}, NetInfo{HostIP: "10.0.0.1"})
	require.Len(t, env, 5+40) // the two IPs, the empty port and address, the ports list
	require.Equal(t, "CF_INSTANCE_PORTS=[]", env[4])
	for i, kv := range env[5:] {
		require.Equal(t, "V"+strconv.Itoa(i)+"="+strings.Repeat("x", i), kv)
	}
}

func TestDedupeEnv(t *testing.T) {
	long := make([]string, 0, smallEnv+2)
	for i := range smallEnv + 1 {
		long = append(long, "V"+strings.Repeat("x", i)+"=1")
	}
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{name: "empty", in: nil, want: nil},
		{name: "no repeats", in: []string{"A=1", "B=2", "AB=3"}, want: []string{"A=1", "B=2", "AB=3"}},
		{name: "last value at first position", in: []string{"A=1", "B=2", "A=3"}, want: []string{"A=3", "B=2"}},
		{name: "name without value", in: []string{"A", "B=2", "A=x"}, want: []string{"A=x", "B=2"}},
		{name: "prefix is not a repeat", in: []string{"A=1", "AA=2", "A_B=3"}, want: []string{"A=1", "AA=2", "A_B=3"}},
		{name: "large env with a repeat", in: append(long[:len(long):len(long)], "V=2"), want: append([]string{"V=2"}, long[1:]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, dedupeEnv(tc.in))
		})
	}
}

// The interned tag property keys are bounded: names past the bound still
// get their key, built afresh.
func TestPropertyKeysAreBounded(t *testing.T) {
	e := &Executor{}
	for i := range 3 * maxPropertyKeys {
		name := "tag-" + strconv.Itoa(i)
		require.Equal(t, TagPropertyPrefix+name, e.propertyKeyLocked(name))
	}
	require.Len(t, e.propertyKeys, maxPropertyKeys)
	require.Equal(t, TagPropertyPrefix+"tag-0", e.propertyKeyLocked("tag-0"), "an interned key")
}
