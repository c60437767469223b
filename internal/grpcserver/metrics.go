package grpcserver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
)

// Metrics count a server's calls and time its unary ones. One Metrics may
// serve several servers of a process (a rep's simulated cells share one).
type Metrics struct {
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the call metrics on reg:
// gavel_grpc_server_handled_total{method,code} counts finished calls, unary
// and streaming; gavel_grpc_server_handling_seconds{method} observes how long
// unary calls took in the server, from the outermost interceptor to the
// handler's return (what a client waits for beyond the network and its own
// queueing).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_grpc_server_handled_total",
			Help: "gRPC calls finished by the server, by full method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gavel_grpc_server_handling_seconds",
			Help:    "Time the server spent on a unary gRPC call, by full method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms .. ~16 s
		}, []string{"method"}),
	}
	reg.MustRegister(m.handled, m.duration)
	return m
}

// observe records one finished call; a nil Metrics records nothing.
func (m *Metrics) observe(method string, err error, start time.Time, unary bool) {
	if m == nil {
		return
	}
	m.handled.WithLabelValues(method, status.Code(err).String()).Inc()
	if unary {
		m.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	}
}
