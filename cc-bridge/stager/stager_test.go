package stager_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	"github.com/gavelhq/gavel/cc-bridge/cctest"
	"github.com/gavelhq/gavel/cc-bridge/internal/bridgetest"
	"github.com/gavelhq/gavel/cc-bridge/stager"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

func recipe() stager.RecipeOptions {
	return stager.RecipeOptions{
		FileServerURL:    "http://fs:8080",
		LifecycleBundles: map[string]string{"buildpack/cflinuxfs4": "lifecycles/gavel-lifecycle.tgz"},
		UploaderURL:      "http://uploader:9090/",
		CallbackURL:      "http://stager:8888",
	}
}

func request(mutate ...func(*bm.StagingRequestFromCC, *bm.BuildpackStagingData)) *bm.StagingRequestFromCC {
	data := bm.BuildpackStagingData{
		AppBitsDownloadURI: "http://cc/blobs/app-1", DropletUploadURI: "http://cc/staging/droplets/app-1/upload?x=1",
		Stack: "cflinuxfs4", Buildpacks: []bm.Buildpack{{Name: "go", Key: "go-key", URL: "http://cc/bp/go.zip"}},
	}
	req := &bm.StagingRequestFromCC{
		AppID: "app-1", MemoryMB: 256, DiskMB: 1024, LogGUID: "app-1", Lifecycle: bm.LifecycleBuildpack,
		Environment: []bm.EnvironmentVariable{{Name: "FOO", Value: "bar"}}, CompletionCB: "http://cc/internal/v3/staging/s-1/build_completed",
	}
	for _, m := range mutate {
		m(req, &data)
	}
	raw, _ := json.Marshal(data)
	if req.LifecycleData == nil {
		req.LifecycleData = raw
	}
	return req
}

func TestBuildTask(t *testing.T) {
	def, err := recipe().BuildTask("s-1", request(func(r *bm.StagingRequestFromCC, _ *bm.BuildpackStagingData) {
		r.Timeout, r.FileDescriptors, r.IsolationSegment = 60, 4096, "seg-1"
	}))
	require.NoError(t, err)
	require.Equal(t, "preloaded:cflinuxfs4", def.GetRootFs())
	require.Equal(t, int32(256), def.GetMemoryMb())
	require.Equal(t, uint32(stager.CPUWeight), def.GetCpuWeight())
	require.Equal(t, "STG", def.GetLogSource())
	require.Equal(t, stager.ResultFile, def.GetResultFile())
	require.Equal(t, "http://stager:8888/v1/staging/s-1/completed", def.GetCompletionCallbackUrl())
	require.Equal(t, []string{"seg-1"}, def.GetPlacementTags())
	require.JSONEq(t, `{"lifecycle":"buildpack","completion_callback":"http://cc/internal/v3/staging/s-1/build_completed"}`, def.GetAnnotation())

	deps := def.GetCachedDependencies()
	require.Len(t, deps, 2)
	require.Equal(t, "http://fs:8080/v1/static/lifecycles/gavel-lifecycle.tgz", deps[0].GetFrom())
	require.Equal(t, stager.LifecycleDir, deps[0].GetTo())
	require.Equal(t, "go-key", deps[1].GetCacheKey())

	to := def.GetAction().GetTimeout()
	require.Equal(t, int64(60000), to.GetTimeoutMs(), "the request's timeout, in ms")
	steps := to.GetAction().GetSerial().GetActions()
	require.Len(t, steps, 3, "download bits, build, upload (no cache URIs given)")
	require.Equal(t, "http://cc/blobs/app-1", steps[0].GetDownload().GetFrom())
	run := steps[1].GetEmitProgress().GetAction().GetRun()
	require.Equal(t, stager.LifecycleDir+"/builder", run.GetPath())
	require.Equal(t, "/", run.GetDir())
	require.Contains(t, run.GetArgs(), "-buildDir=tmp/app")
	require.Contains(t, run.GetArgs(), "-buildpackOrder=go-key")
	require.Contains(t, run.GetArgs(), "-outputDroplet=tmp/droplet")
	require.Equal(t, uint64(4096), run.GetResourceLimits().GetNofile())
	require.Contains(t, run.GetEnv(), &modelsv1.EnvironmentVariable{Name: "FOO", Value: "bar"})
	uploads := steps[2].GetParallel().GetActions()
	require.Len(t, uploads, 1)
	u, err := url.Parse(uploads[0].GetUpload().GetTo())
	require.NoError(t, err)
	require.Equal(t, "/v1/droplet/s-1", u.Path)
	require.Equal(t, "http://uploader:9090", u.Scheme+"://"+u.Host)
	require.Equal(t, "http://cc/staging/droplets/app-1/upload?x=1", u.Query().Get("cc-droplet-upload-uri"))
	require.Equal(t, "60", u.Query().Get("timeout"))
}

func TestBuildTaskWithCaches(t *testing.T) {
	def, err := recipe().BuildTask("s-1", request(func(_ *bm.StagingRequestFromCC, d *bm.BuildpackStagingData) {
		d.BuildArtifactsCacheDownloadURI, d.BuildArtifactsCacheUploadURI = "http://cc/blobs/cache", "http://cc/staging/buildpack_cache/app-1/upload"
	}))
	require.NoError(t, err)
	steps := def.GetAction().GetTimeout().GetAction().GetSerial().GetActions()
	require.Len(t, steps, 4)
	require.Equal(t, "http://cc/blobs/cache", steps[1].GetTry().GetAction().GetDownload().GetFrom(), "the cache download is tried")
	uploads := steps[3].GetParallel().GetActions()
	require.Len(t, uploads, 2)
	require.Contains(t, uploads[1].GetTry().GetAction().GetUpload().GetTo(), "/v1/build_artifacts/app-1?")
	require.Equal(t, int64(stager.DefaultStagingTimeout/time.Millisecond), def.GetAction().GetTimeout().GetTimeoutMs())
}

func TestBuildTaskRefuses(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*bm.StagingRequestFromCC, *bm.BuildpackStagingData)
		want   string
	}{
		{"docker", func(r *bm.StagingRequestFromCC, _ *bm.BuildpackStagingData) { r.Lifecycle = bm.LifecycleDocker }, "docker staging is not supported"},
		{"unknown lifecycle", func(r *bm.StagingRequestFromCC, _ *bm.BuildpackStagingData) { r.Lifecycle = "kpack" }, "lifecycle: must be"},
		{"stack without bundle", func(_ *bm.StagingRequestFromCC, d *bm.BuildpackStagingData) { d.Stack = "other" }, `no lifecycle bundle for "buildpack/other"`},
		{"no app bits", func(_ *bm.StagingRequestFromCC, d *bm.BuildpackStagingData) { d.AppBitsDownloadURI = "" }, "lifecycle_data.app_bits_download_uri: is required"},
		{"no droplet upload", func(_ *bm.StagingRequestFromCC, d *bm.BuildpackStagingData) { d.DropletUploadURI = "" }, "lifecycle_data.droplet_upload_uri: is required"},
		{"bad app id", func(r *bm.StagingRequestFromCC, _ *bm.BuildpackStagingData) { r.AppID = "a b" }, "app_id: must match"},
		{"negative memory", func(r *bm.StagingRequestFromCC, _ *bm.BuildpackStagingData) { r.MemoryMB = -1 }, "memory_mb: must be in"},
		{"too many env", func(r *bm.StagingRequestFromCC, _ *bm.BuildpackStagingData) {
			r.Environment = make([]bm.EnvironmentVariable, bm.MaxEnvironmentVariables+1)
		}, "environment: at most 1024"},
		{"too many buildpacks", func(_ *bm.StagingRequestFromCC, d *bm.BuildpackStagingData) {
			d.Buildpacks = make([]bm.Buildpack, bm.MaxBuildpacks+1)
		}, "lifecycle_data.buildpacks: at most 64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := recipe().BuildTask("s-1", request(tc.mutate))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestErrorID(t *testing.T) {
	cases := map[string]string{
		"insufficient resources: memory":                       bm.InsufficientResources,
		"found no compatible cell for required rootfs":         bm.NoCompatibleCell,
		"cell disappeared before completion":                   bm.CellCommunicationError,
		"Staging failed: Exited with status 222":               bm.NoAppDetectedError,
		"Exited with status 223":                               bm.BuildpackCompileFailed,
		"Exited with status 224":                               bm.BuildpackReleaseFailed,
		"Exited with status 1":                                 bm.StagingErrorID,
		"failed to download app package: status 404 Not Found": bm.StagingErrorID,
	}
	for reason, want := range cases {
		require.Equal(t, want, stager.ErrorID(reason), reason)
	}
}

// fixture is a real BBS, the controller double and a stager serving over HTTP.
type fixture struct {
	bbs *bridgetest.BBS
	cc  *cctest.Server
	url string
}

func newFixture(t *testing.T) *fixture {
	bbs := bridgetest.StartBBS(t)
	cc, err := cctest.Listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	r := recipe()
	r.CallbackURL = srv.URL
	s := stager.New(stager.Options{BBS: bbs.Client, Recipe: r, CCBaseURL: cc.URL()})
	mux.Handle("/", s.Handler())
	return &fixture{bbs: bbs, cc: cc, url: srv.URL}
}

func (f *fixture) put(t *testing.T, guid string, req *bm.StagingRequestFromCC) (int, string) {
	body, _ := json.Marshal(req)
	hr, _ := http.NewRequest(http.MethodPut, f.url+"/v1/staging/"+guid, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(hr)
	require.NoError(t, err)
	defer resp.Body.Close()
	var e bm.ErrorResponse
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error
}

func (f *fixture) del(t *testing.T, guid string) int {
	hr, _ := http.NewRequest(http.MethodDelete, f.url+"/v1/staging/"+guid, nil)
	resp, err := http.DefaultClient.Do(hr)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// complete plays a cell: it starts the task and completes it.
func (f *fixture) complete(t *testing.T, guid string, failed bool, reason, result string) {
	ctx := t.Context()
	_, err := f.bbs.Client.StartTask(ctx, &bbsv1.StartTaskRequest{TaskGuid: guid, CellId: "cell-1"})
	require.NoError(t, err)
	_, err = f.bbs.Client.CompleteTask(ctx, &bbsv1.CompleteTaskRequest{TaskGuid: guid, CellId: "cell-1", Failed: failed, FailureReason: reason, Result: result})
	require.NoError(t, err)
}

func TestStagingThroughTheBBS(t *testing.T) {
	f := newFixture(t)
	withCallback := func(guid string) func(*bm.StagingRequestFromCC, *bm.BuildpackStagingData) {
		return func(r *bm.StagingRequestFromCC, _ *bm.BuildpackStagingData) {
			r.CompletionCB = f.cc.URL() + "/internal/v3/staging/" + guid + "/build_completed"
		}
	}

	t.Run("success posts the builder's result", func(t *testing.T) {
		code, msg := f.put(t, "stage-ok", request(withCallback("stage-ok")))
		require.Equal(t, http.StatusAccepted, code, msg)
		code, msg = f.put(t, "stage-ok", request(withCallback("stage-ok")))
		require.Equal(t, http.StatusAccepted, code, "a repeated request is idempotent: %s", msg)
		task, err := f.bbs.Client.GetTask(t.Context(), &bbsv1.GetTaskRequest{TaskGuid: "stage-ok"})
		require.NoError(t, err)
		require.Equal(t, stager.Domain, task.GetTask().GetDomain())

		f.complete(t, "stage-ok", false, "", `{"process_types":{"web":"./app"}}`)
		require.NoError(t, f.cc.Wait(10*time.Second, func() bool { return len(f.cc.Stagings("stage-ok")) > 0 }))
		got := f.cc.Stagings("stage-ok")[0]
		require.Nil(t, got.Error)
		require.JSONEq(t, `{"process_types":{"web":"./app"}}`, string(*got.Result))
	})

	t.Run("a failed detect is NoAppDetectedError", func(t *testing.T) {
		code, msg := f.put(t, "stage-nodetect", request(withCallback("stage-nodetect")))
		require.Equal(t, http.StatusAccepted, code, msg)
		f.complete(t, "stage-nodetect", true, "Staging failed: Exited with status 222", "")
		require.NoError(t, f.cc.Wait(10*time.Second, func() bool { return len(f.cc.Stagings("stage-nodetect")) > 0 }))
		got := f.cc.Stagings("stage-nodetect")[0]
		require.NotNil(t, got.Error)
		require.Equal(t, bm.NoAppDetectedError, got.Error.ID)
		require.Contains(t, got.Error.Message, "Exited with status 222")
	})

	t.Run("no completion callback falls back to the controller's base URL", func(t *testing.T) {
		code, msg := f.put(t, "stage-default", request(func(r *bm.StagingRequestFromCC, _ *bm.BuildpackStagingData) { r.CompletionCB = "" }))
		require.Equal(t, http.StatusAccepted, code, msg)
		f.complete(t, "stage-default", true, "insufficient resources: memory", "")
		require.NoError(t, f.cc.Wait(10*time.Second, func() bool { return len(f.cc.Stagings("stage-default")) > 0 }))
		require.Equal(t, bm.InsufficientResources, f.cc.Stagings("stage-default")[0].Error.ID)
	})

	t.Run("cancel", func(t *testing.T) {
		code, msg := f.put(t, "stage-cancel", request(withCallback("stage-cancel")))
		require.Equal(t, http.StatusAccepted, code, msg)
		require.Equal(t, http.StatusAccepted, f.del(t, "stage-cancel"))
		require.Equal(t, http.StatusNotFound, f.del(t, "stage-never"))
	})

	t.Run("bad requests are 400 naming the field", func(t *testing.T) {
		code, msg := f.put(t, "stage-docker", request(func(r *bm.StagingRequestFromCC, _ *bm.BuildpackStagingData) { r.Lifecycle = bm.LifecycleDocker }))
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, msg, "docker staging is not supported")
		code, msg = f.put(t, "bad.guid", request())
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, msg, "staging_guid")
		_, err := f.bbs.Client.GetTask(t.Context(), &bbsv1.GetTaskRequest{TaskGuid: "stage-docker"})
		require.Error(t, err, "no task for a refused request")
	})
}

func TestCompletedAnswersTheControllersStatus(t *testing.T) {
	cc := cctest.New()
	ccSrv := httptest.NewServer(cc.Handler())
	defer ccSrv.Close()
	s := stager.New(stager.Options{BBS: nil, Recipe: recipe(), CCBaseURL: ccSrv.URL})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	post := func(guid, body string) int {
		resp, err := http.Post(srv.URL+"/v1/staging/"+guid+"/completed", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	body := `{"task_guid":"g-1","failed":false,"result":"{}","annotation":"{\"lifecycle\":\"buildpack\"}","created_at":"1"}`
	require.Equal(t, http.StatusOK, post("g-1", body))
	cc.SetStagingStatus(http.StatusServiceUnavailable)
	require.Equal(t, http.StatusServiceUnavailable, post("g-1", body), "the controller's 503 goes back to the BBS, which retries")
	require.Equal(t, http.StatusBadRequest, post("g-2", body), "guid mismatch")
	require.Equal(t, http.StatusBadRequest, post("g-1", `{"task_guid":"g-1","annotation":"nope"}`), "bad annotation")
	ccSrv.Close()
	cc.SetStagingStatus(http.StatusOK)
	require.Equal(t, http.StatusServiceUnavailable, post("g-1", body), "an unreachable controller is 503")
}
