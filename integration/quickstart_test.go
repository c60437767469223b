package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// quickstartBlocks returns the fenced code blocks of README.md's
// "## Quickstart" section, each as its command lines.
func quickstartBlocks(t *testing.T) [][]string {
	t.Helper()
	return readmeBlocks(t, "Quickstart")
}

// readmeBlocks returns the fenced code blocks of README.md's "## <title>"
// section, each as its command lines.
func readmeBlocks(t *testing.T, title string) [][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README.md has no ## %s section", title)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var blocks [][]string
	var cur []string
	in := false
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "```") && !in:
			in, cur = true, nil
		case strings.HasPrefix(line, "```"):
			in = false
			blocks = append(blocks, cur)
		case in && strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#"):
			cur = append(cur, strings.TrimSpace(line))
		}
	}
	return blocks
}

// makeRunIsGavelDev checks that `make run` is `gavel dev` after `make build`
// (which TestMain did: go build -o DIR/ ./cmd/...), so the test may run the
// built gavel dev with its own data dir and ports in place of `make run`.
func makeRunIsGavelDev(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	// recipe returns a target's prerequisites and commands; target-specific
	// variable lines ("build: export X := Y") are collected in vars.
	var vars []string
	recipe := func(target string) (deps string, cmds []string) {
		for i, l := range lines {
			if rest, ok := strings.CutPrefix(l, target+":"); ok {
				if r := strings.TrimSpace(rest); strings.HasPrefix(r, "export ") || strings.Contains(r, "=") {
					vars = append(vars, r)
					continue
				}
				for _, r := range lines[i+1:] {
					if !strings.HasPrefix(r, "\t") {
						break
					}
					cmds = append(cmds, strings.TrimSpace(r))
				}
				return strings.TrimSpace(rest), cmds
			}
		}
		t.Fatalf("Makefile has no %s target", target)
		return "", nil
	}
	if deps, cmds := recipe("run"); deps != "build" || len(cmds) != 1 || cmds[0] != "$(BIN)/gavel dev" {
		t.Fatalf("the Makefile's run target changed (run: %s; %q): TestQuickstart runs the built `gavel dev` in place of `make run`; update it", deps, cmds)
	}
	vars = nil
	if _, cmds := recipe("build"); len(cmds) != 1 || cmds[0] != "$(GO) build -o $(BIN)/ ./cmd/..." ||
		!slices.Equal(vars, []string{"export CGO_ENABLED := 0", "export GOFLAGS := -buildvcs=auto"}) {
		t.Fatalf("the Makefile's build target changed (%q, variables %q): TestMain builds the binaries as it did (static, CGO_ENABLED=0); update it", cmds, vars)
	}
}

// quickstartCheck verifies the effect of one README command from its output.
type quickstartCheck struct {
	prefix string
	check  func(out string) error
	// rerun: run the command again until its effect shows (as the README
	// says for `gavel task`).
	rerun bool
	used  bool
}

// The README quickstart, run as written: `make run` as the built `gavel dev`
// (with its own data dir, client config and ports, added as flags), then every
// command of the second terminal in a shell whose working directory holds the
// built bin/, each checked for its effect; finally Ctrl-C (SIGINT) on gavel
// dev stops it and leaves no app process behind.
func TestQuickstart(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	blocks := quickstartBlocks(t)
	if len(blocks) != 2 || len(blocks[0]) != 1 || blocks[0][0] != "make run" {
		t.Fatalf("the quickstart should be two blocks, the first `make run` alone; got %q", blocks)
	}
	makeRunIsGavelDev(t)
	if l, err := net.Listen("tcp", "127.0.0.1:8080"); err != nil {
		t.Fatalf("the quickstart curls gavel dev's router on its default 127.0.0.1:8080; that port is taken (another gavel dev?): %v", err)
	} else {
		l.Close()
	}

	work := t.TempDir()
	if err := os.Symlink(binDir, filepath.Join(work, "bin")); err != nil {
		t.Fatal(err)
	}
	clientConfig := filepath.Join(work, "home", ".gavel", "config.json")
	bbsAddr := devAddr(t)
	natsPort := strconv.Itoa(devPort(t))
	dev := &daemon{
		name: "gavel-dev", path: bin("gavel"), dir: work, logPath: filepath.Join(work, "gavel-dev.out"),
		args: []string{"dev", "--data-dir", filepath.Join(work, ".gavel"), "--client-config", clientConfig, "--bbs-address", bbsAddr, "--nats-port", natsPort, "--debug-address", devAddr(t)},
		env:  []string{"GAVEL_CONFIG=" + clientConfig},
	}
	t.Cleanup(func() {
		dev.kill()
		killStrays(work)
		if t.Failed() {
			dev.dump(t, 100)
			(&daemon{name: "gavel.log", logPath: filepath.Join(work, ".gavel", "gavel.log")}).dump(t, 100)
		}
	})
	began := time.Now()
	if err := dev.start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "gavel dev says it is running", func() error {
		if dev.logLine("Gavel is running.") != "" {
			return nil
		}
		if err := dev.exitedErr(); err != nil {
			return err
		}
		return errors.New("not yet")
	})
	t.Logf("gavel dev up in %s", time.Since(began).Round(time.Millisecond))
	bbs, err := client.New(client.Config{Addresses: []string{bbsAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer bbs.Close()

	running := func(guid string, n int) error {
		resp, err := bbs.ListActualLRPs(ctx(t), &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{guid}})
		if err != nil {
			return err
		}
		got := 0
		for _, a := range resp.GetActualLrps() {
			if a.GetState() == models.Running {
				got++
			}
		}
		if got != n {
			return fmt.Errorf("%d of %s running, want %d: %s", got, guid, n, describe(resp.GetActualLrps()))
		}
		return nil
	}
	desiredInstances := func(guid string, n int32) error {
		resp, err := bbs.GetDesiredLRP(ctx(t), &bbsv1.GetDesiredLRPRequest{ProcessGuid: guid})
		if err != nil {
			return err
		}
		if resp.GetDesiredLrp().GetInstances() != n {
			return fmt.Errorf("%s desires %d instances, want %d", guid, resp.GetDesiredLrp().GetInstances(), n)
		}
		return nil
	}
	contains := func(out string, subs ...string) error {
		for _, s := range subs {
			if !strings.Contains(out, s) {
				return fmt.Errorf("output lacks %q", s)
			}
		}
		return nil
	}

	sh := &readmeShell{dir: work, env: []string{"GAVEL_CONFIG=" + clientConfig}}
	shell := sh.run
	checks := []*quickstartCheck{
		{prefix: "export PATH=", check: func(string) error { return nil }},
		{prefix: "gavel cells", check: func(out string) error {
			for i, z := range []string{"z1", "z2", "z3"} {
				if !containsRow(out, "cell-"+strconv.Itoa(i+1), z) {
					return fmt.Errorf("no row for cell-%d in %s", i+1, z)
				}
			}
			return nil
		}},
		{prefix: "gavel push hello ", check: func(out string) error {
			if err := contains(out, "desired hello"); err != nil {
				return err
			}
			return desiredInstances("hello", 2)
		}},
		{prefix: "gavel wait hello --running 2", check: func(string) error { return running("hello", 2) }},
		{prefix: "gavel lrp hello", check: func(out string) error {
			if !containsRow(out, "hello", "0", "RUNNING") || !containsRow(out, "hello", "1", "RUNNING") {
				return errors.New("instances 0 and 1 are not shown RUNNING")
			}
			return nil
		}},
		{prefix: "curl ", check: func(out string) error { return contains(out, "Directory listing for /") }},
		{prefix: "gavel logs hello --recent", rerun: true, check: func(out string) error {
			return contains(out, "(ended)", `"GET / HTTP/1.1" 200`)
		}},
		{prefix: "gavel logs hello", rerun: true, check: func(out string) error { return contains(out, "[APP/PROC/WEB/", `"GET / HTTP/1.1" 200`) }},
		{prefix: "gavel scale hello 3", check: func(string) error { return desiredInstances("hello", 3) }},
		{prefix: "gavel wait hello --running 3", check: func(string) error { return running("hello", 3) }},
		{prefix: "gavel run-task hello-task ", check: func(out string) error {
			if err := contains(out, "task hello-task is PENDING"); err != nil {
				return err
			}
			_, err := bbs.GetTask(ctx(t), &bbsv1.GetTaskRequest{TaskGuid: "hello-task"})
			return err
		}},
		{prefix: "gavel task hello-task", rerun: true, check: func(out string) error {
			return contains(out, "COMPLETED", "failed:      false", "hello from a task")
		}},
		{prefix: "gavel remove-lrp hello", check: func(out string) error {
			if _, err := bbs.GetDesiredLRP(ctx(t), &bbsv1.GetDesiredLRPRequest{ProcessGuid: "hello"}); !errors.Is(err, models.ErrNotFound) {
				return fmt.Errorf("hello is still desired: %v", err)
			}
			return nil
		}},
		{prefix: "gavel lrps", check: func(out string) error {
			if strings.Contains(out, "hello") {
				return errors.New("hello is still listed")
			}
			return nil
		}},
	}

	runReadmeCommands(t, "TestQuickstart", blocks[1], checks, sh)
	// Once removed, hello's processes are stopped (gavel dev's grace time is 10 s).
	waitFor(t, 20*time.Second, "hello's processes stop", func() error {
		if n := countStrays(work, "http.server"); n > 0 {
			return fmt.Errorf("%d http.server processes left", n)
		}
		return nil
	})

	// Ctrl-C with apps running stops everything.
	if out, err := shell("gavel push leftover --command 'exec python3 -m http.server $PORT' --instances 2 && gavel wait leftover --running 2"); err != nil {
		t.Fatalf("push leftover: %v\n%s", err, out)
	}
	// python3 may be a shim (pyenv) that takes a while to exec the server.
	waitFor(t, 20*time.Second, "leftover's 2 app processes run", func() error {
		if n := countStrays(work, "http.server"); n != 2 {
			return fmt.Errorf("want the 2 app processes of leftover under %s, found %d: %v", work, n, strays(work))
		}
		return nil
	})

	// Draining a cell moves its instances and ends that cell only: the rest
	// of gavel dev keeps serving.
	// (It shows "N LRP instance(s)" progress only while cell-3 holds some:
	// leftover's two instances may have been placed on cell-1 and cell-2.)
	if out, err := shell("gavel drain cell-3 --wait"); err != nil || !strings.Contains(out, "cell cell-3 is") {
		t.Fatalf("gavel drain cell-3 --wait: %v\n%s", err, out)
	} else {
		t.Logf("$ gavel drain cell-3 --wait\n%s", out)
	}
	waitFor(t, 60*time.Second, "cell-3 drained and gone", func() error {
		out, err := shell("gavel cells")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if strings.Contains(out, "cell-3") || !strings.Contains(out, "cell-1") || !strings.Contains(out, "cell-2") {
			return fmt.Errorf("cells:\n%s", out)
		}
		return nil
	})
	if out, err := shell("gavel wait leftover --running 2 && gavel lrp leftover"); err != nil || strings.Contains(out, "cell-3") {
		t.Fatalf("after the drain leftover should run on cell-1 and cell-2: %v\n%s", err, out)
	}
	stopped := time.Now()
	if !dev.signalGroup(syscall.SIGINT, 60*time.Second) {
		t.Fatal("gavel dev did not stop within 60 s of SIGINT")
	}
	t.Logf("gavel dev stopped %s after SIGINT", time.Since(stopped).Round(time.Millisecond))
	if code := dev.exitCode(); code != 0 || dev.logLine("stopped") == "" {
		t.Errorf("gavel dev exited %d after SIGINT, want 0 after printing \"stopped\"", code)
	}
	if left := strays(work); len(left) > 0 {
		t.Errorf("processes left behind after Ctrl-C on gavel dev: %v", left)
	}
}

// countStrays counts the processes under dir whose command line contains s.
func countStrays(dir, s string) int {
	n := 0
	for _, cmdline := range strays(dir) {
		if strings.Contains(cmdline, s) {
			n++
		}
	}
	return n
}

// Ports a gavel dev under test is told to use come from this range, below
// the kernel's ephemeral range (32768-60999 here) and apart from every
// test's container ports: a port from freeAddr can be handed to the etcd
// that gavel dev starts on port 0 before the BBS binds it.
const devPortBase, devPortCount = 11000, 1000

// devPortsGiven holds every port devPort has handed out in this test
// process: a port is free until the gavel dev it was given to binds it, so
// without this two calls (one test's BBS and router, or two parallel tests)
// could be handed the same one.
var devPortsGiven sync.Map

// devPort returns a free loopback port from the gavel dev range, never one
// it returned before.
func devPort(t *testing.T) int {
	t.Helper()
	for range 200 {
		port := devPortBase + rand.IntN(devPortCount)
		if _, given := devPortsGiven.LoadOrStore(port, true); given {
			continue
		}
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatalf("no free port in %d-%d", devPortBase, devPortBase+devPortCount-1)
	return 0
}

// devAddr is 127.0.0.1 and a devPort.
func devAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(devPort(t)))
}

// readmeShell runs README command lines in bash, in dir with env, each after
// the export lines run before it (as one terminal would).
type readmeShell struct {
	dir     string
	env     []string
	exports []string
}

func (sh *readmeShell) run(line string) (string, error) {
	script := strings.Join(append(append([]string{"set -o pipefail"}, sh.exports...), line), "\n")
	cctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, "bash", "-c", script)
	cmd.Dir = sh.dir
	cmd.Env = append(os.Environ(), sh.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runReadmeCommands runs each README command line in sh and checks its
// effect with the check whose prefix it starts with (rerunning it for up to
// 30 s when the check says so). A line without a check, or a check no line
// used, fails the test: the README and test must change together.
func runReadmeCommands(t *testing.T, test string, lines []string, checks []*quickstartCheck, sh *readmeShell) {
	t.Helper()
	for _, line := range lines {
		var c *quickstartCheck
		for _, cand := range checks {
			if strings.HasPrefix(line, cand.prefix) {
				c = cand
				break
			}
		}
		if c == nil {
			t.Fatalf("README command %q has no check in %s: add one", line, test)
		}
		c.used = true
		var out string
		run := func() error {
			var err error
			if out, err = sh.run(line); err != nil {
				return fmt.Errorf("%v:\n%s", err, out)
			}
			if err := c.check(out); err != nil {
				return fmt.Errorf("%v; output:\n%s", err, out)
			}
			return nil
		}
		if c.rerun {
			waitFor(t, 30*time.Second, fmt.Sprintf("README command `%s` has its effect", line), run)
		} else if err := run(); err != nil {
			t.Fatalf("README command `%s`: %v", line, err)
		}
		t.Logf("$ %s\n%s", line, out)
		if strings.HasPrefix(line, "export ") {
			sh.exports = append(sh.exports, line)
		}
	}
	for _, c := range checks {
		if !c.used {
			t.Errorf("%s checks `%s...` but the README no longer has it: drop the check", test, c.prefix)
		}
	}
}
