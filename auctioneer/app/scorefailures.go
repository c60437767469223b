package app

import (
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// scoreFailureLogInterval spaces the log lines of failed strategy-file
// evaluations: a broken score fails once per (item, cell), thousands of
// times an auction.
const scoreFailureLogInterval = time.Minute

// scoreFailures counts the strategy file's failed score evaluations and
// logs the first one, then at most one per scoreFailureLogInterval with
// the number seen since the last line.
type scoreFailures struct {
	counter prometheus.Counter
	logger  lager.Logger
	now     func() time.Time

	mu         sync.Mutex
	lastLogged time.Time
	unlogged   int64
}

func newScoreFailures(reg prometheus.Registerer, logger lager.Logger) *scoreFailures {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gavel_auctioneer_strategy_score_failures_total",
		Help: "Evaluations of the strategy file's score that failed or were not a finite number; each scored the cell +Inf.",
	})
	reg.MustRegister(c)
	return &scoreFailures{counter: c, logger: logger, now: time.Now}
}

// observe is given to strategyfile.File.RegisterObserved.
func (s *scoreFailures) observe(err error) {
	s.counter.Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unlogged++
	now := s.now()
	if !s.lastLogged.IsZero() && now.Sub(s.lastLogged) < scoreFailureLogInterval {
		return
	}
	s.logger.Error("strategy-score-failed", err, lager.Data{"failures_since_last_log": s.unlogged})
	s.lastLogged, s.unlogged = now, 0
}
