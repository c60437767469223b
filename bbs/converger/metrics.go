package converger

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Metrics are the converger's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	lrps        *prometheus.GaugeVec
	tasks       *prometheus.GaugeVec
	cells       prometheus.Gauge
	freshDoms   prometheus.Gauge
	duration    prometheus.Histogram
	passes      *prometheus.CounterVec
	actions     *prometheus.CounterVec
	conflicts   prometheus.Counter
	kicked      prometheus.Counter
	pruned      prometheus.Counter
	lastPassEnd prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lrps: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gavel_bbs_lrps",
			Help: "LRP instances seen by the last convergence pass: desired (sum of instances), running, claimed, unclaimed, crashed (ordinary rows), missing, extra, suspect, evacuating.",
		}, []string{"state"}),
		tasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gavel_bbs_tasks", Help: "Tasks by state, as seen by the last convergence pass.",
		}, []string{"state"}),
		cells:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "gavel_bbs_convergence_present_cells", Help: "Live cells seen by the last convergence pass."}),
		freshDoms: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gavel_bbs_convergence_fresh_domains", Help: "Fresh domains seen by the last convergence pass."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gavel_bbs_convergence_pass_duration_seconds", Help: "Duration of convergence passes (snapshot, plan, apply).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_bbs_convergence_passes_total", Help: "Convergence passes, by trigger (start, interval, cell_lost, instance_removed).",
		}, []string{"trigger"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_bbs_convergence_actions_total", Help: "Convergence actions carried out, by action.",
		}, []string{"action"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_bbs_convergence_conflicts_total", Help: "Convergence changes dropped because a concurrent write changed their rows first.",
		}),
		kicked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_bbs_convergence_tasks_kicked_total", Help: "Tasks re-driven by convergence (pending tasks re-auctioned, callbacks re-submitted).",
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gavel_bbs_convergence_tasks_pruned_total", Help: "Tasks failed or deleted by convergence.",
		}),
		lastPassEnd: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gavel_bbs_convergence_last_pass_timestamp_seconds", Help: "When the last convergence pass ended (Unix seconds).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.lrps, m.tasks, m.cells, m.freshDoms, m.duration, m.passes, m.actions, m.conflicts, m.kicked, m.pruned, m.lastPassEnd)
	}
	return m
}

var taskStates = []modelsv1.TaskState{models.TaskPending, models.TaskRunning, models.TaskCompleted, models.TaskResolving}

func (m *Metrics) observe(trigger string, res *Result, d time.Duration) {
	if m == nil {
		return
	}
	c := res.Plan.Counts
	for state, n := range map[string]int{
		"desired": c.Desired, "running": c.Running, "claimed": c.Claimed, "unclaimed": c.Unclaimed, "crashed": c.Crashed,
		"missing": c.Missing, "extra": c.Extra, "suspect": c.Suspect, "evacuating": c.Evacuating,
	} {
		m.lrps.WithLabelValues(state).Set(float64(n))
	}
	for _, s := range taskStates {
		m.tasks.WithLabelValues(models.TaskStateName(s)).Set(float64(c.Tasks[s]))
	}
	m.cells.Set(float64(c.Cells))
	m.freshDoms.Set(float64(c.FreshDomains))
	m.duration.Observe(d.Seconds())
	m.passes.WithLabelValues(trigger).Inc()
	m.conflicts.Add(float64(res.Conflicts))
	m.lastPassEnd.SetToCurrentTime()
}

func (m *Metrics) action(name string) { m.actionN(name, 1) }

func (m *Metrics) actionN(name string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.actions.WithLabelValues(name).Add(float64(n))
}

func (m *Metrics) tasksKicked(n int) {
	if m != nil {
		m.kicked.Add(float64(n))
	}
}

func (m *Metrics) tasksPruned(n int) {
	if m != nil {
		m.pruned.Add(float64(n))
	}
}
