package process

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gavelhq/gavel/rep/backend"
)

// keeperBenchEnv names another keeper binary for BenchmarkRunUnderKeeper
// (one whose main runs RunKeeper, such as a built cmd/rep); the default is
// this test binary.
const keeperBenchEnv = "GAVEL_BENCH_KEEPER"

// BenchmarkRunUnderKeeper measures Run (start of the keeper, handshake, start
// of the process: ns/op) and, with b.N processes running, the memory of each
// keeper: RSS; PSS, which shares the binary's pages among the keepers; and
// its anonymous (private: heap, stacks, data) memory.
func BenchmarkRunUnderKeeper(b *testing.B) {
	be, err := New(Options{Root: b.TempDir(), DisableCgroups: true})
	if err != nil {
		b.Fatal(err)
	}
	if path := os.Getenv(keeperBenchEnv); path != "" {
		be.keeperPath = path
	}
	ctx := context.Background()
	c, err := be.Create(ctx, backend.ContainerSpec{Handle: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = be.Destroy(ctx, "bench") }()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Run(ctx, backend.ProcessSpec{Path: "sleep", Args: []string{"1000"}}, backend.ProcessIO{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	time.Sleep(time.Second) // let the keepers settle
	cc := c.(*container)
	cc.mu.Lock()
	var keepers, procs []int
	for _, p := range cc.procs {
		keepers = append(keepers, p.keeperPid)
		procs = append(procs, p.pid)
	}
	cc.mu.Unlock()
	report := func(pids []int, what string) {
		var rss, pss, anon int
		for _, pid := range pids {
			m := memoryKB(b, pid)
			rss += m["Rss:"]
			pss += m["Pss:"]
			anon += m["Anonymous:"]
		}
		n := float64(len(pids))
		b.ReportMetric(float64(rss)/n, what+"-RSS-kB")
		b.ReportMetric(float64(pss)/n, what+"-PSS-kB")
		b.ReportMetric(float64(anon)/n, what+"-anon-kB")
	}
	report(keepers, "keeper")
	report(procs, "sleep")
}

// BenchmarkStartWithoutKeeper is the baseline of BenchmarkRunUnderKeeper:
// starting the same process directly, as the backend did before keepers
// (output files, own process group).
func BenchmarkStartWithoutKeeper(b *testing.B) {
	dir := b.TempDir()
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	var cmds []*exec.Cmd
	defer func() {
		for _, cmd := range cmds {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	for range b.N {
		cmd := exec.Command("sleep", "1000")
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, cmd)
		_, _ = procStartTime(cmd.Process.Pid)
	}
}

// memoryKB reads the fields of /proc/<pid>/smaps_rollup, in kB.
func memoryKB(b *testing.B, pid int) map[string]int {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	m := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 {
			m[fields[0]], _ = strconv.Atoi(fields[1])
		}
	}
	return m
}
