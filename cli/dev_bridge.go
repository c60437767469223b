package cli

import (
	"os"
	"path/filepath"
)

// siblingLifecycle is the gavel-lifecycle binary installed beside the
// running gavel (make build puts both in bin/), or "" (gavel dev then looks
// on the PATH).
func siblingLifecycle() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	path := filepath.Join(filepath.Dir(exe), "gavel-lifecycle")
	if info, err := os.Stat(path); err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return ""
	}
	return path
}
