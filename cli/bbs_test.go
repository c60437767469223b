package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

// startBBS runs an in-process BBS on the shared test etcd and returns its
// address once it is active; mutate may change its (plaintext) config.
func startBBS(t *testing.T, mutate ...func(*app.Config)) string {
	t.Helper()
	b, _ := replica(t, etcdtest.Prefix(t), "bbs", "127.0.0.1:0", mutate...)
	require.Eventually(t, b.Held, 10*time.Second, 20*time.Millisecond)
	return b.Addr()
}

// replica runs one BBS replica on prefix, serving on listen, until stop or
// the test's end; a passive replica serves too (reads and events).
func replica(t *testing.T, prefix, name, listen string, mutate ...func(*app.Config)) (b *app.BBS, stop func()) {
	t.Helper()
	cfg := app.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.InstanceID = name
	cfg.ListenAddress, cfg.DebugAddress = listen, "127.0.0.1:0"
	cfg.KeyPrefix = prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.LockTTL = config.Duration(2 * time.Second)
	cfg.LockRetryInterval = config.Duration(100 * time.Millisecond)
	for _, m := range mutate {
		m(&cfg)
	}
	require.NoError(t, cfg.Validate())
	b = app.New(cfg, lager.NewLogger(name))
	proc := ifrit.Background(b.Runner())
	var once sync.Once
	stop = func() { once.Do(func() { proc.Signal(os.Interrupt); <-proc.Wait() }) }
	t.Cleanup(stop)
	b.Addr() // serving (a passive replica is never Ready: that waits for the lock)
	return b, stop
}

// gavel runs a command against the BBS at addr.
func gavel(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	return execute(t, append(args, "--bbs-address", addr)...)
}

func TestPushListScaleRemove(t *testing.T) {
	addr := startBBS(t)
	out, err := gavel(t, addr, "push", "web", "--command", "exec ./server", "--instances", "2", "--memory", "128M", "--route", "web.example.com", "--env", "A=1")
	require.NoError(t, err)
	require.Contains(t, out, "desired web: 2 instance(s) of 128 MB")

	out, err = gavel(t, addr, "lrps")
	require.NoError(t, err)
	require.Regexp(t, `web\s+gavel\s+2\s+0\s+0\s+2\s+0\s+128M`, out)

	out, err = gavel(t, addr, "lrp", "web", "--json")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, "the desired LRP and its two instances")
	var desired map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &desired))
	require.Equal(t, "web", desired["process_guid"], "proto field names")
	require.Contains(t, desired["routes"].(map[string]any)["cf-router"], "web.example.com")
	var inst map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[2]), &inst))
	require.Equal(t, "ACTUAL_LRP_STATE_UNCLAIMED", inst["state"])

	_, err = gavel(t, addr, "scale", "web", "3")
	require.NoError(t, err)
	out, err = gavel(t, addr, "lrp", "web")
	require.NoError(t, err)
	require.Equal(t, 3, strings.Count(out, "UNCLAIMED"))

	_, err = gavel(t, addr, "push", "web", "--command", "x")
	require.ErrorContains(t, err, "already exists")

	_, err = gavel(t, addr, "remove-lrp", "web")
	require.NoError(t, err)
	_, err = gavel(t, addr, "lrp", "web")
	require.ErrorContains(t, err, "not found")
}

func TestSpecFilesAreCheckedBeforeSending(t *testing.T) {
	addr := startBBS(t)
	good := `process_guid: from-yaml
domain: d
root_fs: preloaded:cflinuxfs4
instances: 1
memory_mb: 32
action:
  run:
    path: /bin/sleep
    args: ["100"]
`
	_, err := gavel(t, addr, "desire-lrp", "-f", writeFile(t, "lrp.yaml", good))
	require.NoError(t, err)

	cases := []struct{ name, file, content, want string }{
		{"wrong field name", "a.json", `{"process_guid":"x","domain":"d","instancess":1}`, `unknown field "instancess"`},
		{"wrong type", "b.json", `{"process_guid":"x","instances":"two"}`, "instances"},
		{"bad value", "c.json", `{"process_guid":"x","domain":"d","root_fs":"preloaded:x","instances":-1,"action":{"run":{"path":"/x"}}}`, "desired_lrp.instances: must be >= 0"},
		{"bad yaml", "d.yaml", "process_guid: [", "not valid YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.file, tc.content)
			_, err := gavel(t, addr, "desire-lrp", "-f", path)
			require.Error(t, err)
			require.Contains(t, err.Error(), path, "the error names the file")
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "\n", "one line")
		})
	}
	out, err := gavel(t, addr, "lrps", "--json")
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(out, "process_guid"), "only the good spec reached the BBS")

	_, err = gavel(t, addr, "update-lrp", "from-yaml", "-f", writeFile(t, "p.json", `{"instances": 4, "annotation": "v2"}`))
	require.NoError(t, err)
	out, err = gavel(t, addr, "lrps")
	require.NoError(t, err)
	require.Regexp(t, `from-yaml\s+d\s+4`, out)
}

func TestTasksFromTheCLI(t *testing.T) {
	addr := startBBS(t)
	out, err := gavel(t, addr, "run-task", "build", "--command", "echo hi > out", "--result-file", "out", "--guid", "build-1")
	require.NoError(t, err)
	require.Contains(t, out, "task build-1 is PENDING")
	out, err = gavel(t, addr, "tasks")
	require.NoError(t, err)
	require.Regexp(t, `build-1\s+gavel\s+PENDING`, out)
	_, err = gavel(t, addr, "cancel-task", "build-1")
	require.NoError(t, err)
	out, err = gavel(t, addr, "task", "build-1", "--json")
	require.NoError(t, err)
	var task map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &task))
	require.Equal(t, true, task["failed"])
	require.Equal(t, "task was cancelled", task["failure_reason"])
	_, err = gavel(t, addr, "run-task", "x")
	require.ErrorContains(t, err, "--command")
}

func TestWaitTimesOutNamingWhatIsMissing(t *testing.T) {
	addr := startBBS(t)
	_, err := gavel(t, addr, "push", "slow", "--command", "sleep 100", "--instances", "2")
	require.NoError(t, err)
	_, err = gavel(t, addr, "wait", "slow", "--running", "2", "--wait-timeout", "500ms")
	require.Error(t, err)
	require.Contains(t, err.Error(), "0 of 2 instances of slow running")
	require.Contains(t, err.Error(), "index 0 UNCLAIMED")
	require.Contains(t, err.Error(), "index 1 UNCLAIMED")
}

func TestDomainsAndEvents(t *testing.T) {
	addr := startBBS(t)
	_, err := gavel(t, addr, "set-domain", "cf-apps", "--ttl", "2m")
	require.NoError(t, err)
	out, err := gavel(t, addr, "domains")
	require.NoError(t, err)
	require.Contains(t, out, "cf-apps")
	_, err = gavel(t, addr, "set-domain", "x", "--ttl", "1500ms")
	require.ErrorContains(t, err, "--ttl")

	_, err = gavel(t, addr, "push", "ev", "--command", "sleep 1")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cmd := NewRootCommand()
	var buf bytes.Buffer
	cmd.SetOut(&buf)
	cmd.SetArgs([]string{"events", "--since", "1", "--kind", "desired_lrp,actual_lrp", "--bbs-address", addr})
	require.NoError(t, cmd.ExecuteContext(ctx))
	require.Contains(t, buf.String(), "desired_lrp_created ev instances=1")
	require.Contains(t, buf.String(), "actual_lrp_instance_created ev/0 ORDINARY UNCLAIMED")
}

func TestNoBBSIsOneLine(t *testing.T) {
	_, err := execute(t, "lrps", "--bbs-address", "127.0.0.1:1", "--timeout", "5s")
	require.Error(t, err)
	require.Equal(t, "cannot reach the BBS at 127.0.0.1:1: is it running? (make run starts one)", err.Error())
}

func TestClientConfigFile(t *testing.T) {
	addr := startBBS(t)
	path := writeFile(t, "config.json", "")
	require.NoError(t, WriteClientConfig(path, ClientConfig{BBSAddresses: []string{addr}}))
	_, err := execute(t, "push", "cfg", "--command", "sleep 1", "--config", path)
	require.NoError(t, err)
	out, err := execute(t, "lrps", "--config", path)
	require.NoError(t, err)
	require.Contains(t, out, "cfg")
}

// gavel apply -f is idempotent: it desires, then reports unchanged, then
// updates only what an update may change, and refuses the rest; gavel push
// of an existing name says how to change it.
func TestApplyIsIdempotentAndPushExplainsUpdates(t *testing.T) {
	addr := startBBS(t)
	spec := t.TempDir() + "/web.json"
	write := func(instances int, memory int) {
		doc := `{"process_guid":"web","domain":"d","root_fs":"preloaded:cflinuxfs4","instances":` + itoa(instances) +
			`,"memory_mb":` + itoa(memory) + `,"disk_mb":128,"ports":[8080],"routes":{"cf-router":"[{\"hostnames\":[\"web.example.com\"],\"port\":8080}]"},` +
			`"action":{"run":{"path":"sh","args":["-c","exec ./server"]}}}`
		require.NoError(t, os.WriteFile(spec, []byte(doc), 0o644))
	}
	write(2, 64)
	out, err := gavel(t, addr, "apply", "-f", spec)
	require.NoError(t, err, out)
	require.Contains(t, out, "desired web: 2 instance(s)")
	out, err = gavel(t, addr, "apply", "-f", spec)
	require.NoError(t, err, out)
	require.Contains(t, out, "web unchanged")
	write(3, 64)
	out, err = gavel(t, addr, "apply", "-f", spec)
	require.NoError(t, err, out)
	require.Contains(t, out, "updated web: 3 instance(s)")
	out, err = gavel(t, addr, "apply", "-f", spec)
	require.NoError(t, err, out)
	require.Contains(t, out, "web unchanged")
	write(3, 256)
	_, err = gavel(t, addr, "apply", "-f", spec)
	require.ErrorContains(t, err, "differs in [memory_mb], which an update cannot change")

	_, err = gavel(t, addr, "push", "web", "--command", "exec ./server")
	require.ErrorContains(t, err, "web already exists: change it with gavel scale web N")
}

func itoa(i int) string { return strconv.Itoa(i) }
