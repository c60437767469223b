package cctest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	"github.com/gavelhq/gavel/cc-bridge/cctest"
)

func TestDouble(t *testing.T) {
	s, err := cctest.Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer s.Close()

	req, _ := http.NewRequest(http.MethodPut, s.URL()+"/blobs/bits", strings.NewReader("tarball"))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	resp, err = http.Get(s.URL() + "/blobs/bits")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "tarball", string(body))

	resp, err = http.Post(s.URL()+"/internal/v4/apps/p-1/crashed", "application/json", strings.NewReader(`{"index":2,"crash_count":3}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.NoError(t, s.Wait(time.Second, func() bool { return len(s.Crashes("p-1")) == 1 }))
	require.Equal(t, int32(3), s.Crashes("p-1")[0].CrashCount)
	resp, err = http.Get(s.URL() + "/recorded/apps/p-1")
	require.NoError(t, err)
	var rec map[string][]json.RawMessage
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rec))
	resp.Body.Close()
	require.Len(t, rec["crashed"], 1)
	resp, err = http.Post(s.URL()+"/internal/v4/apps/p-1/crashed", "application/json", strings.NewReader(`nope`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	part, _ := mw.CreateFormFile("upload[droplet]", "droplet.tgz")
	_, _ = part.Write([]byte("drop"))
	_ = mw.Close()
	resp, err = http.Post(s.URL()+"/staging/droplets/app/upload?async=true", mw.FormDataContentType(), &mp)
	require.NoError(t, err)
	var job bm.JobResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&job))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Equal(t, bm.JobQueued, job.Entity.Status)
	resp, err = http.Get(s.URL() + job.Metadata.URL)
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&job))
	resp.Body.Close()
	require.Equal(t, bm.JobFinished, job.Entity.Status)
	d, ok := s.Droplet("app")
	require.True(t, ok)
	require.Equal(t, "drop", string(d))

	resp, err = http.Get(s.URL() + "/staging/buildpack_cache/app/download")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "no cache uploaded yet")

	called := false
	s.Handle("GET /internal/bulk/apps", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
	resp, err = http.Get(s.URL() + "/internal/bulk/apps")
	require.NoError(t, err)
	resp.Body.Close()
	require.True(t, called, "other packages add routes")
	require.Error(t, s.Wait(10*time.Millisecond, func() bool { return false }))
}
