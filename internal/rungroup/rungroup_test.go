package rungroup_test

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/internal/rungroup"
)

// journal records what members did, in order.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.events...)
}

// member is a runner that records its start, readiness and the signal that
// stopped it; it becomes ready once readyAfter is closed (nil: at once) and
// returns fail, if set, instead of becoming ready, or once exit is closed.
type member struct {
	name       string
	j          *journal
	readyAfter chan struct{}
	exit       chan struct{}
	fail       error
}

func (m *member) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	m.j.add("start " + m.name)
	if m.fail != nil {
		return m.fail
	}
	if m.readyAfter != nil {
		<-m.readyAfter
	}
	// Recorded before it is announced, so the record never trails what
	// the group did once it saw the member ready.
	m.j.add("ready " + m.name)
	close(ready)
	select {
	case sig := <-signals:
		m.j.add("stop " + m.name + " " + sig.String())
		return nil
	case <-m.exit:
		m.j.add("exit " + m.name)
		return errors.New("gone")
	}
}

func members(j *journal, names ...string) ([]rungroup.Member, map[string]*member) {
	var out []rungroup.Member
	byName := map[string]*member{}
	for _, n := range names {
		m := &member{name: n, j: j, exit: make(chan struct{})}
		byName[n] = m
		out = append(out, rungroup.Member{Name: n, Runner: m})
	}
	return out, byName
}

func waitExit(t *testing.T, p ifrit.Process) error {
	t.Helper()
	select {
	case err := <-p.Wait():
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("group did not return")
		return nil
	}
}

func TestOrderedStartsInOrderAndStopsInReverse(t *testing.T) {
	j := &journal{}
	ms, byName := members(j, "a", "b", "c")
	gate := make(chan struct{})
	byName["b"].readyAfter = gate
	p := ifrit.Background(rungroup.Ordered(ms...))
	want := []string{"start a", "ready a", "start b"}
	require.Eventually(t, func() bool { return len(j.list()) == len(want) }, 10*time.Second, time.Millisecond)
	require.Never(t, func() bool { return len(j.list()) > len(want) }, 50*time.Millisecond, time.Millisecond, "c must wait for b to be ready")
	require.Equal(t, want, j.list())
	select {
	case <-p.Ready():
		t.Fatal("group ready before every member")
	default:
	}
	close(gate)
	<-p.Ready()
	p.Signal(syscall.SIGTERM)
	require.NoError(t, waitExit(t, p))
	require.Equal(t, []string{
		"start a", "ready a", "start b", "ready b", "start c", "ready c",
		"stop c terminated", "stop b terminated", "stop a terminated",
	}, j.list())
}

func TestAMemberExitingStopsTheRest(t *testing.T) {
	for _, ordered := range []bool{true, false} {
		j := &journal{}
		ms, byName := members(j, "a", "b", "c")
		group := rungroup.Parallel(ms...)
		if ordered {
			group = rungroup.Ordered(ms...)
		}
		p := ifrit.Background(group)
		<-p.Ready()
		close(byName["b"].exit)
		err := waitExit(t, p)
		require.ErrorContains(t, err, "b: gone", "ordered %v", ordered)
		events := j.list()
		require.Contains(t, events, "stop a interrupt")
		require.Contains(t, events, "stop c interrupt")
		if ordered {
			require.Equal(t, []string{"exit b", "stop c interrupt", "stop a interrupt"}, events[len(events)-3:])
		}
	}
}

func TestOrderedFailureBeforeReadyStartsNoLaterMember(t *testing.T) {
	j := &journal{}
	ms, byName := members(j, "a", "b", "c")
	sentinel := errors.New("no backend")
	byName["b"].fail = sentinel
	p := ifrit.Background(rungroup.Ordered(ms...))
	err := waitExit(t, p)
	require.ErrorIs(t, err, sentinel)
	require.ErrorContains(t, err, "b: no backend")
	require.Equal(t, []string{"start a", "ready a", "start b", "stop a interrupt"}, j.list())
	select {
	case <-p.Ready():
		t.Fatal("a group whose member failed became ready")
	default:
	}
}

func TestParallelStartsAllAtOnce(t *testing.T) {
	j := &journal{}
	ms, byName := members(j, "a", "b")
	// a is ready only after b started: an ordered group would hang.
	started := make(chan struct{})
	byName["a"].readyAfter = started
	go func() {
		for {
			for _, e := range j.list() {
				if e == "start b" {
					close(started)
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	p := ifrit.Background(rungroup.Parallel(ms...))
	select {
	case <-p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("parallel group never ready")
	}
	p.Signal(os.Interrupt)
	require.NoError(t, waitExit(t, p))
	require.Contains(t, j.list(), "stop a interrupt")
	require.Contains(t, j.list(), "stop b interrupt")
}

// TestAMemberCostsOneGoroutine holds the reason for the package: 200 idle
// five-member groups cost one goroutine per member and one per group
// (ifrit.Background's), not grouper's ~25 per group.
func TestAMemberCostsOneGoroutine(t *testing.T) {
	const groups, size = 200, 5
	j := &journal{}
	before := runtime.NumGoroutine()
	var procs []ifrit.Process
	for range groups {
		ms, _ := members(j, "a", "b", "c", "d", "e")
		p := ifrit.Background(rungroup.Ordered(ms...))
		<-p.Ready()
		procs = append(procs, p)
	}
	perGroup := float64(runtime.NumGoroutine()-before) / groups
	t.Logf("%.2f goroutines per idle %d-member group", perGroup, size)
	require.LessOrEqual(t, perGroup, float64(size+1))
	for _, p := range procs {
		p.Signal(os.Interrupt)
		require.NoError(t, waitExit(t, p))
	}
}
