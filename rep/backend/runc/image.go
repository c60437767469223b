package runc

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// imagesDir holds unpacked images below Options.Root, one directory per
// image digest: images/<digest>/rootfs and images/<digest>/env.
const imagesDir = "images"

// Image URI schemes. Only local images are run: a cell has no registry
// credentials nor the network to pull.
const (
	// OCIScheme names a local OCI image layout directory: oci:///PATH, with
	// an optional #REF selecting the manifest whose
	// org.opencontainers.image.ref.name annotation is REF (default: the
	// first manifest).
	OCIScheme = "oci://"
	// DockerScheme names a local image tarball (`docker save` format):
	// docker:///PATH.tar, with an optional #TAG choosing the image in a
	// tarball holding several. docker://HOST/... (a registry) is refused.
	DockerScheme = "docker://"
)

// refNameAnnotation names an image in an OCI layout's index.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// localImage opens the image an oci:// or docker:// URI names on this host.
func localImage(uri string) (v1.Image, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", uri, err)
	}
	if u.Host != "" {
		return nil, fmt.Errorf("image %s: not local: this cell runs images from local files only (%s/PATH to an OCI layout, %s/PATH.tar to an image tarball), it does not pull from registries", uri, OCIScheme, DockerScheme)
	}
	if !filepath.IsAbs(u.Path) {
		return nil, fmt.Errorf("image %s: the path must be absolute", uri)
	}
	switch u.Scheme + "://" {
	case OCIScheme:
		idx, err := layout.ImageIndexFromPath(u.Path)
		if err != nil {
			return nil, fmt.Errorf("image %s: open OCI layout: %w", uri, err)
		}
		man, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", uri, err)
		}
		for _, d := range man.Manifests {
			if u.Fragment == "" || d.Annotations[refNameAnnotation] == u.Fragment {
				img, err := idx.Image(d.Digest)
				if err != nil {
					return nil, fmt.Errorf("image %s: %w", uri, err)
				}
				return img, nil
			}
		}
		return nil, fmt.Errorf("image %s: no manifest named %q in the layout", uri, u.Fragment)
	case DockerScheme:
		var tag *name.Tag
		if u.Fragment != "" {
			t, err := name.NewTag(u.Fragment)
			if err != nil {
				return nil, fmt.Errorf("image %s: tag: %w", uri, err)
			}
			tag = &t
		}
		img, err := tarball.ImageFromPath(u.Path, tag)
		if err != nil {
			return nil, fmt.Errorf("image %s: open image tarball: %w", uri, err)
		}
		return img, nil
	}
	return nil, fmt.Errorf("image %s: unknown scheme", uri)
}

// unpackImage returns the cached rootfs of the image uri names, unpacking
// its layers (flattened, whiteouts applied) on first use, and the image's
// env. Concurrent unpacks of one image are safe: each writes a temporary
// directory and the first rename wins.
func (b *Backend) unpackImage(ctx context.Context, uri string) (dir string, env []string, err error) {
	img, err := localImage(uri)
	if err != nil {
		return "", nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", nil, fmt.Errorf("image %s: %w", uri, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", nil, fmt.Errorf("image %s: config: %w", uri, err)
	}
	if cfg != nil {
		env = cfg.Config.Env
	}
	final := filepath.Join(b.opts.Root, imagesDir, digest.Hex)
	rootfs := filepath.Join(final, "rootfs")
	if _, err := os.Stat(rootfs); err == nil {
		return rootfs, env, nil
	}
	if err := os.MkdirAll(filepath.Join(b.opts.Root, imagesDir), 0o700); err != nil {
		return "", nil, fmt.Errorf("image %s: %w", uri, err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(b.opts.Root, imagesDir), "unpack-")
	if err != nil {
		return "", nil, fmt.Errorf("image %s: %w", uri, err)
	}
	defer os.RemoveAll(tmp)
	rc := mutate.Extract(img)
	err = untar(ctx, rc, filepath.Join(tmp, "rootfs"))
	rc.Close()
	if err != nil {
		return "", nil, fmt.Errorf("image %s: unpack: %w", uri, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, serr := os.Stat(rootfs); serr == nil {
			return rootfs, env, nil // another create unpacked it first
		}
		return "", nil, fmt.Errorf("image %s: %w", uri, err)
	}
	return rootfs, env, nil
}

// untar extracts an image's flattened filesystem into dst, keeping modes,
// owners, symlinks and hard links; entries that would land outside dst are
// refused, and no path is followed through a symlink the archive made.
func untar(ctx context.Context, r io.Reader, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		rel := filepath.Clean("/" + h.Name)
		if rel == "/" {
			continue
		}
		target := filepath.Join(dst, rel)
		if err := checkNoSymlinkParents(dst, rel); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(h.Mode) & os.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, mode); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		case tar.TypeReg:
			_ = os.Remove(target)
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_EXCL, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			_ = os.Remove(target)
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src := filepath.Join(dst, filepath.Clean("/"+h.Linkname))
			if err := checkNoSymlinkParents(dst, filepath.Clean("/"+h.Linkname)); err != nil {
				return err
			}
			_ = os.Remove(target)
			if err := os.Link(src, target); err != nil {
				return err
			}
		default:
			continue // devices and fifos: /dev is a tmpfs in the container
		}
		if err := os.Lchown(target, h.Uid, h.Gid); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeSymlink {
			// After the chown, which clears set-id bits.
			if err := unix.Chmod(target, uint32(h.Mode&0o7777)); err != nil {
				return err
			}
			_ = os.Chtimes(target, h.ModTime, h.ModTime)
		}
	}
}

// checkNoSymlinkParents refuses rel when a directory on its way below dst
// is a symlink (an archive could otherwise write through one out of dst).
func checkNoSymlinkParents(dst, rel string) error {
	parts := strings.Split(strings.Trim(filepath.Dir(rel), "/"), "/")
	cur := dst
	for _, p := range parts {
		if p == "" {
			continue
		}
		cur = filepath.Join(cur, p)
		st, err := os.Lstat(cur)
		if err != nil {
			return nil // created as a directory later
		}
		if st.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("layer entry %s: its parent %s is a symlink", rel, strings.TrimPrefix(cur, dst))
		}
	}
	return nil
}
