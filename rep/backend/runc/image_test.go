package runc

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gavelhq/gavel/rep/backend"
)

// tarDir tars a directory tree (the layer of a test image).
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		h.Name = rel
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// busyboxImage is the busybox rootfs as a one-layer image with an env.
func busyboxImage(t *testing.T) v1.Image {
	t.Helper()
	data := tarDir(t, busyboxRoot)
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Env: []string{"FROM_IMAGE=yes", "OVERRIDE=image"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestLocalImages(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	ctx := context.Background()
	img := busyboxImage(t)
	dir := t.TempDir()
	ociDir := filepath.Join(dir, "layout")
	p, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: "busybox"})); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(dir, "busybox.tar")
	if err := tarball.WriteToFile(tarPath, name.MustParseReference("gavel.test/busybox:1"), img); err != nil {
		t.Fatal(err)
	}
	for i, uri := range []string{"oci://" + ociDir, "oci://" + ociDir + "#busybox", "docker://" + tarPath} {
		c := create(t, b, backend.ContainerSpec{Handle: "img" + string(rune('0'+i)) + "-" + e.suffix, Image: uri, Env: []string{"OVERRIDE=container"}})
		status, out, errOut := run(t, c, sh("echo $FROM_IMAGE,$OVERRIDE; ls -l /bin/sh; grep vcap /etc/passwd"))
		if status != 0 || !strings.HasPrefix(out, "yes,container\n") || !strings.Contains(out, "-> busybox") || !strings.Contains(out, "vcap:x:2000") {
			t.Errorf("%s: %d %q %q", uri, status, out, errOut)
		}
	}
	// One unpacked copy per image.
	if entries, _ := os.ReadDir(filepath.Join(e.opts.Root, imagesDir)); len(entries) != 1 {
		t.Errorf("image cache holds %d entries, want 1", len(entries))
	}
	for _, uri := range []string{"docker://registry.example.com/library/busybox:latest", "docker:///busybox", "oci://" + ociDir + "#missing", "oci:relative/path"} {
		if _, err := b.Create(ctx, backend.ContainerSpec{Handle: "bad-" + e.suffix, Image: uri}); err == nil {
			t.Errorf("%s accepted", uri)
		} else if strings.Contains(uri, "registry") && !strings.Contains(err.Error(), "not local") {
			t.Errorf("%s: %v, want a not-local error", uri, err)
		}
	}
}
