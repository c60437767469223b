package runc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// user is a resolved container user.
type user struct {
	name     string
	uid, gid uint32
	home     string
	groups   []uint32
}

// resolveUser resolves "", "name", "uid", "name:group" or "uid:gid"
// against the container's /etc/passwd and /etc/group (readers may be nil:
// the files are missing). The empty user is root with home "/".
func resolveUser(spec string, passwd, group io.Reader) (user, error) {
	if spec == "" {
		spec = "root"
	}
	uspec, gspec, hasGroup := strings.Cut(spec, ":")
	users := parseColonFile(passwd)
	groups := parseColonFile(group)
	u := user{home: "/"}
	found := false
	for _, f := range users {
		if len(f) < 6 {
			continue
		}
		if f[0] == uspec || f[2] == uspec {
			uid, err1 := strconv.ParseUint(f[2], 10, 32)
			gid, err2 := strconv.ParseUint(f[3], 10, 32)
			if err1 != nil || err2 != nil {
				continue
			}
			u = user{name: f[0], uid: uint32(uid), gid: uint32(gid), home: f[5]}
			found = true
			break
		}
	}
	if !found {
		uid, err := strconv.ParseUint(uspec, 10, 32)
		if err != nil {
			if uspec == "root" {
				return user{name: "root", home: "/root"}, nil
			}
			return user{}, fmt.Errorf("user %q: not in the container's /etc/passwd", uspec)
		}
		u.uid, u.gid = uint32(uid), uint32(uid)
	}
	if u.home == "" {
		u.home = "/"
	}
	if hasGroup {
		gid, ok := lookupGroup(gspec, groups)
		if !ok {
			return user{}, fmt.Errorf("group %q: not in the container's /etc/group", gspec)
		}
		u.gid = gid
	}
	if u.name != "" {
		for _, f := range groups {
			if len(f) < 4 {
				continue
			}
			for _, m := range strings.Split(f[3], ",") {
				if m == u.name {
					if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil && uint32(gid) != u.gid {
						u.groups = append(u.groups, uint32(gid))
					}
				}
			}
		}
	}
	return u, nil
}

func lookupGroup(spec string, groups [][]string) (uint32, bool) {
	for _, f := range groups {
		if len(f) >= 3 && (f[0] == spec || f[2] == spec) {
			if gid, err := strconv.ParseUint(f[2], 10, 32); err == nil {
				return uint32(gid), true
			}
		}
	}
	gid, err := strconv.ParseUint(spec, 10, 32)
	return uint32(gid), err == nil
}

// parseColonFile splits the lines of a passwd or group file.
func parseColonFile(r io.Reader) [][]string {
	if r == nil {
		return nil
	}
	var out [][]string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}

// openInRoot opens a regular file of the container's root filesystem
// (seen from the host at rootDir) with every symlink and ".." resolved
// inside that tree, so a container cannot make the backend read a host
// file. A missing file gives (nil, nil).
func openInRoot(rootDir, rel string) (*os.File, error) {
	dir, err := os.Open(rootDir)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	f, err := openat2InRoot(int(dir.Fd()), rel)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	return f, nil
}
