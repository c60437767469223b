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
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"code.cloudfoundry.org/lager/v3"

	bridgeapp "github.com/gavelhq/gavel/cc-bridge/app"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	nsyncapp "github.com/gavelhq/gavel/nsync/app"
	"github.com/gavelhq/gavel/nsync/ccmessages"
	"github.com/gavelhq/gavel/nsync/nsynctest"
	"github.com/gavelhq/gavel/nsync/recipe"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// nsyncConfig is an nsync config for the cluster: the BBS over mutual TLS
// with the named component's certificate, lifecycle bundles from fileServer.
func (c *cluster) nsyncConfig(cert, fileServer string) nsyncapp.Config {
	cfg := nsyncapp.DefaultConfig("")
	cfg.BBSAddresses, cfg.BBSTLS = c.bbsAddrs, c.certs[cert]
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.FileServerURL = fileServer
	cfg.LifecycleBundles = map[string]string{"buildpack/cflinuxfs4": bridgeapp.DefaultLifecycleBundle}
	return cfg
}

// nsyncLogger writes a daemon's lager lines to a file beside the cluster's
// logs (dumped by name when the test fails).
func (c *cluster) nsyncLogger(name string) lager.Logger {
	f, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		if c.t.Failed() {
			data, _ := os.ReadFile(f.Name())
			c.t.Logf("%s log:\n%s", name, tail(data, 4000))
		}
		_ = f.Close()
	})
	l := lager.NewLogger(name)
	l.RegisterSink(lager.NewWriterSink(f, lager.DEBUG))
	return l
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// startNsyncListener runs an nsync listener in this process with the
// cluster's controller certificate and returns its base URL.
func (c *cluster) startNsyncListener(fileServer string) string {
	c.t.Helper()
	cfg := c.nsyncConfig("controller", fileServer)
	if err := cfg.ValidateListener(); err != nil {
		c.t.Fatalf("nsync listener config: %v", err)
	}
	l := nsyncapp.NewListener(cfg, c.nsyncLogger("nsync-listener"))
	nsynctest.Run(c.t, "nsync-listener", l.Runner())
	return "http://" + l.Addr()
}

// dropletApp is the desire request a controller sends for a staged
// buildpack droplet. On the process backend there is no network namespace,
// so the app must listen on its host port (CF_INSTANCE_PORT) rather than the
// container port the recipe puts in PORT, and the recipe's port health
// check (which probes the container port) cannot pass: health check none.
func dropletApp(ccURL, guid, appGUID, startCommand string, instances int32) ccmessages.DesireAppRequestFromCC {
	return ccmessages.DesireAppRequestFromCC{
		ProcessGUID: guid, LogGUID: appGUID, ETag: "1", DropletURI: ccURL + "/droplets/" + appGUID,
		Stack: "cflinuxfs4", StartCommand: `PORT=$CF_INSTANCE_PORT ` + startCommand, NumInstances: instances,
		MemoryMB: 64, DiskMB: 256, HealthCheckType: ccmessages.NoneHealthCheck,
	}
}

// putApp desires req through the nsync listener as a controller does.
func putApp(t *testing.T, listener string, req ccmessages.DesireAppRequestFromCC) {
	t.Helper()
	body, _ := json.Marshal(req)
	r, _ := http.NewRequest(http.MethodPut, listener+"/v1/apps/"+req.ProcessGUID, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PUT /v1/apps/%s: %s: %s", req.ProcessGUID, resp.Status, msg)
	}
}

// dropletServer serves, as a controller's blobstore and the file server
// would, the lifecycle bundle under /v1/static/ and a droplet of the test
// app (app/app, what staging makes of the bits) at /droplet.tgz.
func (c *cluster) dropletServer() string {
	c.t.Helper()
	static := filepath.Join(c.dir, "nsync-static")
	if out, err := exec.Command(bin("gavel-lifecycle"), "bundle", "-o", filepath.Join(static, bridgeapp.DefaultLifecycleBundle)).CombinedOutput(); err != nil {
		c.t.Fatalf("gavel-lifecycle bundle: %v\n%s", err, out)
	}
	app, err := os.ReadFile(bin("app"))
	if err != nil {
		c.t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: "app/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		c.t.Fatal(err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: "app/app", Mode: 0o755, Size: int64(len(app)), Typeflag: tar.TypeReg}); err != nil {
		c.t.Fatal(err)
	}
	if _, err := tw.Write(app); err != nil {
		c.t.Fatal(err)
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		c.t.Fatal(err)
	}
	droplet := buf.Bytes()
	mux := http.NewServeMux()
	mux.Handle("/v1/static/", http.StripPrefix("/v1/static/", http.FileServer(http.Dir(static))))
	mux.HandleFunc("/droplet.tgz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(droplet) })
	srv := httptest.NewServer(mux)
	c.t.Cleanup(srv.Close)
	return srv.URL
}

func (c *cluster) domainFresh(name string) (bool, error) {
	resp, err := c.bbsc.ListDomains(ctx(c.t), &bbsv1.ListDomainsRequest{})
	if err != nil {
		return false, err
	}
	for _, d := range resp.GetDomains() {
		if d.GetName() == name {
			return true, nil
		}
	}
	return false, nil
}

func (c *cluster) desiredExists(guid string) (bool, error) {
	_, err := c.bbsc.GetDesiredLRP(ctx(c.t), &bbsv1.GetDesiredLRPRequest{ProcessGuid: guid})
	if status.Code(err) == codes.NotFound {
		return false, nil
	}
	return err == nil, err
}

// TestNsyncBulkerKeepsAppsWhileControllerIsDown: the bulker (role bulker,
// mutual TLS) desires what the controller double lists and the instances
// run on the cells; while the controller answers 503 for longer than the
// cf-apps TTL, an LRP the controller does not list is kept with its
// instances (cf-apps goes stale, nothing is removed); once the controller
// answers again the bulker removes it and cf-apps is fresh again.
func TestNsyncBulkerKeepsAppsWhileControllerIsDown(t *testing.T) {
	const ttl, poll = 2 * time.Second, 200 * time.Millisecond
	c := start(t, options{})
	files := c.dropletServer()
	cc := nsynctest.NewController()
	t.Cleanup(cc.Close)
	app := dropletApp(files, "nsync-a", "nsync-a", "./app", 2)
	app.DropletURI = files + "/droplet.tgz"
	cc.SetApp(app)

	cfg := c.nsyncConfig("bulker", files)
	cfg.ControllerURL, cfg.ControllerUsername, cfg.ControllerPassword = cc.URL(), cc.User, cc.Password
	cfg.DomainTTL, cfg.PollInterval, cfg.CommunicationTimeout = config.Duration(ttl), config.Duration(poll), config.Duration(5*time.Second)
	cfg.Etcd = etcdclient.Config{Endpoints: c.etcdEndpoints}
	cfg.InstanceID, cfg.LockTTL, cfg.LockRetryInterval = "bulker-0", config.Duration(lockTTL), config.Duration(lockRetry)
	if err := cfg.ValidateBulker(); err != nil {
		t.Fatalf("bulker config: %v", err)
	}
	nsynctest.Run(t, "nsync-bulker", nsyncapp.NewBulker(cfg, c.nsyncLogger("nsync-bulker")).Runner())

	rows := c.waitRunning("nsync-a", 2, placeTimeout)
	checkAnswers(t, rows)
	waitFor(t, 5*time.Second, "cf-apps fresh", func() error {
		if ok, err := c.domainFresh("cf-apps"); err != nil || !ok {
			return fmt.Errorf("fresh %v: %v", ok, err)
		}
		return nil
	})

	// The controller goes down; cf-apps expires.
	cc.SetDown(true)
	down := time.Now()
	waitFor(t, 3*ttl, "cf-apps stale", func() error {
		if ok, err := c.domainFresh("cf-apps"); err != nil || ok {
			return fmt.Errorf("fresh %v: %v", ok, err)
		}
		return nil
	})
	// Drift the controller does not know about: an unlisted cf-apps LRP.
	orphan := dropletApp(files, "nsync-orphan", "nsync-orphan", "./app", 2)
	orphan.DropletURI = files + "/droplet.tgz"
	lrp, err := recipe.Config{FileServerURL: files, LifecycleBundles: cfg.LifecycleBundles, MaxInstances: 100}.DesiredLRP(&orphan)
	if err != nil {
		t.Fatal(err)
	}
	c.desire(lrp)
	// Bulker passes go on with the controller down and cf-apps stale:
	// nothing may be removed, at any point of the outage.
	for time.Since(down) < 2*ttl+10*poll {
		for _, guid := range []string{"nsync-a", "nsync-orphan"} {
			if ok, err := c.desiredExists(guid); err != nil || !ok {
				t.Fatalf("%s removed %s into the controller's outage (exists %v, %v)", guid, time.Since(down).Round(time.Millisecond), ok, err)
			}
		}
		time.Sleep(poll)
	}
	c.waitRunning("nsync-a", 2, time.Second)
	c.waitRunning("nsync-orphan", 2, placeTimeout)
	if ok, err := c.domainFresh("cf-apps"); err != nil || ok {
		t.Fatalf("cf-apps fresh while the controller is down: %v %v", ok, err)
	}

	// The controller answers again: the bulker converges.
	cc.SetDown(false)
	waitFor(t, 10*time.Second, "the bulker removes nsync-orphan", func() error {
		if ok, err := c.desiredExists("nsync-orphan"); err != nil || ok {
			return fmt.Errorf("exists %v: %v", ok, err)
		}
		return nil
	})
	waitFor(t, 5*time.Second, "cf-apps fresh again", func() error {
		if ok, err := c.domainFresh("cf-apps"); err != nil || !ok {
			return fmt.Errorf("fresh %v: %v", ok, err)
		}
		return nil
	})
	waitFor(t, placeTimeout, "nsync-orphan's instances gone", func() error {
		rows, err := c.actuals("nsync-orphan")
		if err != nil || len(rows) > 0 {
			return fmt.Errorf("%s %v", describe(rows), err)
		}
		return nil
	})
	c.waitRunning("nsync-a", 2, time.Second)
}
