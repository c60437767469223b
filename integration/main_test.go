package integration_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Paths filled by TestMain.
var (
	// repoRoot is the module root (the parent of integration/).
	repoRoot string
	// binDir holds bbs, auctioneer, rep, route-emitter, gavel, and the
	// helpers etcd and app.
	binDir string
)

func bin(name string) string { return filepath.Join(binDir, name) }

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		// Every test skips itself (see start); nothing to build.
		return m.Run()
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "gavel-integration-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	start := time.Now()
	// Without -race even when the suite runs with it: the daemons are the
	// system under test here, and race-instrumented daemons would only make
	// the behavioural deadlines slower to meet on a small machine.
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"./cmd/...", "./integration/testdata/etcd", "./integration/testdata/etcdmember", "./integration/testdata/app")
	build.Dir = repoRoot
	// Static, as make build makes them (gavel-keeper is a container's init).
	build.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: building the binaries: %v\n%s", err, out)
		return 1
	}
	if testing.Verbose() {
		fmt.Printf("integration: built the binaries in %s\n", time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}
