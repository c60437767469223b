package emitter

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the route emitter's Prometheus metrics.
type Metrics struct {
	// RoutesTotal is the number of route × endpoint registrations in the table.
	RoutesTotal prometheus.Gauge
	// RoutesRegistered counts registrations sent because the table changed.
	RoutesRegistered prometheus.Counter
	// RoutesUnregistered counts unregistrations sent because the table changed (not re-sends).
	RoutesUnregistered prometheus.Counter
	// RoutesSynced counts registrations sent by the periodic re-broadcast.
	RoutesSynced prometheus.Counter
	// MessagesEmitted counts NATS messages published, by subject.
	MessagesEmitted *prometheus.CounterVec
	// SyncDuration observes full BBS resyncs (fetch, build, diff).
	SyncDuration prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		RoutesTotal: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gavel_route_emitter_routes", Help: "Route × endpoint registrations in the routing table.",
		}),
		RoutesRegistered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_route_emitter_routes_registered_total", Help: "Registrations sent because the routing table changed.",
		}),
		RoutesUnregistered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_route_emitter_routes_unregistered_total", Help: "Unregistrations sent because the routing table changed (re-sends not counted).",
		}),
		RoutesSynced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_route_emitter_routes_synced_total", Help: "Registrations sent by the periodic re-broadcast.",
		}),
		MessagesEmitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_route_emitter_nats_messages_emitted_total", Help: "NATS messages published, by subject.",
		}, []string{"subject"}),
		SyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gavel_route_emitter_sync_duration_seconds", Help: "Duration of full BBS resyncs (fetch, build, diff).",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.RoutesTotal, m.RoutesRegistered, m.RoutesUnregistered, m.RoutesSynced, m.MessagesEmitted, m.SyncDuration)
	}
	return m
}
