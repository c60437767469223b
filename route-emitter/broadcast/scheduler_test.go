package broadcast_test

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/route-emitter/broadcast"
	"github.com/gavelhq/gavel/route-emitter/internal/natstest"
)

// ticks records when Broadcast was called.
type ticks struct {
	mu sync.Mutex
	at []time.Time
}

func (k *ticks) add() { k.mu.Lock(); k.at = append(k.at, time.Now()); k.mu.Unlock() }

func (k *ticks) since(t0 time.Time) []time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []time.Time
	for _, t := range k.at {
		if !t.Before(t0) {
			out = append(out, t)
		}
	}
	return out
}

func start(t *testing.T, url string, opts broadcast.Options) *ticks {
	t.Helper()
	conn, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(conn.Close)
	k := &ticks{}
	opts.Conn, opts.Broadcast = conn, k.add
	proc := ifrit.Invoke(broadcast.New(opts))
	t.Cleanup(func() { proc.Signal(os.Interrupt); <-proc.Wait() })
	return k
}

func TestGreetAnswerSetsTheInterval(t *testing.T) {
	srv := natstest.Start(t)
	router := natstest.NewRouter(t, srv.URL("", ""))
	router.AnswerGreets(1)
	t0 := time.Now()
	k := start(t, srv.URL("", ""), broadcast.Options{DefaultInterval: time.Hour, JitterFactor: -1})
	time.Sleep(3500 * time.Millisecond)
	got := k.since(t0)
	// Once on the answer, then every second.
	require.GreaterOrEqual(t, len(got), 3, "broadcasts at %v", got)
	require.LessOrEqual(t, len(got), 5, "broadcasts at %v", got)
	for i := 1; i < len(got); i++ {
		require.InDelta(t, time.Second, got[i].Sub(got[i-1]), float64(300*time.Millisecond))
	}
}

func TestUnansweredGreetsKeepTheDefaultInterval(t *testing.T) {
	srv := natstest.Start(t)
	router := natstest.NewRouter(t, srv.URL("", ""))
	greets := make(chan struct{}, 100)
	_, err := router.Conn.Subscribe(broadcast.GreetSubject, func(*nats.Msg) { greets <- struct{}{} })
	require.NoError(t, err)
	require.NoError(t, router.Conn.Flush())
	t0 := time.Now()
	k := start(t, srv.URL("", ""), broadcast.Options{
		DefaultInterval: 300 * time.Millisecond, GreetInterval: 50 * time.Millisecond, GreetAttempts: 3, JitterFactor: -1,
	})
	time.Sleep(1100 * time.Millisecond)
	require.Len(t, greets, 3, "greets stop after the attempts")
	got := k.since(t0)
	require.GreaterOrEqual(t, len(got), 3)
	require.LessOrEqual(t, len(got), 4)

	// A router that starts later still sets the interval.
	router.SendStart(t, 1)
	t1 := time.Now()
	time.Sleep(2500 * time.Millisecond)
	after := k.since(t1)
	require.GreaterOrEqual(t, len(after), 2)
	require.LessOrEqual(t, len(after), 3)
}

// logRecorder is a lager sink that keeps every log line's message.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Log(l lager.LogFormat) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, l.Message)
}

func (r *logRecorder) matching(substr string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		if strings.Contains(m, substr) {
			out = append(out, m)
		}
	}
	return out
}

// With no router subscribed, the NATS server answers each greet with a "no
// responders" status; those are not router starts and are not errors.
func TestNoRespondersAnswersAreNotStartMessages(t *testing.T) {
	srv := natstest.Start(t)
	rec := &logRecorder{}
	logger := lager.NewLogger("test")
	logger.RegisterSink(rec)
	k := start(t, srv.URL("", ""), broadcast.Options{
		DefaultInterval: 200 * time.Millisecond, GreetInterval: 20 * time.Millisecond, GreetAttempts: 5,
		JitterFactor: -1, Logger: logger,
	})
	t0 := time.Now()
	require.Eventually(t, func() bool { return len(rec.matching("no-router-answered-greet")) > 0 },
		5*time.Second, 10*time.Millisecond, "the scheduler gives up greeting")
	require.Empty(t, rec.matching("bad-start-message"))
	require.Empty(t, rec.matching("router-start"), "no router started")
	require.Len(t, rec.matching("greet-not-answered"), 5, "every greet got the server's no-responders answer")
	time.Sleep(500 * time.Millisecond)
	require.NotEmpty(t, k.since(t0), "the default interval still broadcasts")
}
