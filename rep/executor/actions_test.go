package executor_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/executor"
)

func TestActionSemantics(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		name       string
		action     *modelsv1.Action
		failed     bool
		reason     string   // exact failure reason, when set
		logs       []string // substrings the container log must contain
		noLogs     []string // substrings it must not contain
		exitStatus int
	}{
		{name: "run succeeds", action: sh("echo hello"), logs: []string{"[TASK stdout] hello"}},
		{name: "run exit status", action: sh("exit 3"), failed: true, reason: "TASK: Exited with status 3", exitStatus: 3},
		{name: "missing executable", action: runA("nope"), failed: true, reason: `exec: "nope": executable file not found in $PATH`},
		{name: "timeout fires", action: timeout(runA("sleep", "10"), 200*time.Millisecond), failed: true, reason: "exceeded 200ms timeout"},
		{name: "timeout not reached", action: timeout(sh("exit 0"), 10*time.Second)},
		{name: "try swallows failure", action: try(sh("exit 1")), logs: []string{"Ignoring failure: TASK: Exited with status 1"}, exitStatus: 1},
		{name: "serial stops at first failure", action: serial(sh("echo a"), sh("exit 4"), sh("echo c")), failed: true,
			reason: "TASK: Exited with status 4", logs: []string{"] a"}, noLogs: []string{"] c"}, exitStatus: 4},
		{name: "serial all succeed", action: serial(sh("echo a"), sh("echo b")), logs: []string{"] a", "] b"}},
		{name: "parallel runs all and aggregates", action: parallel(sh("sleep 0.2; echo late; exit 1"), sh("exit 2")), failed: true,
			logs: []string{"] late"}, exitStatus: 2},
		{name: "parallel all succeed", action: parallel(sh("echo x"), sh("echo y")), logs: []string{"] x", "] y"}},
		{name: "codependent clean exit stops the rest", action: codependent(runA("sleep", "30"), sh("exit 0")), failed: true,
			reason: executor.ReasonCodependentExited},
		{name: "codependent failure stops the rest", action: codependent(runA("sleep", "30"), sh("exit 5")), failed: true,
			reason: "TASK: Exited with status 5", exitStatus: 5},
		{name: "emit progress success", action: emit(sh("true"), "starting", "done", "oops"), logs: []string{"starting", "done"}, noLogs: []string{"oops"}},
		{name: "emit progress failure", action: emit(sh("exit 6"), "starting", "done", "Failed to run"), failed: true,
			reason: "TASK: Exited with status 6", logs: []string{"starting", "Failed to run: TASK: Exited with status 6"}, noLogs: []string{"] done"}, exitStatus: 6},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			guid := "task-" + string(rune('a'+i))
			start := time.Now()
			c := h.runTask(guid, executor.RunRequest{Action: tc.action, LogConfig: executor.LogConfig{SourceName: "TASK"}})
			require.Equal(t, executor.StateCompleted, c.State)
			require.Equal(t, tc.failed, c.RunResult.Failed, c.RunResult.FailureReason)
			if tc.reason != "" {
				require.Equal(t, tc.reason, c.RunResult.FailureReason)
			}
			if tc.name == "parallel runs all and aggregates" {
				require.Contains(t, c.RunResult.FailureReason, "TASK: Exited with status 1")
				require.Contains(t, c.RunResult.FailureReason, "TASK: Exited with status 2")
			}
			require.Equal(t, tc.exitStatus, c.RunResult.ExitStatus)
			require.Less(t, time.Since(start), 25*time.Second, "a stopped sibling must not run to its end")
			logs := h.logText(guid)
			for _, s := range tc.logs {
				require.Contains(t, logs, s)
			}
			for _, s := range tc.noLogs {
				require.NotContains(t, logs, s)
			}
			require.NoError(t, h.e.Delete(ctx, guid))
		})
	}
}

func TestTaskResultFile(t *testing.T) {
	h := newHarness(t, nil)
	c := h.runTask("task", executor.RunRequest{
		Action:     sh(`printf '{"answer":42}' > result.json`),
		ResultFile: "/result.json",
	})
	require.False(t, c.RunResult.Failed, c.RunResult.FailureReason)
	require.Equal(t, `{"answer":42}`, c.RunResult.Result)

	c = h.runTask("big", executor.RunRequest{
		Action:     sh(`head -c 20000 /dev/zero | tr '\0' x > out`),
		ResultFile: "/out",
	})
	require.Len(t, c.RunResult.Result, executor.MaxResultBytes)

	c = h.runTask("missing", executor.RunRequest{Action: sh("true"), ResultFile: "/nowhere"})
	require.True(t, c.RunResult.Failed)
	require.Equal(t, executor.ReasonFailedToFetchResult, c.RunResult.FailureReason)
}

func tgz(t *testing.T, name, content string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}))
	_, err := tw.Write([]byte(content))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

func TestDownload(t *testing.T) {
	h := newHarness(t, nil)
	archive := tgz(t, "hello.txt", "hi from the blobstore\n")
	sum := sha256.Sum256(archive)
	good := hex.EncodeToString(sum[:])
	var fullGets, notModified atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/app.tgz" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if r.Header.Get("If-None-Match") == `"v1"` {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fullGets.Add(1)
		w.Header().Set("ETag", `"v1"`)
		_, _ = w.Write(archive)
	}))
	defer srv.Close()

	t.Run("extracts a tgz and verifies its sha256", func(t *testing.T) {
		c := h.runTask("dl-ok", executor.RunRequest{Action: serial(
			download(srv.URL+"/app.tgz", "/app", "app-key", "sha256", good),
			sh("cat /dev/null; cat app/hello.txt"),
		)})
		require.False(t, c.RunResult.Failed, c.RunResult.FailureReason)
		require.Contains(t, h.logText("dl-ok"), "hi from the blobstore")
	})
	t.Run("a cached artifact is revalidated, not fetched again", func(t *testing.T) {
		c := h.runTask("dl-cached", executor.RunRequest{Action: serial(
			download(srv.URL+"/app.tgz", "/app", "app-key", "sha256", good),
			sh("cat app/hello.txt"),
		)})
		require.False(t, c.RunResult.Failed, c.RunResult.FailureReason)
		require.Equal(t, int32(1), fullGets.Load())
		require.Equal(t, int32(1), notModified.Load())
	})
	t.Run("bad checksum fails with a clear reason", func(t *testing.T) {
		c := h.runTask("dl-bad", executor.RunRequest{Action: download(srv.URL+"/app.tgz", "/app", "", "sha256", "deadbeef")})
		require.True(t, c.RunResult.Failed)
		require.Equal(t, "failed to download app: checksum mismatch: expected sha256 deadbeef, got "+good, c.RunResult.FailureReason)
	})
	t.Run("md5 and sha1 are supported; unknown algorithms are refused", func(t *testing.T) {
		c := h.runTask("dl-md5", executor.RunRequest{Action: download(srv.URL+"/app.tgz", "/app", "", "md5", "0000")})
		require.Contains(t, c.RunResult.FailureReason, "checksum mismatch: expected md5 0000")
		c = h.runTask("dl-sha1", executor.RunRequest{Action: download(srv.URL+"/app.tgz", "/app", "", "sha1", "0000")})
		require.Contains(t, c.RunResult.FailureReason, "checksum mismatch: expected sha1 0000")
		c = h.runTask("dl-crc", executor.RunRequest{Action: download(srv.URL+"/app.tgz", "/app", "", "crc32", "0000")})
		require.Equal(t, `failed to download app: unsupported checksum algorithm "crc32"`, c.RunResult.FailureReason)
	})
	t.Run("404 fails with its status", func(t *testing.T) {
		c := h.runTask("dl-404", executor.RunRequest{Action: download(srv.URL+"/missing.tgz", "/app", "", "", "")})
		require.True(t, c.RunResult.Failed)
		require.Equal(t, "failed to download app: status 404", c.RunResult.FailureReason)
	})
	t.Run("cached dependency failures are retryable", func(t *testing.T) {
		c := h.runTask("dl-dep", executor.RunRequest{
			Action:             sh("true"),
			CachedDependencies: []*modelsv1.CachedDependency{{Name: "buildpack", From: srv.URL + "/missing.tgz", To: "/bp"}},
		})
		require.True(t, c.RunResult.Failed)
		require.True(t, c.RunResult.Retryable)
		require.Equal(t, "failed to download cached artifacts: buildpack: status 404", c.RunResult.FailureReason)
	})
}

func TestUpload(t *testing.T) {
	h := newHarness(t, nil)
	var mu sync.Mutex
	var got []byte
	var method string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		method = r.Method
		got, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	upload := &modelsv1.Action{Action: &modelsv1.Action_Upload{Upload: &modelsv1.UploadAction{
		Artifact: "droplet", From: "/out/droplet.tgz", To: srv.URL + "/droplets/1"}}}
	c := h.runTask("up", executor.RunRequest{Action: serial(sh("mkdir -p out && printf droplet-bytes > out/droplet.tgz"), upload)})
	require.False(t, c.RunResult.Failed, c.RunResult.FailureReason)
	mu.Lock()
	require.Equal(t, http.MethodPost, method)
	require.Equal(t, "droplet-bytes", string(got))
	mu.Unlock()
	require.Contains(t, h.logText("up"), "Uploaded droplet")

	missing := &modelsv1.Action{Action: &modelsv1.Action_Upload{Upload: &modelsv1.UploadAction{
		Artifact: "droplet", From: "/nothing", To: srv.URL}}}
	c = h.runTask("up-missing", executor.RunRequest{Action: missing})
	require.True(t, c.RunResult.Failed)
	require.Contains(t, c.RunResult.FailureReason, "failed to upload droplet: ")
}
