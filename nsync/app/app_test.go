package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/nsync/app"
	"github.com/gavelhq/gavel/nsync/ccmessages"
	"github.com/gavelhq/gavel/nsync/nsynctest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

func baseConfig(bbsAddr string) app.Config {
	cfg := app.DefaultConfig("")
	cfg.BBSAddresses = []string{bbsAddr}
	cfg.InsecurePlaintext = true // not about TLS
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.FileServerURL = "http://127.0.0.1:8080"
	cfg.LifecycleBundles = map[string]string{"buildpack/cflinuxfs4": "bp.tgz"}
	return cfg
}

func TestConfigErrorsNameTheField(t *testing.T) {
	cfg := app.DefaultConfig("")
	err := cfg.ValidateBulker()
	require.Error(t, err)
	for _, f := range []string{"controller_url", "lifecycle_bundles", "file_server_url", "etcd.endpoints", "bbs_tls"} {
		require.ErrorContains(t, err, f)
	}
	cfg = baseConfig("127.0.0.1:1")
	cfg.PageSize = 1 << 20
	cfg.ControllerURL = "http://cc"
	cfg.DisableLock = true
	require.ErrorContains(t, cfg.ValidateBulker(), "page_size")
	require.NoError(t, baseConfig("127.0.0.1:1").ValidateListener())
}

func TestListenerAndLockedBulker(t *testing.T) {
	bbs := nsynctest.StartBBS(t, nil)
	cc := nsynctest.NewController()
	t.Cleanup(cc.Close)

	lcfg := baseConfig(bbs.Addr)
	require.NoError(t, lcfg.ValidateListener())
	l := app.NewListener(lcfg, lager.NewLogger("listener"))
	nsynctest.Run(t, "listener", l.Runner())

	a := ccmessages.DesireAppRequestFromCC{ProcessGUID: "web", LogGUID: "web", ETag: "1", DropletURI: "http://cc/d", Stack: "cflinuxfs4", StartCommand: "x", NumInstances: 1}
	body, _ := json.Marshal(a)
	req, _ := http.NewRequest("PUT", "http://"+l.Addr()+"/v1/apps/web", bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	// The controller knows "web" (etag 2) and "api"; the bulker holding the lock converges.
	a.ETag, a.NumInstances = "2", 3
	cc.SetApp(a)
	api := a
	api.ProcessGUID, api.ETag = "api", "1"
	cc.SetApp(api)

	bcfg := baseConfig(bbs.Addr)
	bcfg.ControllerURL, bcfg.ControllerUsername, bcfg.ControllerPassword = cc.URL(), cc.User, cc.Password
	bcfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	bcfg.KeyPrefix = etcdtest.Prefix(t)
	bcfg.InstanceID = "bulker-1"
	bcfg.LockTTL = config.Duration(2 * time.Second)
	bcfg.LockRetryInterval = config.Duration(100 * time.Millisecond)
	bcfg.PollInterval = config.Duration(200 * time.Millisecond)
	require.NoError(t, bcfg.ValidateBulker())
	nsynctest.Run(t, "bulker", app.NewBulker(bcfg, lager.NewLogger("bulker")).Runner())

	require.Eventually(t, func() bool {
		got, err := bbs.Client.ListDesiredLRPSchedulingInfos(context.Background(), &bbsv1.ListDesiredLRPSchedulingInfosRequest{})
		if err != nil || len(got.SchedulingInfos) != 2 {
			return false
		}
		for _, si := range got.SchedulingInfos {
			if si.Key.ProcessGuid == "web" && si.Instances != 3 {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond)
}
