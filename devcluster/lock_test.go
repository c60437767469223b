package devcluster_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gavelhq/gavel/devcluster"
)

func TestDataDirLockRefusesASecondHolderAndNamesTheFirst(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := devcluster.LockDataDir(dir, "one")
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Record(devcluster.Holder{PID: os.Getpid(), Name: "one", Addresses: map[string]string{"bbs": "127.0.0.1:1234"}}); err != nil {
		t.Fatal(err)
	}
	_, err = devcluster.LockDataDir(dir, "two")
	var inUse *devcluster.InUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("second lock: got %v, want an *InUseError", err)
	}
	for _, want := range []string{dir, "pid " + strconv.Itoa(os.Getpid()), "bbs 127.0.0.1:1234", "--name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "state"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := devcluster.ClearDataDir(dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != devcluster.LockFile {
		t.Fatalf("after ClearDataDir: %v, want only the lock file", entries)
	}
	first.Release()
	again, err := devcluster.LockDataDir(dir, "two")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	again.Release()
}
