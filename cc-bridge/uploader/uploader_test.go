package uploader_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	"github.com/gavelhq/gavel/cc-bridge/cctest"
	"github.com/gavelhq/gavel/cc-bridge/uploader"
)

func setup(t *testing.T) (*cctest.Controller, string, string) {
	cc := cctest.New()
	ccSrv := httptest.NewServer(cc.Handler())
	t.Cleanup(ccSrv.Close)
	u := uploader.New(uploader.Options{PollInterval: 10 * time.Millisecond})
	srv := httptest.NewServer(u.Handler())
	t.Cleanup(srv.Close)
	return cc, ccSrv.URL, srv.URL
}

func post(t *testing.T, u string, body []byte) (int, string) {
	resp, err := http.Post(u, "application/octet-stream", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var e bm.ErrorResponse
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error
}

func TestDropletRelayPollsTheJob(t *testing.T) {
	cc, ccURL, up := setup(t)
	cc.SetJobPolls(3) // running, running, finished
	droplet := bytes.Repeat([]byte("droplet!"), 100000)
	q := url.Values{"cc-droplet-upload-uri": {ccURL + "/staging/droplets/app-1/upload"}, "timeout": {"10"}}
	code, msg := post(t, up+"/v1/droplet/stage-1?"+q.Encode(), droplet)
	require.Equal(t, http.StatusCreated, code, msg)
	got, ok := cc.Droplet("app-1")
	require.True(t, ok)
	require.Equal(t, droplet, got, "the raw body arrives as the multipart upload[droplet] field")
}

func TestBuildArtifactsRelay(t *testing.T) {
	cc, ccURL, up := setup(t)
	q := url.Values{"cc-build-artifacts-upload-uri": {ccURL + "/staging/buildpack_cache/app-1/upload"}}
	code, msg := post(t, up+"/v1/build_artifacts/app-1?"+q.Encode(), []byte("cache"))
	require.Equal(t, http.StatusCreated, code, msg)
	got, ok := cc.BuildCache("app-1")
	require.True(t, ok)
	require.Equal(t, "cache", string(got))
}

func TestRelayErrors(t *testing.T) {
	cc, ccURL, up := setup(t)
	cases := []struct {
		name  string
		path  string
		query url.Values
		code  int
		want  string
	}{
		{"missing uri", "/v1/droplet/s", url.Values{}, http.StatusBadRequest, "cc-droplet-upload-uri: is required"},
		{"relative uri", "/v1/droplet/s", url.Values{"cc-droplet-upload-uri": {"/x"}}, http.StatusBadRequest, "want an absolute http(s) URL"},
		{"bad timeout", "/v1/droplet/s", url.Values{"cc-droplet-upload-uri": {ccURL + "/staging/droplets/a/upload"}, "timeout": {"-3"}}, http.StatusBadRequest, "timeout: want whole seconds"},
		{"controller 404 passes through", "/v1/droplet/s", url.Values{"cc-droplet-upload-uri": {ccURL + "/nowhere"}}, http.StatusNotFound, "the controller answered 404"},
		{"unreachable controller", "/v1/droplet/s", url.Values{"cc-droplet-upload-uri": {"http://127.0.0.1:1/x"}}, http.StatusInternalServerError, "uploading to the controller"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := post(t, up+tc.path+"?"+tc.query.Encode(), []byte("d"))
			require.Equal(t, tc.code, code, msg)
			require.Contains(t, msg, tc.want)
		})
	}

	t.Run("only the allowed controller", func(t *testing.T) {
		only := httptest.NewServer(uploader.New(uploader.Options{AllowedHost: "cc.example:9022"}).Handler())
		defer only.Close()
		q := url.Values{"cc-droplet-upload-uri": {ccURL + "/staging/droplets/a/upload"}}
		code, msg := post(t, only.URL+"/v1/droplet/s?"+q.Encode(), []byte("d"))
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, msg, `is not the controller's "cc.example:9022"`)
	})

	t.Run("a job that never finishes times out", func(t *testing.T) {
		cc.SetJobPolls(1 << 30)
		q := url.Values{"cc-droplet-upload-uri": {ccURL + "/staging/droplets/slow/upload"}, "timeout": {"1"}}
		code, msg := post(t, up+"/v1/droplet/s?"+q.Encode(), []byte("d"))
		require.Equal(t, http.StatusInternalServerError, code)
		require.True(t, strings.Contains(msg, "deadline exceeded"), msg)
	})
}
