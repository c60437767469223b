package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRootfsBusybox(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatalf("needs a static busybox at /bin/busybox (apt-get install busybox-static): %v", err)
	}
	dir := filepath.Join(t.TempDir(), "busybox")
	var out bytes.Buffer
	root := NewRootCommand()
	root.SetOut(&out)
	root.SetArgs([]string{"rootfs", "busybox", dir})
	require.NoError(t, root.Execute())
	require.Contains(t, out.String(), `"rootfses": {"busybox": "`+dir+`"}`)
	target, err := os.Readlink(filepath.Join(dir, "bin", "sh"))
	require.NoError(t, err)
	require.Equal(t, "busybox", target)
	passwd, err := os.ReadFile(filepath.Join(dir, "etc", "passwd"))
	require.NoError(t, err)
	require.True(t, strings.Contains(string(passwd), "vcap:x:2000:2000:"), "passwd:\n%s", passwd)

	// A busybox that is not there is named in the error.
	root = NewRootCommand()
	root.SetArgs([]string{"rootfs", "busybox", "--busybox", "/nonexistent/busybox", filepath.Join(t.TempDir(), "x")})
	require.ErrorContains(t, root.Execute(), "--busybox /nonexistent/busybox")
}
