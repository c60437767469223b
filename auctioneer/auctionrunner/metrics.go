package auctionrunner

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the auctioneer's Prometheus metrics (Diego's Auctioneer*
// metrics, reference auction.md §2.4, under Prometheus names).
type Metrics struct {
	// AuctionsStarted counts work placed and handed to a cell, by kind
	// (lrp, task): Diego's AuctioneerLRPAuctionsStarted/TaskAuctionsStarted.
	AuctionsStarted *prometheus.CounterVec
	// AuctionsFailed counts work that could not be placed, by kind:
	// Diego's AuctioneerLRPAuctionsFailed/TaskAuctionsFailed.
	AuctionsFailed *prometheus.CounterVec
	// FetchStatesDuration is the time to fetch every cell's state once.
	FetchStatesDuration prometheus.Histogram
	// FailedCellStates counts State calls that failed or timed out.
	FailedCellStates prometheus.Counter
	// CellStatesFetched counts State calls made for auctions.
	CellStatesFetched prometheus.Counter
	// CellStatesReused counts cells whose kept state stood in for a State
	// call (Options.StateMaxAge).
	CellStatesReused prometheus.Counter
	// BatchSize is the number of work items (LRP instances and tasks) per auction.
	BatchSize prometheus.Histogram
	// AuctionDuration is the time from the wake-up to the last write-back.
	AuctionDuration prometheus.Histogram
	// PerformErrors counts Perform calls that failed; their work is
	// assumed started, as in Diego, and left to convergence.
	PerformErrors prometheus.Counter
	// WriteBackErrors counts FailActualLRP/RejectTask calls that failed.
	WriteBackErrors prometheus.Counter
	// PacedAuctions counts auctions that waited for Options.MinInterval,
	// and PacingSeconds the time they waited in all.
	PacedAuctions prometheus.Counter
	PacingSeconds prometheus.Counter
	// HeldAuctions counts paced auctions held past Options.MinInterval for
	// a sparse batch (Options.MaxInterval).
	HeldAuctions prometheus.Counter
}

// NewMetrics builds the metrics and registers them on reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		AuctionsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_auctioneer_auctions_started_total",
			Help: "Work items placed on a cell and sent to it, by kind (lrp, task).",
		}, []string{"kind"}),
		AuctionsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_auctioneer_auctions_failed_total",
			Help: "Work items that could not be placed, by kind (lrp, task).",
		}, []string{"kind"}),
		FetchStatesDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gavel_auctioneer_fetch_states_duration_seconds",
			Help:    "Time to fetch the states of the cells an auction asks (every live cell, or those whose kept state is stale).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		FailedCellStates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_auctioneer_failed_cell_state_requests_total",
			Help: "Cell State requests that failed or timed out.",
		}),
		CellStatesFetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_auctioneer_cell_states_fetched_total",
			Help: "Cell State requests made for auctions.",
		}),
		CellStatesReused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_auctioneer_cell_states_reused_total",
			Help: "Cells whose kept state stood in for a State request.",
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gavel_auctioneer_batch_size",
			Help:    "Work items (LRP instances and tasks) per auction.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		AuctionDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gavel_auctioneer_auction_duration_seconds",
			Help:    "Time of one auction, from the state fetch to the last write-back.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		PerformErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_auctioneer_perform_errors_total",
			Help: "Perform calls that failed; their work is left to convergence.",
		}),
		WriteBackErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_auctioneer_write_back_errors_total",
			Help: "FailActualLRP and RejectTask calls to the BBS that failed.",
		}),
		PacedAuctions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_auctioneer_paced_auctions_total",
			Help: "Auctions that waited for min_auction_interval since the last one started, gathering the work that arrived meanwhile.",
		}),
		PacingSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_auctioneer_pacing_wait_seconds_total",
			Help: "Time auctions waited for min_auction_interval, in all.",
		}),
		HeldAuctions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_auctioneer_held_auctions_total",
			Help: "Auctions a busy auctioneer held past min_auction_interval, up to max_auction_interval, because the work waiting was under SparseBatchPerCell (2) items per cell of the last auction.",
		}),
	}
	for _, kind := range []string{"lrp", "task"} {
		m.AuctionsStarted.WithLabelValues(kind)
		m.AuctionsFailed.WithLabelValues(kind)
	}
	if reg != nil {
		reg.MustRegister(m.AuctionsStarted, m.AuctionsFailed, m.FetchStatesDuration, m.FailedCellStates,
			m.CellStatesFetched, m.CellStatesReused,
			m.BatchSize, m.AuctionDuration, m.PerformErrors, m.WriteBackErrors, m.PacedAuctions, m.PacingSeconds, m.HeldAuctions)
	}
	return m
}
