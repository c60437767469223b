package runc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// PreloadedScheme prefixes an image URI naming a preloaded rootfs.
const PreloadedScheme = "preloaded:"

// hostUserlandDirs are bind-mounted read-only from the host into a
// host-userland rootfs (those that are symlinks on the host, as /bin is on
// a merged-/usr system, are recreated as the same symlinks instead).
var hostUserlandDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"}

// mountOverlay mounts an overlay of lower (read-only) and upper/work at merged.
func mountOverlay(lower, upper, work, merged string) error {
	for _, d := range []string{upper, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("overlay: %w", err)
		}
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount overlay at %s (%s): %w", merged, data, err)
	}
	return nil
}

// unmount detaches the mount at dir (MNT_DETACH: the mount leaves the
// mount table at once and the kernel finishes it when unused, which spares
// Destroy the overlay's synchronous teardown). A path that is not mounted
// is not an error.
func unmount(dir string) error {
	err := unix.Unmount(dir, unix.MNT_DETACH)
	switch {
	case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
		return nil
	default:
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
}

// buildHostUserlandSkeleton makes dir the lower layer of a host-userland
// rootfs: mount points for hostUserlandDirs that are directories on the
// host, the same symlinks for those that are symlinks, and the usual empty
// top-level directories.
func buildHostUserlandSkeleton(dir string) error {
	for _, d := range []string{"proc", "sys", "dev", "tmp", "root", "home", "var/tmp", "run", "opt", "srv", "mnt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("host userland rootfs: %w", err)
		}
	}
	for _, d := range []string{"tmp", "var/tmp"} {
		if err := os.Chmod(filepath.Join(dir, d), 0o1777); err != nil {
			return fmt.Errorf("host userland rootfs: %w", err)
		}
	}
	for _, d := range hostUserlandDirs {
		st, err := os.Lstat(d)
		if err != nil {
			continue
		}
		target := filepath.Join(dir, d)
		if st.Mode()&os.ModeSymlink != 0 {
			link, err := os.Readlink(d)
			if err != nil {
				return fmt.Errorf("host userland rootfs: %w", err)
			}
			if cur, err := os.Readlink(target); err == nil && cur == link {
				continue
			}
			_ = os.Remove(target)
			if err := os.Symlink(link, target); err != nil {
				return fmt.Errorf("host userland rootfs: %w", err)
			}
			continue
		}
		if st.IsDir() {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("host userland rootfs: %w", err)
			}
		}
	}
	return nil
}

// hostUserlandMounts lists the host directories a host-userland
// container bind-mounts (the directories of hostUserlandDirs).
func hostUserlandMounts() []string {
	var out []string
	for _, d := range hostUserlandDirs {
		if st, err := os.Lstat(d); err == nil && st.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// VcapUID is the uid (and gid) of the vcap user BuildBusyboxRootfs adds, as
// in Cloud Foundry's stacks.
const VcapUID = 2000

// BuildBusyboxRootfs makes dir a minimal rootfs around a statically linked
// busybox (busyboxPath; Debian's busybox-static installs /bin/busybox):
// /bin/busybox with a symlink per applet in /bin, /etc/passwd with root and
// vcap (uid VcapUID), /etc/group, /tmp (1777), /home/vcap and the empty
// mount points. An existing dir is completed, so the call is idempotent.
func BuildBusyboxRootfs(dir, busyboxPath string) error {
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home/vcap", "var/tmp", "usr/bin", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("busybox rootfs: %w", err)
		}
	}
	for _, d := range []string{"tmp", "var/tmp"} {
		if err := os.Chmod(filepath.Join(dir, d), 0o1777); err != nil {
			return fmt.Errorf("busybox rootfs: %w", err)
		}
	}
	if err := os.Chown(filepath.Join(dir, "home/vcap"), VcapUID, VcapUID); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	bb := filepath.Join(dir, "bin", "busybox")
	if err := copyFile(busyboxPath, bb, 0o755); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	out, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox rootfs: %s --list: %w", busyboxPath, err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		link := filepath.Join(dir, "bin", applet)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink("busybox", link); err != nil {
			return fmt.Errorf("busybox rootfs: %w", err)
		}
	}
	files := map[string]string{
		"etc/passwd":      fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nvcap:x:%d:%d::/home/vcap:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", VcapUID, VcapUID),
		"etc/group":       fmt.Sprintf("root:x:0:\nvcap:x:%d:\nnogroup:x:65534:\n", VcapUID),
		"etc/hosts":       "127.0.0.1 localhost\n",
		"etc/resolv.conf": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("busybox rootfs: %w", err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
