package fileserver_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/cc-bridge/fileserver"
)

func TestServesStaticFiles(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "lifecycles"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lifecycles", "l.tgz"), []byte("bundle"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(dir), "secret"), []byte("no"), 0o644))
	h, err := fileserver.Handler(dir)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/v1/static/lifecycles/l.tgz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "bundle", body)
	code, _ = get("/v1/static/lifecycles/")
	require.Equal(t, http.StatusNotFound, code, "no directory listing")
	code, _ = get("/v1/static/../secret")
	require.NotEqual(t, http.StatusOK, code, "paths cannot leave the directory")
	code, _ = get("/v1/static/missing")
	require.Equal(t, http.StatusNotFound, code)
	code, _ = get("/health")
	require.Equal(t, http.StatusOK, code)
}

func TestRefusesAMissingDirectory(t *testing.T) {
	_, err := fileserver.Handler(filepath.Join(t.TempDir(), "nope"))
	require.ErrorContains(t, err, "static_directory")
}
