package emitter_test

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/route-emitter/emitter"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
)

type published struct {
	subject string
	msg     routingtable.RegistryMessage
}

type recorder struct {
	mu   sync.Mutex
	msgs []published
	fail bool
}

func (r *recorder) Publish(subject string, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("nats: connection closed")
	}
	var m routingtable.RegistryMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	r.msgs = append(r.msgs, published{subject, m})
	return nil
}

func (r *recorder) count(subject string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m.subject == subject {
			n++
		}
	}
	return n
}

func msg(uri, host string) routingtable.RegistryMessage {
	return routingtable.RegistryMessage{Host: host, Port: 61000, URIs: []string{uri}, PrivateInstanceID: "ig"}
}

func TestUnregistersAreResentUntilTheCountUnlessReregistered(t *testing.T) {
	rec := &recorder{}
	m := emitter.NewMetrics(nil)
	e := emitter.New(emitter.Options{Publisher: rec, Metrics: m, UnregisterCount: 3})
	require.NoError(t, e.Emit(routingtable.Messages{
		Registrations:   []routingtable.RegistryMessage{msg("c.com", "10.0.0.1")},
		Unregistrations: []routingtable.RegistryMessage{msg("a.com", "10.0.0.1"), msg("b.com", "10.0.0.1")},
	}))
	require.Equal(t, 1, rec.count(emitter.RegisterSubject))
	require.Equal(t, 2, rec.count(emitter.UnregisterSubject))
	require.Equal(t, 2, e.PendingUnregisters())

	// b.com comes back: its re-sends stop.
	require.NoError(t, e.Emit(routingtable.Messages{Registrations: []routingtable.RegistryMessage{msg("b.com", "10.0.0.1")}}))
	require.Equal(t, 1, e.PendingUnregisters())
	require.NoError(t, e.ResendUnregisters()) // a.com: 2nd send
	require.NoError(t, e.ResendUnregisters()) // a.com: 3rd and last
	require.NoError(t, e.ResendUnregisters()) // nothing
	require.Equal(t, 0, e.PendingUnregisters())
	require.Equal(t, 4, rec.count(emitter.UnregisterSubject))

	require.Equal(t, 2.0, value(t, m.RoutesRegistered))
	require.Equal(t, 2.0, value(t, m.RoutesUnregistered))
	require.Equal(t, 4.0, value(t, m.MessagesEmitted.WithLabelValues(emitter.UnregisterSubject)))
	require.Equal(t, 2.0, value(t, m.MessagesEmitted.WithLabelValues(emitter.RegisterSubject)))
}

func TestRunResendsEveryInterval(t *testing.T) {
	rec := &recorder{}
	clk := fakeclock.NewFakeClock(time.Now())
	e := emitter.New(emitter.Options{Publisher: rec, Clock: clk, UnregisterInterval: 30 * time.Second, UnregisterCount: 20})
	proc := ifrit.Invoke(e)
	defer func() { proc.Signal(nil); <-proc.Wait() }()
	require.NoError(t, e.Emit(routingtable.Messages{Unregistrations: []routingtable.RegistryMessage{msg("a.com", "10.0.0.1")}}))
	for i := 2; i <= 21; i++ {
		clk.WaitForWatcherAndIncrement(30 * time.Second)
		want := min(i, 20)
		require.Eventually(t, func() bool { return rec.count(emitter.UnregisterSubject) == want }, time.Second, time.Millisecond)
	}
	require.Equal(t, 0, e.PendingUnregisters())
}

func TestBroadcastCountsSyncedAndReportsFailures(t *testing.T) {
	rec := &recorder{}
	m := emitter.NewMetrics(nil)
	e := emitter.New(emitter.Options{Publisher: rec, Metrics: m})
	require.NoError(t, e.Broadcast([]routingtable.RegistryMessage{msg("a.com", "10.0.0.1"), msg("b.com", "10.0.0.1")}))
	require.Equal(t, 2.0, value(t, m.RoutesSynced))
	rec.fail = true
	err := e.Broadcast([]routingtable.RegistryMessage{msg("a.com", "10.0.0.1")})
	require.ErrorContains(t, err, "publishing to router.register")
}

// value reads a counter.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
