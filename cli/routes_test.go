package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/client"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func TestRoutesPrintsURIsWithRunningEndpoints(t *testing.T) {
	addr := startBBS(t)
	c, err := client.New(client.Config{Addresses: []string{addr}})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: "web", Domain: "apps", LogGuid: "log-web", RootFs: "preloaded:cflinuxfs4", Instances: 3,
		MemoryMb: 128, DiskMb: 256, Ports: []uint32{8080},
		Routes: map[string]string{"cf-router": `[{"hostnames":["web.example.com","www.example.com"],"port":8080}]`},
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app"}}},
	}})
	require.NoError(t, err)
	for i := range int32(2) { // index 2 stays UNCLAIMED: not routed
		ik := &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("ig-%d", i), CellId: "cell-1"}
		_, err := c.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "web", Index: i, InstanceKey: ik})
		require.NoError(t, err)
		_, err = c.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{
			ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "web", Index: i, Domain: "apps"}, InstanceKey: ik,
			NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61000 + uint32(i)}}},
		})
		require.NoError(t, err)
	}

	out, err := gavel(t, addr, "routes")
	require.NoError(t, err)
	require.Regexp(t, `URI\s+PROCESS\s+PORT\s+ENDPOINTS`, out)
	require.Regexp(t, `web\.example\.com\s+web\s+8080\s+10\.0\.0\.1:61000 \[0\], 10\.0\.0\.1:61001 \[1\]\n`, out)
	require.Regexp(t, `www\.example\.com\s+web\s+8080\s+10\.0\.0\.1:61000 \[0\], 10\.0\.0\.1:61001 \[1\]\n`, out)

	out, err = gavel(t, addr, "routes", "--json")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, "one object per URI")
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	require.Equal(t, "web.example.com", rec["uri"])
	require.Equal(t, "web", rec["process_guid"])
	require.EqualValues(t, 8080, rec["container_port"])
	eps := rec["endpoints"].([]any)
	require.Len(t, eps, 2)
	require.Equal(t, map[string]any{"instance_guid": "ig-0", "index": 0.0, "host": "10.0.0.1", "port": 61000.0}, eps[0])

	out, err = gavel(t, addr, "routes", "--cell-id", "cell-2")
	require.NoError(t, err)
	require.Contains(t, out, "(none)", "no instance on cell-2")
}

// gavel lrp shows ports as the app sees them: the host port alone on the
// host's network, host->container with a network of its own.
func TestAddressShowsPortsAsTheAppSeesThem(t *testing.T) {
	ports := []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61000}}
	shared := &modelsv1.ActualLRP{NetInfo: &modelsv1.ActualLRPNetInfo{Address: "127.0.0.1", InstanceAddress: "127.0.0.1", Ports: ports}}
	own := &modelsv1.ActualLRP{NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", InstanceAddress: "10.255.0.2", Ports: ports}}
	if got := address(shared); got != "127.0.0.1 61000" {
		t.Fatalf("host network: %q", got)
	}
	if got := address(own); got != "10.0.0.1 61000->8080" {
		t.Fatalf("own network: %q", got)
	}
}
