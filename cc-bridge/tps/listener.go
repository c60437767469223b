package tps

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/bbs/models"
	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	"github.com/gavelhq/gavel/internal/grpcclient"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// Listener defaults.
const (
	// DefaultMaxInFlight is how many requests are served at once; more are
	// answered 503 (Diego's max_in_flight_requests).
	DefaultMaxInFlight = 200
	// DefaultMaxBulkGuids bounds the guids of one bulk status request.
	DefaultMaxBulkGuids = 5000
	// DefaultBBSTimeout bounds each BBS call.
	DefaultBBSTimeout = 10 * time.Second
	// DefaultCellTimeout bounds each call to a cell's rep.
	DefaultCellTimeout = 5 * time.Second
	// MaxCPUSamples bounds the previous CPU samples kept to compute rates.
	MaxCPUSamples = 100000
	// StatsPort is the container port whose host port stats report (Diego's).
	StatsPort = 8080
)

// BBS is what the listener reads from the BBS.
type BBS interface {
	ListActualLRPs(ctx context.Context, in *bbsv1.ListActualLRPsRequest, opts ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error)
	ListCells(ctx context.Context, in *bbsv1.ListCellsRequest, opts ...grpc.CallOption) (*bbsv1.ListCellsResponse, error)
}

// ListenerOptions configure a Listener.
type ListenerOptions struct {
	// BBS is read for instances and cells; required.
	BBS BBS
	// Cells reaches the reps for stats; required for the stats route.
	Cells *grpcclient.Pool
	// MaxInFlight bounds concurrent requests (default 200).
	MaxInFlight int
	// MaxBulkGuids bounds a bulk request's guids (default 5000).
	MaxBulkGuids int
	// BBSTimeout and CellTimeout bound each call (defaults 10 s and 5 s).
	BBSTimeout, CellTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Registry receives the listener's metrics (optional).
	Registry prometheus.Registerer
	// Logger; default a logger with no sinks.
	Logger lager.Logger
}

// Listener serves instance status to the controller. Safe for concurrent use.
type Listener struct {
	opts     ListenerOptions
	inFlight chan struct{}
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu      sync.Mutex
	samples map[string]cpuSample // by instance guid
}

type cpuSample struct {
	cpu uint64 // ns
	at  int64  // unix ns
}

// NewListener returns a listener.
func NewListener(opts ListenerOptions) *Listener {
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.MaxBulkGuids <= 0 {
		opts.MaxBulkGuids = DefaultMaxBulkGuids
	}
	if opts.BBSTimeout <= 0 {
		opts.BBSTimeout = DefaultBBSTimeout
	}
	if opts.CellTimeout <= 0 {
		opts.CellTimeout = DefaultCellTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("tps-listener")
	}
	l := &Listener{
		opts: opts, inFlight: make(chan struct{}, opts.MaxInFlight), samples: map[string]cpuSample{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gavel_tps_listener_requests_total", Help: "Requests served, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gavel_tps_listener_request_duration_seconds", Help: "Request latency, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
	}
	if opts.Registry != nil {
		opts.Registry.MustRegister(l.requests, l.duration)
	}
	return l
}

// Handler returns the routes:
//
//	GET /v1/actual_lrps/{guid}                 instances
//	GET /v1/actual_lrps/{guid}/stats           instances with usage from their cells
//	GET /v1/bulk_actual_lrp_status?guids=a,b   map of guid to instances
//	GET /health
func (l *Listener) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /v1/actual_lrps/{guid}", l.limit("lrp_status", l.status))
	mux.Handle("GET /v1/actual_lrps/{guid}/stats", l.limit("lrp_stats", l.stats))
	mux.Handle("GET /v1/bulk_actual_lrp_status", l.limit("bulk_lrp_status", l.bulk))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux
}

// limit enforces MaxInFlight and records metrics.
func (l *Listener) limit(route string, h func(*http.Request) (any, int, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		var body any
		var code int
		var err error
		select {
		case l.inFlight <- struct{}{}:
			body, code, err = h(r)
			<-l.inFlight
		default:
			code, err = http.StatusServiceUnavailable, fmt.Errorf("too many requests in flight (max_in_flight_requests %d)", l.opts.MaxInFlight)
		}
		l.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		l.duration.WithLabelValues(route).Observe(time.Since(began).Seconds())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if err != nil {
			l.opts.Logger.Info("request-failed", lager.Data{"route": route, "code": code, "error": err.Error()})
			body = bm.ErrorResponse{Error: err.Error()}
		}
		_ = json.NewEncoder(w).Encode(body)
	})
}

func badGUID(field, guid string) error {
	return fmt.Errorf("%s: must match %s (got %q)", field, bm.GUIDPattern, guid)
}

func (l *Listener) list(ctx context.Context, guids []string) ([]*modelsv1.ActualLRP, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.BBSTimeout)
	defer cancel()
	resp, err := l.opts.BBS.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: guids})
	if err != nil {
		return nil, fmt.Errorf("bbs: listing instances: %w", err)
	}
	return resp.GetActualLrps(), nil
}

func (l *Listener) status(r *http.Request) (any, int, error) {
	guid := r.PathValue("guid")
	if !bm.GUIDPattern.MatchString(guid) {
		return nil, http.StatusBadRequest, badGUID("process_guid", guid)
	}
	rows, err := l.list(r.Context(), []string{guid})
	if err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	return Instances(Resolve(rows), l.opts.Now()), http.StatusOK, nil
}

func (l *Listener) bulk(r *http.Request) (any, int, error) {
	raw := r.URL.Query().Get("guids")
	if raw == "" {
		return nil, http.StatusBadRequest, fmt.Errorf("guids: is required (comma-separated process guids)")
	}
	guids := strings.Split(raw, ",")
	if len(guids) > l.opts.MaxBulkGuids {
		return nil, http.StatusBadRequest, fmt.Errorf("guids: at most %d (got %d)", l.opts.MaxBulkGuids, len(guids))
	}
	for i, g := range guids {
		if !bm.GUIDPattern.MatchString(g) {
			return nil, http.StatusBadRequest, badGUID(fmt.Sprintf("guids[%d]", i), g)
		}
	}
	rows, err := l.list(r.Context(), guids)
	if err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	byGUID := make(map[string][]*modelsv1.ActualLRP, len(guids))
	for _, a := range rows {
		g := a.GetKey().GetProcessGuid()
		byGUID[g] = append(byGUID[g], a)
	}
	now := l.opts.Now()
	out := make(map[string][]bm.LRPInstance, len(guids))
	for _, g := range guids {
		out[g] = Instances(Resolve(byGUID[g]), now)
	}
	return out, http.StatusOK, nil
}

func (l *Listener) stats(r *http.Request) (any, int, error) {
	guid := r.PathValue("guid")
	if !bm.GUIDPattern.MatchString(guid) {
		return nil, http.StatusBadRequest, badGUID("process_guid", guid)
	}
	rows, err := l.list(r.Context(), []string{guid})
	if err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	resolved := Resolve(rows)
	now := l.opts.Now()
	instances := Instances(resolved, now)
	cellsOf := map[string][]int{} // cell id → positions in instances
	for i, a := range resolved {
		if a.GetState() == models.Running && a.GetInstanceKey().GetCellId() != "" {
			cellsOf[a.GetInstanceKey().GetCellId()] = append(cellsOf[a.GetInstanceKey().GetCellId()], i)
		}
		instances[i].Stats = &bm.InstanceStats{Time: now.UTC().Format(time.RFC3339)}
		if a.GetState() != models.Running {
			instances[i].Stats.Unavailable = "instance is " + StateOf(a)
		}
	}
	if len(cellsOf) == 0 {
		return instances, http.StatusOK, nil
	}
	addrs, err := l.repAddresses(r.Context())
	if err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for cellID, positions := range cellsOf {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := l.measure(r.Context(), addrs[cellID], cellID, guid, positions, instances)
			mu.Lock()
			defer mu.Unlock()
			for _, p := range positions {
				if err != nil {
					instances[p].Stats.Unavailable = err.Error()
					continue
				}
				m, ok := got[instances[p].InstanceGUID]
				if !ok {
					instances[p].Stats.Unavailable = "cell " + cellID + " does not run this instance"
					continue
				}
				instances[p].Stats = l.toStats(m)
			}
		}()
	}
	wg.Wait()
	return instances, http.StatusOK, nil
}

func (l *Listener) repAddresses(ctx context.Context) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.BBSTimeout)
	defer cancel()
	resp, err := l.opts.BBS.ListCells(ctx, &bbsv1.ListCellsRequest{})
	if err != nil {
		return nil, fmt.Errorf("bbs: listing cells: %w", err)
	}
	out := make(map[string]string, len(resp.GetCells()))
	for _, c := range resp.GetCells() {
		out[c.GetCellId()] = c.GetRepAddress()
	}
	return out, nil
}

func (l *Listener) measure(ctx context.Context, addr, cellID, guid string, positions []int, instances []bm.LRPInstance) (map[string]*repv1.InstanceMetrics, error) {
	if addr == "" {
		return nil, fmt.Errorf("cell %s is not registered", cellID)
	}
	if l.opts.Cells == nil {
		return nil, fmt.Errorf("no rep client configured")
	}
	conn, err := l.opts.Cells.Get(addr)
	if err != nil {
		return nil, fmt.Errorf("cell %s: %w", cellID, err)
	}
	req := &repv1.ContainerMetricsRequest{ProcessGuid: guid}
	for _, p := range positions {
		req.InstanceGuids = append(req.InstanceGuids, instances[p].InstanceGUID)
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.CellTimeout)
	defer cancel()
	resp, err := repv1.NewRepServiceClient(conn).ContainerMetrics(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("cell %s: container metrics: %w", cellID, err)
	}
	out := make(map[string]*repv1.InstanceMetrics, len(resp.GetMetrics()))
	for _, m := range resp.GetMetrics() {
		out[m.GetInstanceGuid()] = m
	}
	return out, nil
}

// toStats converts a cell's sample, computing the CPU fraction since this
// listener's previous sample of the instance (or since the container was
// created, for the first).
func (l *Listener) toStats(m *repv1.InstanceMetrics) *bm.InstanceStats {
	s := &bm.InstanceStats{
		Time: time.Unix(0, m.GetTimestamp()).UTC().Format(time.RFC3339), MemoryBytes: m.GetMemoryBytes(), DiskBytes: m.GetDiskBytes(),
		MemoryQuota: m.GetMemoryQuotaBytes(), DiskQuota: m.GetDiskQuotaBytes(), Unavailable: m.GetUnavailable(),
	}
	if m.GetUnavailable() != "" {
		return s
	}
	l.mu.Lock()
	prev, ok := l.samples[m.GetInstanceGuid()]
	if len(l.samples) >= MaxCPUSamples && !ok {
		clear(l.samples) // bounded: start over rather than grow
	}
	l.samples[m.GetInstanceGuid()] = cpuSample{cpu: m.GetCpuUsageNs(), at: m.GetTimestamp()}
	l.mu.Unlock()
	switch {
	case ok && m.GetTimestamp() > prev.at && m.GetCpuUsageNs() >= prev.cpu:
		s.CPU = float64(m.GetCpuUsageNs()-prev.cpu) / float64(m.GetTimestamp()-prev.at)
	case m.GetAgeNs() > 0:
		s.CPU = float64(m.GetCpuUsageNs()) / float64(m.GetAgeNs())
	}
	return s
}

// Resolve keeps one instance per index: the ORDINARY one when it runs,
// else a RUNNING evacuating or suspect copy, else the ORDINARY one, else
// whatever is there (Diego's ActualLRPGroup resolution). The result is
// sorted by index.
func Resolve(rows []*modelsv1.ActualLRP) []*modelsv1.ActualLRP {
	byIndex := map[int32]*modelsv1.ActualLRP{}
	rank := func(a *modelsv1.ActualLRP) int {
		switch {
		case a.GetPresence() == models.Ordinary && a.GetState() == models.Running:
			return 3
		case a.GetState() == models.Running:
			return 2
		case a.GetPresence() == models.Ordinary:
			return 1
		default:
			return 0
		}
	}
	for _, a := range rows {
		i := a.GetKey().GetIndex()
		if cur, ok := byIndex[i]; !ok || rank(a) > rank(cur) {
			byIndex[i] = a
		}
	}
	out := make([]*modelsv1.ActualLRP, 0, len(byIndex))
	for _, a := range byIndex {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetKey().GetIndex() < out[j].GetKey().GetIndex() })
	return out
}

// StateOf maps an instance to the controller's state: UNCLAIMED is STARTING
// (DOWN with a placement error), CLAIMED STARTING, RUNNING RUNNING, CRASHED
// CRASHED, anything else UNKNOWN.
func StateOf(a *modelsv1.ActualLRP) string {
	switch a.GetState() {
	case models.Unclaimed:
		if a.GetPlacementError() != "" {
			return bm.StateDown
		}
		return bm.StateStarting
	case models.Claimed:
		return bm.StateStarting
	case models.Running:
		return bm.StateRunning
	case models.Crashed:
		return bm.StateCrashed
	default:
		return bm.StateUnknown
	}
}

// Instances converts resolved instances to tps's answer.
func Instances(rows []*modelsv1.ActualLRP, now time.Time) []bm.LRPInstance {
	out := make([]bm.LRPInstance, len(rows))
	for i, a := range rows {
		state := StateOf(a)
		since := time.Unix(0, a.GetSince())
		inst := bm.LRPInstance{
			ProcessGUID: a.GetKey().GetProcessGuid(), InstanceGUID: a.GetInstanceKey().GetInstanceGuid(),
			CellID: a.GetInstanceKey().GetCellId(), Index: a.GetKey().GetIndex(), State: state,
			Details: a.GetPlacementError(), Since: since.Unix(),
			NetInfo: bm.NetInfo{Address: a.GetNetInfo().GetAddress(), InstanceAddress: a.GetNetInfo().GetInstanceAddress(), Ports: []bm.PortMapping{}},
		}
		if state != bm.StateCrashed && a.GetSince() > 0 {
			inst.Uptime = int64(now.Sub(since) / time.Second)
		}
		for j, p := range a.GetNetInfo().GetPorts() {
			inst.NetInfo.Ports = append(inst.NetInfo.Ports, bm.PortMapping{ContainerPort: p.GetContainerPort(), HostPort: p.GetHostPort()})
			if p.GetContainerPort() == StatsPort || (j == 0 && inst.Port == 0) {
				inst.Host, inst.Port = a.GetNetInfo().GetAddress(), p.GetHostPort()
			}
		}
		out[i] = inst
	}
	return out
}
