package lifecycle_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	"github.com/gavelhq/gavel/cc-bridge/lifecycle"
	"github.com/gavelhq/gavel/internal/freeport"
)

// The test binary doubles as gavel-lifecycle (the launcher replaces its process).
func TestMain(m *testing.M) {
	if os.Getenv("GAVEL_LIFECYCLE_MAIN") == "1" {
		os.Exit(lifecycle.Main(os.Args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func readTarGz(t *testing.T, path string) map[string]*tar.Header {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	out := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out[h.Name] = h
	}
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	bits := filepath.Join(dir, "app")
	require.NoError(t, os.MkdirAll(filepath.Join(bits, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bits, "Procfile"), []byte("worker: x\nweb: ./bin/server --port $PORT\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(bits, "bin", "server"), []byte("#!/bin/sh\n"), 0o755))
	args := []string{"-buildDir=" + bits, "-outputDroplet=" + filepath.Join(dir, "out/droplet"), "-outputMetadata=" + filepath.Join(dir, "out/result.json"),
		"-outputBuildArtifactsCache=" + filepath.Join(dir, "out/cache"), "-buildArtifactsCacheDir=" + filepath.Join(dir, "nocache"),
		"-buildpackOrder=a,b", "-buildpacksDir=/tmp/buildpacks", "-skipDetect=false"}
	var out bytes.Buffer
	require.NoError(t, lifecycle.Build(args, &out))
	require.Contains(t, out.String(), "./bin/server --port $PORT")

	entries := readTarGz(t, filepath.Join(dir, "out/droplet"))
	require.Contains(t, entries, "app/Procfile")
	require.Contains(t, entries, lifecycle.StagingInfoFile)
	require.Equal(t, int64(0o755), entries["app/bin/server"].Mode&0o777, "modes are kept")
	_ = readTarGz(t, filepath.Join(dir, "out/cache"))

	var result bm.StagingResult
	data, err := os.ReadFile(filepath.Join(dir, "out/result.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &result))
	require.Equal(t, "./bin/server --port $PORT", result.ProcessTypes["web"])
	require.Equal(t, "buildpack", result.LifecycleType)
	require.Equal(t, lifecycle.DetectedBuildpack, result.LifecycleMetadata["detected_buildpack"])
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	_, err := lifecycle.Detect(dir)
	require.ErrorContains(t, err, "no start command")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "start.sh"), []byte("exec sleep 1"), 0o644))
	cmd, err := lifecycle.Detect(dir)
	require.NoError(t, err)
	require.Equal(t, "sh start.sh", cmd)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Procfile"), []byte("worker: x\n"), 0o644))
	_, err = lifecycle.Detect(dir)
	require.ErrorContains(t, err, "Procfile has no web: process")

	var stderr bytes.Buffer
	code := lifecycle.Main([]string{"gavel-lifecycle", "builder", "-buildDir=" + t.TempDir(), "-outputDroplet=" + filepath.Join(dir, "d")}, io.Discard, &stderr)
	require.Equal(t, lifecycle.ExitDetectFailed, code, "a failed detect exits 222, which the stager maps to NoAppDetectedError")
}

func TestLaunch(t *testing.T) {
	droplet := t.TempDir()
	app := filepath.Join(droplet, "app")
	require.NoError(t, os.MkdirAll(app, 0o755))
	info, _ := json.Marshal(lifecycle.StagingInfo{StartCommand: "echo staged in $(basename $PWD) $GREETING"})
	require.NoError(t, os.WriteFile(filepath.Join(droplet, lifecycle.StagingInfoFile), info, 0o644))
	run := func(args ...string) (string, int) {
		cmd := exec.Command(os.Args[0], append([]string{"launcher"}, args...)...)
		cmd.Env = append(os.Environ(), "GAVEL_LIFECYCLE_MAIN=1", "GREETING=hi")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		require.NoError(t, err)
		return string(out), 0
	}
	out, code := run(app, "echo given $GREETING; exit 3")
	require.Equal(t, 3, code, "the start command's status is the launcher's")
	require.Equal(t, "given hi\n", out)
	out, code = run(app, "", "{}")
	require.Equal(t, 0, code)
	require.Equal(t, "staged in app hi\n", out, "the staged start command, in the app dir")
	out, code = run()
	require.Equal(t, 2, code)
	require.Contains(t, out, "usage: launcher")
}

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	ctx := context.Background()
	require.NoError(t, lifecycle.Check(ctx, []string{"-port=" + port}))
	require.NoError(t, lifecycle.Check(ctx, []string{"-port=" + port, "-uri=/ok"}))
	require.ErrorContains(t, lifecycle.Check(ctx, []string{"-port=" + port, "-uri=/bad", "-timeout=200ms"}), "failed to make HTTP connection")
	free, err := freeport.New().Port() // nothing listens there
	require.NoError(t, err)
	t.Setenv("PORT", strconv.Itoa(free))
	err = lifecycle.Check(ctx, []string{"-timeout=200ms"})
	var ee *lifecycle.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.Code)
}

func TestBundle(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "gavel-lifecycle")
	require.NoError(t, os.WriteFile(self, []byte("#!/bin/sh\n"), 0o755)) // small: compressing the test binary is slow
	out := filepath.Join(dir, "l.tgz")
	require.NoError(t, lifecycle.Bundle(self, out))
	entries := readTarGz(t, out)
	require.Equal(t, byte(tar.TypeReg), entries[lifecycle.Binary].Typeflag)
	for _, name := range []string{lifecycle.Builder, lifecycle.Launcher, lifecycle.Healthcheck} {
		require.Equal(t, byte(tar.TypeSymlink), entries[name].Typeflag, name)
		require.Equal(t, lifecycle.Binary, entries[name].Linkname)
	}
	var stderr bytes.Buffer
	require.Equal(t, 2, lifecycle.Main([]string{"gavel-lifecycle", "bundle"}, io.Discard, &stderr))
	require.Contains(t, stderr.String(), "-o FILE is required")
	require.Equal(t, 2, lifecycle.Main([]string{"gavel-lifecycle", "nope"}, io.Discard, &stderr))
}
