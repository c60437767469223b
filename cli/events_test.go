package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// gavel events goes on through a restart of the BBS it streams from: the
// stream breaks, and once the BBS serves again it resumes after the last
// event it showed, so nothing is missed or shown twice.
func TestEventsResumeAcrossRestart(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	a, stopA := replica(t, prefix, "bbs-1", "127.0.0.1:0")
	require.Eventually(t, a.Held, 10*time.Second, 20*time.Millisecond)
	addr := a.Addr()

	out, errOut, done, cancel := runEvents(t, "--kind", "desired_lrp", "--bbs-address", addr)
	defer cancel()
	pushUntilShown(t, addr, out, "before")

	stopA()
	require.Eventually(t, func() bool { return strings.Contains(errOut.String(), "gavel events: stream broken") }, 10*time.Second, 20*time.Millisecond)
	again, _ := replica(t, prefix, "bbs-1-again", addr)
	require.Eventually(t, again.Held, 15*time.Second, 20*time.Millisecond)
	_, err := gavel(t, addr, "push", "after", "--command", "sleep 1")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "desired_lrp_created after") }, 15*time.Second, 50*time.Millisecond,
		"the stream resumed on the restarted BBS; stderr: %s", errOut.String())
	requireEachLineOnce(t, out.String())
	require.Contains(t, errOut.String(), "resuming after revision")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "Ctrl-C ends the stream cleanly")
	case <-time.After(10 * time.Second):
		t.Fatal("gavel events did not stop")
	}
}

// requireEachLineOnce fails when a line of out appears twice.
func requireEachLineOnce(t *testing.T, out string) {
	t.Helper()
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		require.False(t, seen[line], "shown twice: %s\n%s", line, out)
		seen[line] = true
	}
}

// gavel events goes on through a failover between two replicas, whichever of
// them it was streaming from.
func TestEventsContinueAcrossFailover(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	a, stopA := replica(t, prefix, "bbs-a", "127.0.0.1:0")
	require.Eventually(t, a.Held, 10*time.Second, 20*time.Millisecond)
	b, _ := replica(t, prefix, "bbs-b", "127.0.0.1:0")

	out, errOut, done, cancel := runEvents(t, "--kind", "desired_lrp", "--bbs-address", a.Addr()+","+b.Addr())
	defer cancel()

	// The stream may open after the first push: push apps until it shows one.
	pushUntilShown(t, a.Addr(), out, "before")

	stopA()
	require.Eventually(t, b.Held, 15*time.Second, 20*time.Millisecond, "the other replica takes over")
	_, err := gavel(t, b.Addr(), "push", "after", "--command", "sleep 1")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "desired_lrp_created after") }, 15*time.Second, 50*time.Millisecond,
		"the stream resumed on the new active BBS; stderr: %s", errOut.String())
	requireEachLineOnce(t, out.String())

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "Ctrl-C ends the stream cleanly")
	case <-time.After(10 * time.Second):
		t.Fatal("gavel events did not stop")
	}
}

// With --reconnect 0 a broken stream ends the command with the reason.
func TestEventsWithoutReconnectEndOnABrokenStream(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	a, stopA := replica(t, prefix, "bbs-only", "127.0.0.1:0")
	require.Eventually(t, a.Held, 10*time.Second, 20*time.Millisecond)
	out, errOut, done, cancel := runEvents(t, "--reconnect", "0", "--bbs-address", a.Addr())
	defer cancel()
	pushUntilShown(t, a.Addr(), out, "solo")
	stopA()
	select {
	case err := <-done:
		require.Error(t, err)
		require.NotContains(t, errOut.String(), "resuming")
	case <-time.After(10 * time.Second):
		t.Fatal("gavel events kept waiting on a broken stream")
	}
	_, err := execute(t, "events", "--reconnect", "-1s", "--bbs-address", "127.0.0.1:1")
	require.ErrorContains(t, err, "--reconnect: must not be negative")
	_, err = execute(t, "events", "--bbs-address", "127.0.0.1:1", "--timeout", "5s")
	require.EqualError(t, err, "cannot reach the BBS at 127.0.0.1:1: is it running? (make run starts one)",
		"no BBS at all is an error at once, not a stream to resume")
}

// pushUntilShown desires apps named prefix-1, prefix-2, ... until the events
// command writing to out shows one of them being created.
func pushUntilShown(t *testing.T, addr string, out *lockedBuffer, prefix string) {
	t.Helper()
	n := 0
	require.Eventually(t, func() bool {
		if strings.Contains(out.String(), "desired_lrp_created "+prefix+"-") {
			return true
		}
		n++
		_, err := gavel(t, addr, "push", fmt.Sprintf("%s-%d", prefix, n), "--command", "sleep 1")
		require.NoError(t, err)
		return false
	}, 10*time.Second, 200*time.Millisecond, "the stream never showed a desire")
}

// runEvents runs gavel events with args until cancel; done receives its
// result.
func runEvents(t *testing.T, args ...string) (out, errOut *lockedBuffer, done chan error, cancel context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut = &lockedBuffer{}, &lockedBuffer{}
	cmd := NewRootCommand()
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	cmd.SetArgs(append([]string{"events"}, args...))
	done = make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	return out, errOut, done, cancel
}
