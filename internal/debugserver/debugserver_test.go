package debugserver_test

import (
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/internal/debugserver"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestServesMetricsAndPprofThenStops(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "gavel_test_things_total", Help: "things"})
	reg.MustRegister(c)
	c.Add(3)

	srv := debugserver.New("127.0.0.1:0", reg, nil)
	proc := ifrit.Invoke(srv)
	base := "http://" + srv.Addr()

	code, body := get(t, base+"/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "gavel_test_things_total 3")

	code, body = get(t, base+"/debug/pprof/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "goroutine")

	code, _ = get(t, base+"/debug/pprof/goroutine?debug=1")
	assert.Equal(t, http.StatusOK, code)

	proc.Signal(syscall.SIGTERM)
	select {
	case err := <-proc.Wait():
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
	_, err := http.Get(base + "/metrics")
	assert.Error(t, err, "nothing listens after stop")
}

func TestListenFailure(t *testing.T) {
	first := debugserver.New("127.0.0.1:0", prometheus.NewRegistry(), nil)
	proc := ifrit.Invoke(first)
	defer func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() }()

	second := ifrit.Background(debugserver.New(first.Addr(), prometheus.NewRegistry(), nil))
	select {
	case err := <-second.Wait():
		assert.ErrorContains(t, err, first.Addr())
	case <-time.After(10 * time.Second):
		t.Fatal("second server on the same address did not fail")
	}
}
