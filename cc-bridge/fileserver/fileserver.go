// Package fileserver serves a directory to cells under /v1/static/, as
// Diego's file-server does: lifecycle bundles (the stager's cached
// dependencies) and any droplet or buildpack an operator puts there.
// Directory listings are off; paths cannot leave the directory.
package fileserver

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
)

// StaticPrefix is the URL path the directory is served under.
const StaticPrefix = "/v1/static/"

// Handler serves dir under StaticPrefix, and GET /health.
func Handler(dir string) (http.Handler, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("static_directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("static_directory: %s is not a directory", dir)
	}
	root := os.DirFS(dir)
	files := http.FileServerFS(noListing{root})
	mux := http.NewServeMux()
	mux.Handle("GET "+StaticPrefix, http.StripPrefix(strings.TrimSuffix(StaticPrefix, "/"), files))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux, nil
}

// noListing hides directories, so a directory path is a 404 instead of a listing.
type noListing struct{ fs.FS }

func (n noListing) Open(name string) (fs.File, error) {
	f, err := n.FS.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && st.IsDir() {
		_ = f.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.Join(fs.ErrNotExist, errors.New("directory listings are off"))}
	}
	return f, err
}
