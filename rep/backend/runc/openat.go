package runc

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// openat2InRoot opens rel below dirfd, resolving symlinks and ".." inside the tree at dirfd.
func openat2InRoot(dirfd int, rel string) (*os.File, error) {
	rel = strings.TrimLeft(rel, "/")
	fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, os.ErrNotExist
		}
		return nil, &os.PathError{Op: "openat2", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
}
