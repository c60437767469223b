package app

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// Every failure is counted; the log gets the first, then one line a
// minute carrying how many failures it stands for.
func TestScoreFailuresCountEveryFailureAndLogAMinute(t *testing.T) {
	var logs bytes.Buffer
	logger := lager.NewLogger("auctioneer")
	logger.RegisterSink(lager.NewWriterSink(&logs, lager.DEBUG))
	s := newScoreFailures(prometheus.NewRegistry(), logger)
	now := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return now }

	boom := errors.New("strategy x: score of lrp a index 0 on cell c: division by zero")
	for range 5 {
		s.observe(boom)
	}
	require.Equal(t, 5.0, counterValue(t, s.counter))
	require.Equal(t, 1, strings.Count(logs.String(), "strategy-score-failed"), "one line for the first failure")
	require.Contains(t, logs.String(), `"failures_since_last_log":1`)

	now = now.Add(scoreFailureLogInterval)
	s.observe(boom)
	require.Equal(t, 6.0, counterValue(t, s.counter))
	require.Equal(t, 2, strings.Count(logs.String(), "strategy-score-failed"), "a line once the interval has passed")
	require.Contains(t, logs.String(), `"failures_since_last_log":5`)
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
