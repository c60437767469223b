package devcluster

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"github.com/tedsuo/ifrit/grouper"

	bridgeapp "github.com/gavelhq/gavel/cc-bridge/app"
	"github.com/gavelhq/gavel/cc-bridge/cctest"
	"github.com/gavelhq/gavel/cc-bridge/lifecycle"
	"github.com/gavelhq/gavel/internal/config"
	nsyncapp "github.com/gavelhq/gavel/nsync/app"
)

// BridgeOptions configure the cc-bridge of a dev cluster.
type BridgeOptions struct {
	// PortBase places the controller double on PortBase, the stager on +1,
	// tps-listener on +2, cc-uploader on +3, the file server on +4 and
	// nsync's listener on +5
	// (0: free ports, printed at start).
	PortBase int
	// LifecyclePath is the gavel-lifecycle binary bundled for staging
	// (default: gavel-lifecycle on the PATH; without one, staging fails at
	// the lifecycle download and Info says so).
	LifecyclePath string
}

// BridgeInfo says where the cc-bridge daemons of a dev cluster serve.
type BridgeInfo struct {
	Controller, Stager, TPS, Uploader, FileServer, Nsync string
	// Lifecycle is the bundle's URL, or why there is none.
	Lifecycle string
}

// Lines describes the bridge for gavel dev's banner.
func (b BridgeInfo) Lines() []string {
	return []string{
		fmt.Sprintf("%-14s %s (controller test double: callbacks, droplets, PUT /blobs/NAME for app bits)", "controller", b.Controller),
		fmt.Sprintf("%-14s %s (PUT /v1/staging/GUID)", "stager", b.Stager),
		fmt.Sprintf("%-14s %s (PUT/DELETE /v1/apps/GUID, POST /v1/tasks)", "nsync-listener", b.Nsync),
		fmt.Sprintf("%-14s %s (GET /v1/actual_lrps/GUID[/stats], /v1/bulk_actual_lrp_status?guids=)", "tps-listener", b.TPS),
		fmt.Sprintf("%-14s %s", "cc-uploader", b.Uploader),
		fmt.Sprintf("%-14s %s (lifecycle %s)", "file-server", b.FileServer, b.Lifecycle),
		fmt.Sprintf("%-14s posts crash/rescheduling/readiness callbacks to the controller", "tps-watcher"),
	}
}

func (c *Cluster) bridgeAddr(offset int) string {
	if c.opts.Bridge.PortBase == 0 {
		return "127.0.0.1:0"
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.opts.Bridge.PortBase+offset))
}

// runBridge starts the controller double, the file server (with the
// lifecycle bundle), cc-uploader, the stager, tps-listener and tps-watcher,
// plaintext to the BBS (gavel dev runs plaintext).
func (c *Cluster) runBridge(signals <-chan os.Signal, ready chan<- struct{}) error {
	logger := c.logger.Session("cc-bridge")
	cc, err := cctest.Listen(c.bridgeAddr(0))
	if err != nil {
		return fmt.Errorf("cc-bridge controller double (--bridge-port-base): %w", err)
	}
	info := &BridgeInfo{Controller: cc.URL(), Lifecycle: "missing: no gavel-lifecycle binary (make build), staging will fail"}
	static := filepath.Join(c.opts.DataDir, "static")
	if err := os.MkdirAll(static, 0o755); err != nil {
		_ = cc.Close()
		return fmt.Errorf("cc-bridge static dir: %w", err)
	}
	if path := c.lifecyclePath(); path != "" {
		if err := lifecycle.Bundle(path, filepath.Join(static, bridgeapp.DefaultLifecycleBundle)); err != nil {
			_ = cc.Close()
			return fmt.Errorf("cc-bridge lifecycle bundle: %w", err)
		}
		info.Lifecycle = bridgeapp.DefaultLifecycleBundle
	}

	fs := bridgeapp.DefaultFileServerConfig()
	fs.ListenAddress, fs.DebugAddress, fs.StaticDirectory = c.bridgeAddr(4), "127.0.0.1:0", static
	up := bridgeapp.DefaultUploaderConfig()
	up.ListenAddress, up.DebugAddress, up.CCBaseURL = c.bridgeAddr(3), "127.0.0.1:0", cc.URL()
	fileServer := bridgeapp.NewFileServer(fs, logger.Session("file-server"))
	uploader := bridgeapp.NewUploader(up, logger.Session("cc-uploader"))
	tl := bridgeapp.DefaultTPSListenerConfig()
	tl.ListenAddress, tl.DebugAddress, tl.InsecurePlaintext = c.bridgeAddr(2), "127.0.0.1:0", true
	tl.BBSAddresses = []string{c.bbs.Addr()}
	listener := bridgeapp.NewTPSListener(tl, logger.Session("tps-listener"))
	w := bridgeapp.DefaultTPSWatcherConfig()
	w.DebugAddress, w.InsecurePlaintext, w.CCBaseURL = "127.0.0.1:0", true, cc.URL()
	w.BBSAddresses, w.Etcd, w.InstanceID = []string{c.bbs.Addr()}, c.etcdConfig(), "dev-tps-watcher"
	t := c.timings()
	w.LockTTL, w.LockRetryInterval = config.Duration(t.lockTTL), config.Duration(t.lockRetry)
	watcher := bridgeapp.NewTPSWatcher(w, logger.Session("tps-watcher"))
	// The stager needs the file server's and uploader's bound addresses: it starts after them.
	var stager *bridgeapp.Stager
	stagerRunner := ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		st := bridgeapp.DefaultStagerConfig()
		st.ListenAddress, st.DebugAddress, st.InsecurePlaintext = c.bridgeAddr(1), "127.0.0.1:0", true
		st.BBSAddresses, st.CCBaseURL = []string{c.bbs.Addr()}, cc.URL()
		st.FileServerURL, st.CCUploaderURL = fileServer.URL(), uploader.URL()
		if err := st.Validate(); err != nil {
			return fmt.Errorf("stager config: %w", err)
		}
		stager = bridgeapp.NewStager(st, logger.Session("stager"))
		return runNested(stager.Runner(), signals, ready)
	})
	// nsync's listener desires apps for the controller; it needs the file
	// server's bound address for the lifecycle bundle, so it starts after it.
	// (No bulker: the controller double keeps no app list, so a bulker
	// would find every cf-apps LRP deleted.)
	var nsyncListener *nsyncapp.Listener
	nsyncRunner := ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		nc := nsyncapp.DefaultConfig("127.0.0.1:0")
		nc.ListenAddress, nc.InsecurePlaintext = c.bridgeAddr(5), true
		nc.BBSAddresses, nc.FileServerURL = []string{c.bbs.Addr()}, fileServer.URL()
		nc.LifecycleBundles = map[string]string{"buildpack/cflinuxfs4": bridgeapp.DefaultLifecycleBundle}
		if err := nc.ValidateListener(); err != nil {
			return fmt.Errorf("nsync-listener config: %w", err)
		}
		nsyncListener = nsyncapp.NewListener(nc, logger.Session("nsync-listener"))
		return runNested(nsyncListener.Runner(), signals, ready)
	})
	for name, v := range map[string]interface{ Validate() error }{"file-server": fs, "cc-uploader": up, "tps-listener": tl, "tps-watcher": w} {
		if err := v.Validate(); err != nil {
			_ = cc.Close()
			return fmt.Errorf("%s config: %w", name, err)
		}
	}
	group := grouper.NewOrdered(os.Interrupt, grouper.Members{
		{Name: "controller-double", Runner: cc},
		{Name: "file-server", Runner: fileServer.Runner()},
		{Name: "cc-uploader", Runner: uploader.Runner()},
		{Name: "stager", Runner: stagerRunner},
		{Name: "nsync-listener", Runner: nsyncRunner},
		{Name: "tps-listener", Runner: listener.Runner()},
		{Name: "tps-watcher", Runner: watcher.Runner()},
	})
	p := ifrit.Background(group)
	select {
	case <-p.Ready():
	case err := <-p.Wait():
		return fmt.Errorf("cc-bridge: %w", err)
	case sig := <-signals:
		p.Signal(sig)
		return <-p.Wait()
	}
	info.Nsync = "http://" + nsyncListener.Addr()
	info.Stager, info.TPS, info.Uploader, info.FileServer = stager.URL(), listener.URL(), uploader.URL(), fileServer.URL()
	c.bridge.Store(info)
	logger.Info("started", lager.Data{"controller": info.Controller, "stager": info.Stager, "tps": info.TPS})
	close(ready)
	select {
	case sig := <-signals:
		p.Signal(sig)
		return <-p.Wait()
	case err := <-p.Wait():
		return fmt.Errorf("cc-bridge stopped: %w", err)
	}
}

// lifecyclePath is the gavel-lifecycle binary to bundle, or "".
func (c *Cluster) lifecyclePath() string {
	if c.opts.Bridge.LifecyclePath != "" {
		return c.opts.Bridge.LifecyclePath
	}
	if p, err := exec.LookPath(lifecycle.Binary); err == nil {
		return p
	}
	return ""
}

// BridgeInfo describes the running cc-bridge (zero before it is ready).
func (c *Cluster) BridgeInfo() BridgeInfo {
	if b := c.bridge.Load(); b != nil {
		return *b
	}
	return BridgeInfo{}
}
