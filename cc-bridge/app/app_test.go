package app_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/cc-bridge/app"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/tlsconfig"
)

func TestConfigValidation(t *testing.T) {
	stager := app.DefaultStagerConfig()
	require.ErrorContains(t, stager.Validate(), "bbs_tls.ca_file: required: mTLS is on by default")
	stager.InsecurePlaintext = true
	require.NoError(t, stager.Validate())
	stager.BBSTLS = tlsconfig.Files{CAFile: "x"}
	require.ErrorContains(t, stager.Validate(), "contradictory")
	stager = app.DefaultStagerConfig()
	stager.InsecurePlaintext = true
	stager.FileServerURL, stager.LifecycleBundles = "ftp://x", map[string]string{"buildpack/s": ""}
	stager.DefaultStagingTimeout = 0
	err := stager.Validate()
	require.ErrorContains(t, err, "file_server_url: want http(s)://host:port")
	require.ErrorContains(t, err, `lifecycle_bundles["buildpack/s"]: path is empty`)
	require.ErrorContains(t, err, "default_staging_timeout: must be > 0")

	l := app.DefaultTPSListenerConfig()
	require.ErrorContains(t, l.Validate(), "rep_client_tls.ca_file: required")
	l.InsecurePlaintext, l.MaxBulkGuids, l.MaxInFlightRequests = true, 0, 0
	err = l.Validate()
	require.ErrorContains(t, err, "max_bulk_guids: must be >= 1")
	require.ErrorContains(t, err, "max_in_flight_requests: must be >= 1")

	w := app.DefaultTPSWatcherConfig()
	w.InsecurePlaintext = true
	err = w.Validate()
	require.ErrorContains(t, err, "cc_base_url: want http(s)://host:port")
	require.ErrorContains(t, err, "etcd.endpoints: required for the tps_watcher lock")
	w.CCBaseURL, w.DisableLock, w.Workers = "http://127.0.0.1:9", true, 0
	require.ErrorContains(t, w.Validate(), "workers: must be >= 1")

	u := app.DefaultUploaderConfig()
	require.NoError(t, u.Validate(), "cc-uploader needs no BBS")
	u.JobPollingInterval = config.Duration(-time.Second)
	require.ErrorContains(t, u.Validate(), "job_polling_interval: must be > 0")

	f := app.DefaultFileServerConfig()
	require.ErrorContains(t, f.Validate(), "static_directory: is required")
}

func TestLoadRefusesUnknownFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"static_directory":"/tmp","listen_adress":"x"}`), 0o644))
	_, err := app.LoadFileServer(path)
	require.ErrorContains(t, err, "listen_adress")
}

// The HTTP daemons serve, answer /health, and stop on a signal.
func TestDaemonsServeAndStop(t *testing.T) {
	fs := app.DefaultFileServerConfig()
	fs.ListenAddress, fs.DebugAddress, fs.StaticDirectory = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	up := app.DefaultUploaderConfig()
	up.ListenAddress, up.DebugAddress = "127.0.0.1:0", "127.0.0.1:0"
	st := app.DefaultStagerConfig()
	st.ListenAddress, st.DebugAddress, st.InsecurePlaintext = "127.0.0.1:0", "127.0.0.1:0", true
	tl := app.DefaultTPSListenerConfig()
	tl.ListenAddress, tl.DebugAddress, tl.InsecurePlaintext = "127.0.0.1:0", "", true
	type daemon interface {
		Runner() ifrit.Runner
		URL() string
		DebugAddr() string
	}
	logger := lager.NewLogger("test")
	for name, d := range map[string]daemon{
		"file-server": app.NewFileServer(fs, logger), "cc-uploader": app.NewUploader(up, logger),
		"stager": app.NewStager(st, logger), "tps-listener": app.NewTPSListener(tl, logger),
	} {
		t.Run(name, func(t *testing.T) {
			proc := ifrit.Invoke(d.Runner())
			resp, err := http.Get(d.URL() + "/health")
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			if d.DebugAddr() != "" {
				resp, err = http.Get("http://" + d.DebugAddr() + "/metrics")
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode)
			}
			proc.Signal(os.Interrupt)
			select {
			case err := <-proc.Wait():
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("did not stop")
			}
		})
	}
}
