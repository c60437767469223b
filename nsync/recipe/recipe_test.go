package recipe_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/nsync/ccmessages"
	"github.com/gavelhq/gavel/nsync/recipe"
)

func cfg() recipe.Config {
	return recipe.Config{
		FileServerURL:    "http://fs.example",
		LifecycleBundles: map[string]string{"buildpack/cflinuxfs4": "buildpack_app_lifecycle.tgz", "docker": "docker_app_lifecycle.tgz"},
		MaxInstances:     100,
	}
}

func buildpackReq() *ccmessages.DesireAppRequestFromCC {
	return &ccmessages.DesireAppRequestFromCC{
		ProcessGUID: "app-1-v1", LogGUID: "app-1", ETag: "e1", DropletURI: "http://cc/droplet", DropletHash: "abc",
		Stack: "cflinuxfs4", StartCommand: "./run", NumInstances: 2, MemoryMB: 1024, DiskMB: 512,
		IsolationSegment: "seg-a",
		RoutingInfo: ccmessages.RoutingInfo{
			HTTPRoutes: []ccmessages.HTTPRoute{{Hostname: "a.example"}, {Hostname: "b.example"}, {Hostname: "c.example", Port: 9000}},
			TCPRoutes:  []ccmessages.TCPRoute{{RouterGroupGUID: "rg", ExternalPort: 61000, ContainerPort: 8080}},
		},
	}
}

func TestBuildpackLRP(t *testing.T) {
	lrp, err := cfg().DesiredLRP(buildpackReq())
	require.NoError(t, err)
	require.Equal(t, "cf-apps", lrp.Domain)
	require.Equal(t, "preloaded:cflinuxfs4", lrp.RootFs)
	require.Equal(t, "e1", lrp.Annotation)
	require.Equal(t, uint32(12), lrp.CpuWeight) // 100*1024/8192
	require.Equal(t, []string{"seg-a"}, lrp.PlacementTags)
	require.Equal(t, "http://fs.example/v1/static/buildpack_app_lifecycle.tgz", lrp.CachedDependencies[0].From)
	dl := lrp.Setup.GetSerial().Actions[0].GetDownload()
	require.Equal(t, "sha1", dl.ChecksumAlgorithm)
	require.Equal(t, "droplets-app-1-v1", dl.CacheKey)
	run := lrp.Action.GetCodependent().Actions[0].GetRun()
	require.Equal(t, "/tmp/lifecycle/launcher", run.Path)
	require.Equal(t, uint64(1024), run.ResourceLimits.Nofile)
	require.NotNil(t, lrp.Monitor.GetTimeout())
	var http []map[string]any
	require.NoError(t, json.Unmarshal([]byte(lrp.Routes["cf-router"]), &http))
	require.Len(t, http, 2)
	require.Equal(t, []any{"a.example", "b.example"}, http[0]["hostnames"])
	require.Equal(t, float64(8080), http[0]["port"])
	require.Equal(t, float64(9000), http[1]["port"])
	require.Contains(t, lrp.Routes["tcp-router"], `"external_port":61000`)
}

func TestDockerLRP(t *testing.T) {
	req := buildpackReq()
	req.DropletURI, req.Stack, req.DockerImage = "", "", "busybox"
	req.ExecutionMetadata = `{"user":"app","ports":[{"Port":7000,"Protocol":"tcp"}]}`
	lrp, err := cfg().DesiredLRP(req)
	require.NoError(t, err)
	require.Equal(t, "docker:///busybox", lrp.RootFs)
	require.Equal(t, []uint32{7000}, lrp.Ports)
	require.Equal(t, "app", lrp.Action.GetCodependent().Actions[0].GetRun().User)
	require.Nil(t, lrp.Setup)
}

func TestCPUWeight(t *testing.T) {
	require.Equal(t, uint32(1), recipe.CPUWeight(0))
	require.Equal(t, uint32(100), recipe.CPUWeight(1<<20))
	require.Equal(t, uint32(50), recipe.CPUWeight(4096))
}

func TestRefusalsNameTheField(t *testing.T) {
	for field, mutate := range map[string]func(*ccmessages.DesireAppRequestFromCC){
		"num_instances":     func(r *ccmessages.DesireAppRequestFromCC) { r.NumInstances = 101 },
		"droplet_uri":       func(r *ccmessages.DesireAppRequestFromCC) { r.DropletURI = "" },
		"stack":             func(r *ccmessages.DesireAppRequestFromCC) { r.Stack = "unknownfs" },
		"health_check_type": func(r *ccmessages.DesireAppRequestFromCC) { r.HealthCheckType = "grpc" },
		"routing_info": func(r *ccmessages.DesireAppRequestFromCC) {
			r.RoutingInfo.HTTPRoutes = make([]ccmessages.HTTPRoute, recipe.MaxRoutes+1)
		},
		"ports": func(r *ccmessages.DesireAppRequestFromCC) { r.Ports = make([]uint32, recipe.MaxPorts+1) },
	} {
		req := buildpackReq()
		mutate(req)
		_, err := cfg().DesiredLRP(req)
		require.Error(t, err, field)
		require.True(t, recipe.IsFieldError(err))
		require.Contains(t, err.Error(), field)
	}
}

func TestUpdateKeepsOtherRouteKeys(t *testing.T) {
	u, err := recipe.Update(map[string]string{"diego-ssh": "{}", "cf-router": "old"}, buildpackReq(), 100)
	require.NoError(t, err)
	require.Equal(t, "{}", u.Routes["diego-ssh"])
	require.NotEqual(t, "old", u.Routes["cf-router"])
	require.Equal(t, int32(2), *u.Instances)
	require.Equal(t, "e1", *u.Annotation)
}

func TestTask(t *testing.T) {
	def, err := cfg().Task(&ccmessages.TaskRequestFromCC{TaskGUID: "t1", Command: "echo", DropletURI: "http://d", RootFS: "cflinuxfs4", MemoryMB: 256})
	require.NoError(t, err)
	require.Equal(t, "preloaded:cflinuxfs4", def.RootFs)
	require.Len(t, def.Action.GetSerial().Actions, 2)
	_, err = cfg().Task(&ccmessages.TaskRequestFromCC{TaskGUID: "t1", Command: "echo"})
	require.ErrorContains(t, err, "droplet_uri")
}

func TestSSH(t *testing.T) {
	req := buildpackReq()
	req.AllowSSH = true
	lrp, err := cfg().DesiredLRP(req)
	require.NoError(t, err)
	require.Equal(t, []uint32{8080, 2222}, lrp.Ports)
	acts := lrp.Action.GetCodependent().Actions
	require.Len(t, acts, 2)
	require.Equal(t, "/tmp/lifecycle/diego-sshd", acts[1].GetRun().Path)
	var route map[string]any
	require.NoError(t, json.Unmarshal([]byte(lrp.Routes["diego-ssh"]), &route))
	require.Equal(t, float64(2222), route["container_port"])
	require.Contains(t, route["private_key"], "PRIVATE KEY")
	require.Contains(t, route["host_fingerprint"], "SHA256:")
	// The monitor checks the app's port only.
	require.Len(t, lrp.Monitor.GetTimeout().Action.GetParallel().Actions, 1)
}
