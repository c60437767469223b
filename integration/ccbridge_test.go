package integration_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gavelhq/gavel/bbs/models"
	bridgeapp "github.com/gavelhq/gavel/cc-bridge/app"
	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	"github.com/gavelhq/gavel/cc-bridge/cctest"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// bridge is the cc-bridge daemons of a cluster, each its own process with
// mutual TLS towards the BBS and the reps, and the
// controller test double (a real Cloud Controller cannot run here).
type bridge struct {
	cc                                          *cctest.Server
	stager, tps, uploader, fileServer           string // base URLs
	stagerD, tpsD, watcherD, uploaderD, fileSrv *daemon
}

func (c *cluster) startBridge() *bridge {
	c.t.Helper()
	cc, err := cctest.Listen("127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cc.Close() })
	b := &bridge{cc: cc}
	// A certificate of role controller, as a deployment gives these daemons.
	certs := c.certs["controller"]

	static := filepath.Join(c.dir, "static")
	bundle := filepath.Join(static, bridgeapp.DefaultLifecycleBundle)
	if out, err := exec.Command(bin("gavel-lifecycle"), "bundle", "-o", bundle).CombinedOutput(); err != nil {
		c.t.Fatalf("gavel-lifecycle bundle: %v\n%s", err, out)
	}

	fs := bridgeapp.DefaultFileServerConfig()
	fs.ListenAddress, fs.DebugAddress, fs.StaticDirectory = c.freeAddr(), "127.0.0.1:0", static
	b.fileServer = "http://" + fs.ListenAddress
	b.fileSrv = c.spawn("file-server", bin("file-server"), "-config", c.writeJSON("file-server.json", fs))

	up := bridgeapp.DefaultUploaderConfig()
	up.ListenAddress, up.DebugAddress = c.freeAddr(), "127.0.0.1:0"
	up.JobPollingInterval, up.CCBaseURL = config.Duration(50*time.Millisecond), cc.URL()
	b.uploader = "http://" + up.ListenAddress
	b.uploaderD = c.spawn("cc-uploader", bin("cc-uploader"), "-config", c.writeJSON("cc-uploader.json", up))

	st := bridgeapp.DefaultStagerConfig()
	st.ListenAddress, st.DebugAddress = c.freeAddr(), "127.0.0.1:0"
	st.BBSAddresses, st.BBSTLS = c.bbsAddrs, certs
	st.CCBaseURL, st.FileServerURL, st.CCUploaderURL = cc.URL(), b.fileServer, b.uploader
	b.stager = "http://" + st.ListenAddress
	b.stagerD = c.spawn("stager", bin("stager"), "-config", c.writeJSON("stager.json", st))

	tl := bridgeapp.DefaultTPSListenerConfig()
	tl.ListenAddress, tl.DebugAddress = c.freeAddr(), "127.0.0.1:0"
	tl.BBSAddresses, tl.BBSTLS, tl.RepClientTLS = c.bbsAddrs, certs, certs
	b.tps = "http://" + tl.ListenAddress
	b.tpsD = c.spawn("tps-listener", bin("tps-listener"), "-config", c.writeJSON("tps-listener.json", tl))

	w := bridgeapp.DefaultTPSWatcherConfig()
	w.DebugAddress = "127.0.0.1:0"
	w.BBSAddresses, w.BBSTLS, w.CCBaseURL = c.bbsAddrs, certs, cc.URL()
	w.Etcd = etcdclient.Config{Endpoints: c.etcdEndpoints}
	w.InstanceID = "tps-watcher"
	w.LockTTL = config.Duration(lockTTL)
	w.LockRetryInterval = config.Duration(lockRetry)
	b.watcherD = c.spawn("tps-watcher", bin("tps-watcher"), "-config", c.writeJSON("tps-watcher.json", w))

	for name, u := range map[string]string{"file-server": b.fileServer, "cc-uploader": b.uploader, "stager": b.stager, "tps-listener": b.tps} {
		waitFor(c.t, startTimeout, name+" answers /health", func() error {
			_, err := get(strings.TrimPrefix(u, "http://"), "/health")
			return err
		})
	}
	waitFor(c.t, startTimeout, "tps-watcher watches", func() error {
		if err := b.watcherD.exitedErr(); err != nil {
			return err
		}
		if !strings.Contains(readFile(b.watcherD.logPath), `"tps-watcher.watching"`) {
			return errors.New("no watching line yet")
		}
		return nil
	})
	return b
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// appBits is a tarball of the test app with a Procfile naming it.
func appBits(t *testing.T) []byte {
	t.Helper()
	app, err := os.ReadFile(bin("app"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Procfile", 0o644, []byte("web: ./app\n")}, {"app", 0o755, app}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (b *bridge) stage(t *testing.T, stagingGUID, appGUID string, mutate ...func(*bm.StagingRequestFromCC)) {
	t.Helper()
	data, _ := json.Marshal(bm.BuildpackStagingData{
		AppBitsDownloadURI: b.cc.URL() + "/blobs/" + appGUID, DropletUploadURI: b.cc.URL() + "/staging/droplets/" + appGUID + "/upload",
		// No cache the first time: its download is a Try (404 ignored).
		BuildArtifactsCacheDownloadURI: b.cc.URL() + "/staging/buildpack_cache/" + appGUID + "/download",
		BuildArtifactsCacheUploadURI:   b.cc.URL() + "/staging/buildpack_cache/" + appGUID + "/upload",
		Stack:                          "cflinuxfs4",
	})
	sr := bm.StagingRequestFromCC{
		AppID: appGUID, LogGUID: appGUID, MemoryMB: 256, DiskMB: 1024, Lifecycle: bm.LifecycleBuildpack, LifecycleData: data,
		Timeout: 120, CompletionCB: b.cc.URL() + "/internal/v3/staging/" + stagingGUID + "/build_completed",
	}
	for _, m := range mutate {
		m(&sr)
	}
	body, _ := json.Marshal(sr)
	req, _ := http.NewRequest(http.MethodPut, b.stager+"/v1/staging/"+stagingGUID, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("stage: %s: %s", resp.Status, msg)
	}
}

func (b *bridge) instances(path string) ([]bm.LRPInstance, error) {
	resp, err := httpClient.Get(b.tps + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	var out []bm.LRPInstance
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// TestCCBridgeEndToEnd stages an app from a tarball of bits through the
// stager, gets its droplet to the controller through cc-uploader, desires
// it through nsync's listener, sees it RUNNING through tps (with stats from its cells), crashes it
// (crash callback with the crash count) and drains its cell (rescheduling
// callback).
func TestCCBridgeEndToEnd(t *testing.T) {
	c := start(t, options{})
	b := c.startBridge()
	b.cc.SetJobPolls(2) // the uploader polls the job once before it finishes
	b.cc.PutBlob("app-1", appBits(t))

	began := time.Now()
	b.stage(t, "stage-1", "app-1")
	if err := b.cc.Wait(60*time.Second, func() bool { return len(b.cc.Stagings("stage-1")) > 0 }); err != nil {
		t.Fatalf("no staging response: %v", err)
	}
	resp := b.cc.Stagings("stage-1")[0]
	if resp.Error != nil {
		t.Fatalf("staging failed: %+v", *resp.Error)
	}
	var result bm.StagingResult
	if err := json.Unmarshal(*resp.Result, &result); err != nil {
		t.Fatalf("staging result %s: %v", *resp.Result, err)
	}
	if result.ProcessTypes["web"] != "./app" || result.LifecycleMetadata["detected_buildpack"] == "" {
		t.Fatalf("staging result: %s", *resp.Result)
	}
	droplet, ok := b.cc.Droplet("app-1")
	if !ok || len(droplet) == 0 {
		t.Fatal("no droplet uploaded through cc-uploader")
	}
	if _, ok := b.cc.BuildCache("app-1"); !ok {
		t.Fatal("no build artifacts cache uploaded")
	}
	t.Logf("staged app-1 in %s (droplet %d bytes)", time.Since(began).Round(time.Millisecond), len(droplet))

	// Desired as a controller does: PUT to nsync's listener, which builds the
	// LRP from the droplet the stager uploaded and the file server's lifecycle.
	nsync := c.startNsyncListener(b.fileServer)
	putApp(t, nsync, dropletApp(b.cc.URL(), "app-1-v1", "app-1", result.ProcessTypes["web"], 2))
	got, err := c.client().GetDesiredLRP(ctx(t), &bbsv1.GetDesiredLRPRequest{ProcessGuid: "app-1-v1"})
	if err != nil {
		t.Fatalf("the LRP nsync desired: %v", err)
	}
	d := got.GetDesiredLrp()
	lc, setup := d.GetCachedDependencies(), d.GetSetup().GetSerial().GetActions()
	if d.GetDomain() != "cf-apps" || d.GetAnnotation() != "1" || len(lc) != 1 || len(setup) != 1 ||
		lc[0].GetFrom() != b.fileServer+"/v1/static/"+bridgeapp.DefaultLifecycleBundle ||
		setup[0].GetDownload().GetFrom() != b.cc.URL()+"/droplets/app-1" {
		t.Fatalf("nsync desired %v", d)
	}
	rows := c.waitRunning("app-1-v1", 2, placeTimeout)
	checkAnswers(t, rows)

	var insts []bm.LRPInstance
	waitFor(t, 10*time.Second, "tps reports 2 RUNNING", func() error {
		var err error
		if insts, err = b.instances("/v1/actual_lrps/app-1-v1"); err != nil {
			return err
		}
		if len(insts) != 2 || insts[0].State != bm.StateRunning || insts[1].State != bm.StateRunning {
			return fmt.Errorf("tps: %+v", insts)
		}
		return nil
	})
	if insts[0].InstanceGUID != rows[0].GetInstanceKey().GetInstanceGuid() || insts[0].Port == 0 {
		t.Fatalf("tps instance 0 %+v, BBS %s", insts[0], describe(rows))
	}
	stats, err := b.instances("/v1/actual_lrps/app-1-v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if s.Stats == nil || s.Stats.Unavailable != "" || s.Stats.MemoryBytes == 0 || s.Stats.DiskBytes == 0 || s.Stats.MemoryQuota != 64<<20 {
			t.Fatalf("stats of instance %d: %+v", s.Index, s.Stats)
		}
	}
	t.Logf("tps stats: instance 0 mem %d B, disk %d B, cpu %.4f", stats[0].Stats.MemoryBytes, stats[0].Stats.DiskBytes, stats[0].Stats.CPU)
	resp2, err := httpClient.Get(b.tps + "/v1/bulk_actual_lrp_status?guids=app-1-v1,absent")
	if err != nil {
		t.Fatal(err)
	}
	var bulk map[string][]bm.LRPInstance
	err = json.NewDecoder(resp2.Body).Decode(&bulk)
	resp2.Body.Close()
	if err != nil || len(bulk["app-1-v1"]) != 2 || bulk["absent"] == nil {
		t.Fatalf("bulk status: %v %+v", err, bulk)
	}

	// Crash instance 0: kill its process.
	pidText, err := get(hostAddr(rows[0]), "/pid")
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(pidText)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	if err := b.cc.Wait(30*time.Second, func() bool { return len(b.cc.Crashes("app-1-v1")) > 0 }); err != nil {
		t.Fatalf("no crash callback: %v", err)
	}
	crash := b.cc.Crashes("app-1-v1")[0]
	if crash.Index != 0 || crash.CrashCount != 1 || crash.Reason != bm.ReasonCrashed ||
		crash.Instance != rows[0].GetInstanceKey().GetInstanceGuid() || crash.CellID != rows[0].GetInstanceKey().GetCellId() {
		t.Fatalf("crash callback %+v, instance was %s", crash, describe(rows[:1]))
	}
	t.Logf("crash callback: %+v", crash)
	rows = c.waitRunning("app-1-v1", 2, placeTimeout)

	// Drain instance 1's cell: its instance is evacuated and rescheduled.
	from := rows[1].GetInstanceKey().GetCellId()
	if out, err := c.gavel("drain", from); err != nil {
		t.Fatalf("gavel drain %s: %v\n%s", from, err, out)
	}
	if err := b.cc.Wait(2*placeTimeout, func() bool { return len(b.cc.Reschedulings("app-1-v1")) > 0 }); err != nil {
		t.Fatalf("no rescheduling callback: %v", err)
	}
	r := b.cc.Reschedulings("app-1-v1")[0]
	if r.CellID != from || r.Reason != bm.ReasonEvacuating {
		t.Fatalf("rescheduling callback %+v, drained %s", r, from)
	}
	waitFor(t, 2*placeTimeout, "app-1-v1 runs off "+from, func() error {
		rows, err := c.actuals("app-1-v1")
		if err != nil {
			return err
		}
		for _, a := range rows {
			if a.GetInstanceKey().GetCellId() == from || a.GetState() != models.Running {
				return fmt.Errorf("now %s", describe(rows))
			}
		}
		return nil
	})
}

// TestCCBridgeStagingFailures: an app with no start command fails staging
// with NoAppDetectedError, one larger than any cell with
// InsufficientResources; docker staging is refused at once.
func TestCCBridgeStagingFailures(t *testing.T) {
	c := start(t, options{cells: []cellSpec{{zone: "z1"}}})
	b := c.startBridge()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	_ = tw.WriteHeader(&tar.Header{Name: "README", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("hi"))
	_ = tw.Close()
	_ = gz.Close()
	b.cc.PutBlob("nostart", buf.Bytes())
	b.stage(t, "stage-nostart", "nostart")
	if err := b.cc.Wait(60*time.Second, func() bool { return len(b.cc.Stagings("stage-nostart")) > 0 }); err != nil {
		t.Fatalf("no staging response: %v", err)
	}
	resp := b.cc.Stagings("stage-nostart")[0]
	if resp.Error == nil || resp.Error.ID != bm.NoAppDetectedError {
		t.Fatalf("want NoAppDetectedError, got %+v", resp)
	}

	b.stage(t, "stage-huge", "nostart", func(r *bm.StagingRequestFromCC) { r.MemoryMB = 4096 }) // the cell has 1024 MB
	if err := b.cc.Wait(60*time.Second, func() bool { return len(b.cc.Stagings("stage-huge")) > 0 }); err != nil {
		t.Fatalf("no staging response: %v", err)
	}
	if resp := b.cc.Stagings("stage-huge")[0]; resp.Error == nil || resp.Error.ID != bm.InsufficientResources {
		t.Fatalf("want InsufficientResources, got %+v", resp.Error)
	}

	body, _ := json.Marshal(bm.StagingRequestFromCC{AppID: "d", Lifecycle: bm.LifecycleDocker, LifecycleData: json.RawMessage(`{"docker_image":"nginx"}`)})
	req, _ := http.NewRequest(http.MethodPut, b.stager+"/v1/staging/stage-docker", bytes.NewReader(body))
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if hr.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "docker staging is not supported") {
		t.Fatalf("docker staging: %s %s", hr.Status, msg)
	}
}

// TestCCBridgeDaemonsLoadConfigAndStopOnSIGTERM: each daemon refuses a bad
// config naming the field (exit 2), and one with a good config exits 0 on SIGTERM.
func TestCCBridgeDaemonsLoadConfigAndStopOnSIGTERM(t *testing.T) {
	skipIfShort(t)
	dir := t.TempDir()
	write := func(name string, v any) string {
		data, _ := json.Marshal(v)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.json", map[string]any{"listen_address": ""})
	fs := bridgeapp.DefaultFileServerConfig()
	fs.ListenAddress, fs.DebugAddress, fs.StaticDirectory = "127.0.0.1:0", "127.0.0.1:0", dir
	up := bridgeapp.DefaultUploaderConfig()
	up.ListenAddress, up.DebugAddress = "127.0.0.1:0", "127.0.0.1:0"
	st := bridgeapp.DefaultStagerConfig()
	st.ListenAddress, st.DebugAddress, st.InsecurePlaintext = "127.0.0.1:0", "127.0.0.1:0", true
	tl := bridgeapp.DefaultTPSListenerConfig()
	tl.ListenAddress, tl.DebugAddress, tl.InsecurePlaintext = "127.0.0.1:0", "127.0.0.1:0", true
	w := bridgeapp.DefaultTPSWatcherConfig()
	w.DebugAddress, w.InsecurePlaintext, w.DisableLock, w.CCBaseURL = "127.0.0.1:0", true, true, "http://127.0.0.1:1"
	w.BBSAddresses = []string{"127.0.0.1:1"} // no BBS: it keeps retrying its first list until the signal
	cases := []struct {
		name, good, badField string
		ready                string
	}{
		{"file-server", write("fs.json", fs), "listen_address: is required", "api.serving"},
		{"cc-uploader", write("up.json", up), "listen_address: is required", "api.serving"},
		{"stager", write("st.json", st), "listen_address: is required", "api.serving"},
		{"tps-listener", write("tl.json", tl), "listen_address: is required", "api.serving"},
		{"tps-watcher", write("w.json", w), "unknown field", "debug-server.started"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(bin(tc.name), "-config", bad).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.badField) {
				t.Fatalf("bad config: %v\n%s", err, out)
			}
			logPath := filepath.Join(dir, tc.name+".log")
			logf, _ := os.Create(logPath)
			defer logf.Close()
			cmd := exec.Command(bin(tc.name), "-config", tc.good)
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, startTimeout, tc.name+" starts", func() error {
				if !strings.Contains(readFile(logPath), tc.ready) {
					return errors.New("not yet: " + readFile(logPath))
				}
				return nil
			})
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("exit after SIGTERM: %v\n%s", err, readFile(logPath))
				}
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("did not stop on SIGTERM\n%s", readFile(logPath))
			}
		})
	}
}
