package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Result is everything one run measured. Durations are in seconds or
// milliseconds as their names say; rates are per second.
type Result struct {
	// Setup describes the run and the machine.
	Setup Setup `json:"setup"`
	// RawEtcd is the raw etcd transaction rate of this run.
	RawEtcd RawEtcd `json:"raw_etcd"`
	// BatchedEtcd is etcd's nested-batch guarded key rate of this run.
	BatchedEtcd BatchedEtcd `json:"batched_etcd"`
	// Placement is the burst from the first DesireLRP to the last RUNNING.
	Placement Placement `json:"placement"`
	// Recovery is the kill-cells phase (absent without --kill-cells).
	Recovery *Recovery `json:"recovery,omitempty"`
	// Check is the final consistency check of every actual LRP, right
	// after the last phase.
	Check Check `json:"check"`
	// SettledCheck is the check repeated until it passed or 45 s passed,
	// present only when the first one failed.
	SettledCheck *Check `json:"settled_check,omitempty"`
	// Targets compares the run with the goals of issue 8.
	Targets []Target `json:"targets"`
	// Failure is set when the run stopped early: why, and how far it got.
	// The rest of the result holds whatever was measured until then.
	Failure *Failure `json:"failure,omitempty"`
	// Timeline samples the indices RUNNING over time (seconds since the
	// first DesireLRP); it is what the SVG draws.
	Timeline []Point `json:"timeline,omitempty"`
}

// Setup describes the run.
type Setup struct {
	Started           time.Time `json:"started"`
	Cells             int       `json:"cells"`
	CellProcesses     int       `json:"cell_processes"`
	LRPs              int       `json:"lrps"`
	InstancesPerLRP   int       `json:"instances_per_lrp"`
	Instances         int       `json:"instances"`
	Sizes             []Size    `json:"sizes"`
	CellMemoryMB      int       `json:"cell_memory_mb"`
	CellContainers    int       `json:"cell_containers"`
	DesireConcurrency int       `json:"desire_concurrency"`
	PresenceTTLSec    float64   `json:"presence_ttl_seconds"`
	// ClaimDelaySec is the cells' claim_delay; 0: they claim before running.
	ClaimDelaySec  float64 `json:"claim_delay_seconds,omitempty"`
	CommitWorkers  int     `json:"bbs_commit_workers,omitempty"`
	CommitBatchOps int     `json:"bbs_commit_batch_ops,omitempty"`
	// MinAuctionIntervalSec is the auctioneer's min_auction_interval, when
	// the run set it.
	MinAuctionIntervalSec *float64 `json:"min_auction_interval_seconds,omitempty"`
	// MaxAuctionIntervalSec is the auctioneer's max_auction_interval, when
	// the run set it.
	MaxAuctionIntervalSec *float64 `json:"max_auction_interval_seconds,omitempty"`
	// EtcdMode is "process" (etcd its own process, measured apart) or
	// "embedded" (etcd inside the BBS process).
	EtcdMode  string `json:"etcd_mode"`
	NumCPU    int    `json:"num_cpu"`
	GoVersion string `json:"go_version"`
	// TransparentHugePages is the host's transparent huge page mode
	// ("always", "madvise", "never"; empty when unknown): with other than
	// "always", the daemons' heaps use 4 KiB pages, which costs them CPU in
	// page faults and TLB misses on some hosts.
	TransparentHugePages string `json:"transparent_huge_pages,omitempty"`
	// LoadAverage is /proc/loadavg's 1, 5 and 15 minute loads before the
	// cluster started and when the run ended.
	LoadBefore [3]float64 `json:"load_average_before"`
	LoadAfter  [3]float64 `json:"load_average_after"`
	// StartupSeconds is the time to start the daemons and register every cell.
	StartupSeconds float64 `json:"startup_seconds"`
}

// Placement is the burst placement phase.
type Placement struct {
	// Instances is the number desired; Placed the number that ran.
	Instances int `json:"instances"`
	Placed    int `json:"placed"`
	// AllRunning says every instance reached RUNNING within the timeout.
	AllRunning bool `json:"all_running"`
	// DesireSeconds is the time to issue every DesireLRP call.
	DesireSeconds float64 `json:"desire_seconds"`
	// Seconds is the time from the first DesireLRP call to the last
	// instance RUNNING.
	Seconds float64 `json:"seconds"`
	// PerSecond is Placed / Seconds; RatioToRawEtcd divides it by the raw
	// etcd transaction rate.
	PerSecond      float64 `json:"placements_per_second"`
	RatioToRawEtcd float64 `json:"ratio_to_raw_etcd_txn_rate"`
	// BatchedCeiling is the placements/s etcd's batched rate allows:
	// BatchedEtcd.KeysPerSecond / Etcd.WritesPerInstance (both measured in
	// this run); RatioToBatchedEtcd is PerSecond over it.
	BatchedCeiling     float64 `json:"batched_ceiling_placements_per_second"`
	RatioToBatchedEtcd float64 `json:"ratio_to_batched_etcd_ceiling"`
	// EtcdLeastMicros is the etcd server's own CPU per placed instance at
	// its best: the batched measurement's server CPU per guarded key times
	// Etcd.WritesPerInstance. What BBS+etcd spends beyond it is the BBS's
	// (and etcd's at the batch sizes the placement reaches).
	EtcdLeastMicros float64 `json:"etcd_least_micros_per_placed"`
	// FirstRunningSec is the time from the first DesireLRP call to the
	// first instance RUNNING: the pipeline's fill time.
	FirstRunningSec float64 `json:"first_running_sec"`
	// Tenths splits the instances into ten equal parts in the order they
	// reached RUNNING; each part's rate is its size over the time from the
	// previous part's last RUNNING to its own last (the first part from the
	// first RUNNING).
	Tenths []Tenth `json:"tenths"`
	// TimeTenths splits the time from the first RUNNING to the last into
	// ten equal slices; each rate is the instances that ran in the slice
	// over its length.
	TimeTenths []Tenth `json:"time_tenths,omitempty"`
	// LastToFirstTenth is the last tenth's rate over the first's.
	LastToFirstTenth float64 `json:"last_to_first_tenth"`
	// Latency is from an LRP's DesireLRP call to each of its instances'
	// first RUNNING event.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	LatencyMaxMs float64 `json:"latency_max_ms"`
	// Etcd is etcd's own counters over the phase.
	Etcd EtcdUse `json:"etcd"`
	// BBS and Auctioneer are the daemons' resource use. With the embedded
	// etcd the BBS's includes etcd's.
	BBS        ProcUse `json:"bbs"`
	Auctioneer ProcUse `json:"auctioneer"`
	// EtcdProcess is the etcd process's resource use (EtcdProcess mode
	// only; absent when etcd is embedded in the BBS).
	EtcdProcess *ProcUse `json:"etcd_process,omitempty"`
	// Cells adds up every cell process.
	Cells ProcUse `json:"cells"`
	// Bench is the bench's own process (desiring, tracking every instance's
	// events): CPU the daemons did not have on a shared machine.
	Bench ProcUse `json:"bench"`
	// Auctions are the auctioneer's histograms over the phase.
	Auctions Auctions `json:"auctions"`
	// Convergence is what the BBS's converger did over the phase.
	Convergence Convergence `json:"convergence"`
	// CellCallErrors is the cells' failed BBS calls, by call and gRPC
	// code, "call/code" (gavel_rep_bbs_call_errors_total).
	CellCallErrors map[string]float64 `json:"cell_bbs_call_errors,omitempty"`
	// RunInfo is the cells' run-info caches over the phase, summed like
	// CellCallErrors.
	RunInfo RunInfo `json:"cell_run_info"`
	// CellBatches is the cells' batched BBS calls, by call, summed like
	// CellCallErrors.
	CellBatches map[string]CellBatch `json:"cell_bbs_batches,omitempty"`
	// EventStream is the benchmark's own event subscription.
	EventStream EventStream `json:"event_stream"`
	// BBSCalls is the time the BBS spent on its unary calls over the phase,
	// by method (gavel_grpc_server_handling_seconds), in seconds: where the
	// cells' claims and starts wait when they pass their deadline.
	BBSCalls map[string]Histogram `json:"bbs_calls,omitempty"`
}

// Tenth is one tenth of the instances.
type Tenth struct {
	// From and To are the part's range in RUNNING order (To exclusive).
	From int `json:"from"`
	To   int `json:"to"`
	// StartSec and EndSec bound the part, in seconds since the first DesireLRP.
	StartSec  float64 `json:"start_sec"`
	EndSec    float64 `json:"end_sec"`
	PerSecond float64 `json:"per_second"`
}

// EtcdUse is the change of etcd's counters over a phase, read from etcd's
// metrics (on the gavel-etcd's debug address, or the BBS's when embedded).
type EtcdUse struct {
	// Puts and Deletes are etcd_mvcc_put_total and etcd_mvcc_delete_total:
	// every key written or deleted, inside transactions or not.
	Puts    float64 `json:"puts"`
	Deletes float64 `json:"deletes"`
	// Txns is etcd_mvcc_txn_total; Proposals is
	// etcd_server_proposals_committed_total (every raft entry, including
	// lease grants and the presences' and locks' writes).
	Txns      float64 `json:"txns"`
	Proposals float64 `json:"proposals_committed"`
	// PutBytes is etcd_debugging_mvcc_total_put_size_in_bytes.
	PutBytes float64 `json:"put_bytes"`
	// BBSTxns and BBSTxnRequests are the BBS's group commits and the
	// requests they carried (gavel_bbs_etcd_txns_total,
	// gavel_bbs_etcd_txn_requests_total).
	BBSTxns        float64 `json:"bbs_txns"`
	BBSTxnRequests float64 `json:"bbs_txn_requests"`
	// CacheRelists is how many times the BBS's watch cache read the whole
	// prefix again during the phase (gavel_bbs_watch_cache_relists_total).
	CacheRelists float64 `json:"bbs_cache_relists"`
	// WritesPerInstance is (Puts + Deletes) / placed instances: the
	// figure the ≤ 4 budget applies to.
	WritesPerInstance float64 `json:"writes_per_instance"`
	// ProposalsPerInstance is Proposals / placed instances.
	ProposalsPerInstance float64 `json:"proposals_per_instance"`
}

// Failure says why a run stopped early and how far it got.
type Failure struct {
	// Reason is the error that ended the run.
	Reason string `json:"reason"`
	// Placed is how many instances had run when it ended.
	Placed int `json:"placed"`
	// AfterSeconds is the time from the first DesireLRP call to the end
	// (0 if the placement never started).
	AfterSeconds float64 `json:"after_seconds"`
}

// ProcUse is a daemon's resource use.
type ProcUse struct {
	// CPUSeconds is user + system CPU over the phase.
	CPUSeconds float64 `json:"cpu_seconds"`
	// PeakRSSBytes is the peak resident set (VmHWM) at the end of the phase.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// PeakRSSMiB is PeakRSSBytes in MiB, for people.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// SystemCPUShare is the share of CPUSeconds spent in the kernel.
	SystemCPUShare float64 `json:"system_cpu_share"`
	// MinorFaults is the minor page faults over the phase.
	MinorFaults int64 `json:"minor_faults"`
	// MinorFaultsPerPlaced is MinorFaults per instance placed in the phase.
	MinorFaultsPerPlaced float64 `json:"minor_faults_per_placed,omitempty"`
	// CPUMicrosPerPlaced is CPUSeconds in microseconds per instance placed
	// in the phase (0 when none was). With the embedded etcd the BBS's
	// figure includes etcd's, which runs in the same process.
	CPUMicrosPerPlaced float64 `json:"cpu_us_per_placed,omitempty"`
	// CPUPerPlacedInEtcdKeys is CPUMicrosPerPlaced over the etcd server's
	// CPU per guarded key in the batched measurement of the same run: the
	// cost in etcd writes' worth of CPU. A slower host raises both, so it
	// moves less between runs than the µs do (0 when either is unknown).
	CPUPerPlacedInEtcdKeys float64 `json:"cpu_per_placed_in_etcd_keys,omitempty"`
}

// Auctions are the auctioneer's metrics over a phase.
type Auctions struct {
	Started float64 `json:"lrps_started"`
	Failed  float64 `json:"lrps_failed"`
	// FailedCellStates, PerformErrors and WriteBackErrors are the
	// auctioneer's error counters.
	FailedCellStates float64 `json:"failed_cell_states"`
	PerformErrors    float64 `json:"perform_errors"`
	WriteBackErrors  float64 `json:"write_back_errors"`
	// StatesFetched counts cell State calls, StatesReused the cells whose
	// kept state stood in for one (auctioneer cell_state_max_age).
	StatesFetched float64 `json:"cell_states_fetched"`
	StatesReused  float64 `json:"cell_states_reused"`
	// Paced counts auctions that waited for min_auction_interval, and
	// PacingSeconds the time they waited in all; Held those of them held
	// past it for a sparse batch (max_auction_interval).
	Paced         float64   `json:"paced"`
	PacingSeconds float64   `json:"pacing_seconds"`
	Held          float64   `json:"held"`
	BatchSize     Histogram `json:"batch_size"`
	Duration      Histogram `json:"duration_seconds"`
	FetchStates   Histogram `json:"fetch_states_seconds"`
}

// Convergence is the change of the BBS converger's counters over a phase:
// its passes by trigger (a cell_lost pass follows a cell presence that
// went) and its actions by kind (re-auctions, removals, retirements).
type Convergence struct {
	Passes    map[string]float64 `json:"passes,omitempty"`
	Actions   map[string]float64 `json:"actions,omitempty"`
	Conflicts float64            `json:"conflicts"`
}

// String is the passes and actions, each sorted by name.
func (c Convergence) String() string {
	return fmt.Sprintf("passes: %s; actions: %s; %.0f conflicts", countList(c.Passes), countList(c.Actions), c.Conflicts)
}

// countList is "name N, name N" sorted by name, or "none".
func countList(m map[string]float64) string {
	return sortedList(m, func(name string, n float64) string { return fmt.Sprintf("%s %.0f", name, n) })
}

// sortedList joins format(name, value) for every entry of m, sorted by
// name, with ", "; "none" when m is empty.
func sortedList[V any](m map[string]V, format func(name string, v V) string) string {
	if len(m) == 0 {
		return "none"
	}
	names := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = format(n, m[n])
	}
	return strings.Join(parts, ", ")
}

// EventStream describes the benchmark's event subscription.
type EventStream struct {
	Events       int64 `json:"events"`
	Resubscribes int   `json:"resubscribes"`
}

// Recovery is the kill-cells phase.
type Recovery struct {
	// KilledCells were SIGKILLed in KilledProcesses processes.
	KilledCells     int `json:"killed_cells"`
	KilledProcesses int `json:"killed_processes"`
	// Displaced is the instances that ran on them.
	Displaced int `json:"displaced"`
	// AllRunning says every displaced instance ran again elsewhere in time.
	AllRunning bool `json:"all_running"`
	// Seconds is from the kill to the last displaced instance RUNNING on a
	// live cell; TargetSeconds is the presence TTL + 5 s (issue 16's bound).
	Seconds       float64 `json:"seconds"`
	TargetSeconds float64 `json:"target_seconds"`
	// KillAtSec is the kill, in seconds since the first DesireLRP (timeline time).
	KillAtSec float64 `json:"kill_at_sec"`
	// FirstPresenceGoneSec and LastPresenceGoneSec are when the first and the
	// last killed cell had left the BBS's cell list, in seconds after the
	// kill (polled every 100 ms; 0 when not seen): the presence TTL's share
	// of Seconds. AfterLastPresenceSec is Seconds after the last: how long the
	// system took to replace what the last lost cell held.
	FirstPresenceGoneSec float64 `json:"first_presence_gone_sec"`
	LastPresenceGoneSec  float64 `json:"last_presence_gone_sec"`
	AfterLastPresenceSec float64 `json:"after_last_presence_sec"`
	// Etcd, BBS and Auctioneer are over the phase.
	Etcd        EtcdUse     `json:"etcd"`
	BBS         ProcUse     `json:"bbs"`
	Auctioneer  ProcUse     `json:"auctioneer"`
	EtcdProcess *ProcUse    `json:"etcd_process,omitempty"`
	Auctions    Auctions    `json:"auctions"`
	Convergence Convergence `json:"convergence"`
	// CellCallErrors is the surviving cells' failed BBS calls, by call.
	CellCallErrors map[string]float64 `json:"cell_bbs_call_errors,omitempty"`
}

// Check is the final consistency check, on one consistent list of every
// actual LRP.
type Check struct {
	// Revision is the list's etcd revision.
	Revision int64 `json:"revision"`
	// Indices is the number of (process guid, index) pairs desired.
	Indices int `json:"indices"`
	// OrdinaryRunning counts indices with exactly one ORDINARY row, RUNNING.
	OrdinaryRunning int `json:"ordinary_running"`
	// MissingOrdinary counts indices with no ORDINARY row.
	MissingOrdinary int `json:"missing_ordinary"`
	// NotRunning counts indices whose ORDINARY row is not RUNNING.
	NotRunning int `json:"ordinary_not_running"`
	// DuplicateOrdinary counts indices with more than one ORDINARY row
	// (impossible by the key layout; checked anyway).
	DuplicateOrdinary int `json:"duplicate_ordinary"`
	// Suspect and Evacuating count the rows left with those presences.
	Suspect    int `json:"suspect_rows"`
	Evacuating int `json:"evacuating_rows"`
	// OnDeadCells counts ORDINARY RUNNING rows still on killed cells.
	OnDeadCells int `json:"ordinary_on_killed_cells"`
	// NotRunningStates counts the states of the ORDINARY rows not RUNNING;
	// Samples describes a few of them.
	NotRunningStates map[string]int `json:"ordinary_not_running_states,omitempty"`
	Samples          []string       `json:"samples,omitempty"`
	// OK says every index has exactly one ORDINARY row, RUNNING on a live cell.
	OK bool `json:"ok"`
	// AfterSec is, for the settled check, the time since the first check.
	AfterSec float64 `json:"after_sec,omitempty"`
}

// Target is one goal of issue 8 and how the run did.
type Target struct {
	Name  string  `json:"name"`
	Goal  string  `json:"goal"`
	Value float64 `json:"value"`
	Met   bool    `json:"met"`
}

// Point is one timeline sample.
type Point struct {
	Sec     float64 `json:"t"`
	Running int     `json:"running"`
	// Desired is the instances whose DesireLRP call had returned.
	Desired int `json:"desired"`
}

// AllRunning says every instance reached RUNNING (and ran again after the
// kill) and every index ended with one ORDINARY RUNNING row, at once or
// once settled.
func (r *Result) AllRunning() bool {
	checked := r.Check.OK || (r.SettledCheck != nil && r.SettledCheck.OK)
	return r.Placement.AllRunning && (r.Recovery == nil || r.Recovery.AllRunning) && checked
}

// WriteJSON writes the result as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// Summary is the result without its timeline: what RESULTS.md quotes.
func (r *Result) Summary() *Result {
	s := *r
	s.Timeline = nil
	return &s
}

// WriteSummary prints a short human summary.
func (r *Result) WriteSummary(w io.Writer) error {
	p := r.Placement
	s := r.Setup
	lines := []string{
		fmt.Sprintf("gavel bench: %d instances (%d LRPs × %d) on %d cells in %d rep processes; load %.2f → %.2f, %d CPUs",
			s.Instances, s.LRPs, s.InstancesPerLRP, s.Cells, s.CellProcesses, s.LoadBefore[0], s.LoadAfter[0], s.NumCPU) + claimOrder(s.ClaimDelaySec),
		fmt.Sprintf("raw etcd:    %.0f txn/s (%d clients, p50 %.1f ms, p99 %.1f ms); etcd server %.0f µs CPU per txn",
			r.RawEtcd.TxnsPerSecond, r.RawEtcd.Clients, r.RawEtcd.LatencyP50Ms, r.RawEtcd.LatencyP99Ms, r.RawEtcd.Server.MicrosPerWrite),
		fmt.Sprintf("batched etcd: %.0f guarded keys/s in nested batches (%d clients × %d keys, p50 %.1f ms, p99 %.1f ms); etcd server %.1f µs CPU per key",
			r.BatchedEtcd.KeysPerSecond, r.BatchedEtcd.Clients, r.BatchedEtcd.KeysPerTxn, r.BatchedEtcd.LatencyP50Ms, r.BatchedEtcd.LatencyP99Ms, r.BatchedEtcd.Server.MicrosPerWrite),
		fmt.Sprintf("placement:   %d/%d running in %.1f s: %.0f/s = %.2f × raw etcd, %.2f × batched ceiling (%.0f/s at %.2f writes/instance); desire took %.1f s",
			p.Placed, p.Instances, p.Seconds, p.PerSecond, p.RatioToRawEtcd, p.RatioToBatchedEtcd, p.BatchedCeiling, p.Etcd.WritesPerInstance, p.DesireSeconds),
		fmt.Sprintf("latency:     desire→RUNNING p50 %.0f ms, p99 %.0f ms, max %.0f ms",
			p.LatencyP50Ms, p.LatencyP99Ms, p.LatencyMaxMs),
		fmt.Sprintf("tenths:      %s (last/first %.2f); first RUNNING after %.1f s", tenthRates(p.Tenths), p.LastToFirstTenth, p.FirstRunningSec),
		fmt.Sprintf("time slices: %s (ten equal slices of the time from the first RUNNING to the last)", tenthRates(p.TimeTenths)),
		fmt.Sprintf("etcd:        %.2f writes/instance (puts %.0f + deletes %.0f), %.2f proposals/instance, BBS %.0f txns carrying %.0f requests, %.0f cache relists",
			p.Etcd.WritesPerInstance, p.Etcd.Puts, p.Etcd.Deletes, p.Etcd.ProposalsPerInstance, p.Etcd.BBSTxns, p.Etcd.BBSTxnRequests, p.Etcd.CacheRelists),
		processLine(p),
		cpuLine(p),
		inEtcdKeysLine(p),
		memoryLine(s, p),
		fmt.Sprintf("auctions:    %.0f batches, size mean %.0f (p50 %.0f, p99 %.0f); duration mean %.3f s (p99 %.3f s); state fetch p99 %.3f s",
			p.Auctions.BatchSize.Count, p.Auctions.BatchSize.Mean, p.Auctions.BatchSize.P50, p.Auctions.BatchSize.P99,
			p.Auctions.Duration.Mean, p.Auctions.Duration.P99, p.Auctions.FetchStates.P99),
		fmt.Sprintf("pacing:      %.0f auctions waited for the auctioneer's min_auction_interval, %.1f s in all; %.0f of them held a sparse batch longer (max_auction_interval)",
			p.Auctions.Paced, p.Auctions.PacingSeconds, p.Auctions.Held),
		fmt.Sprintf("cell states: %.0f fetched, %.0f reused from the auctioneer's kept states", p.Auctions.StatesFetched, p.Auctions.StatesReused),
		fmt.Sprintf("auctioneer:  %.0f LRPs started, %.0f failed; %.0f failed cell states, %.0f perform errors, %.0f write-back errors; event stream %d events, %d resubscribes",
			p.Auctions.Started, p.Auctions.Failed, p.Auctions.FailedCellStates, p.Auctions.PerformErrors, p.Auctions.WriteBackErrors,
			p.EventStream.Events, p.EventStream.Resubscribes),
		"convergence: " + p.Convergence.String(),
		"cell errors: failed BBS calls of the cells: " + countList(p.CellCallErrors),
		fmt.Sprintf("run info:    %.0f GetDesiredLRP fetches by the cells; %.0f instances run from the cache, %.0f missed it",
			p.RunInfo.Fetches, p.RunInfo.Hits, p.RunInfo.Misses),
		"cell batches: " + batchList(p.CellBatches),
		"bbs calls:   time in the BBS, p50/p99: " + callList(p.BBSCalls),
	}
	if rc := r.Recovery; rc != nil {
		lines = append(lines, fmt.Sprintf("recovery:    killed %d cells (%d instances): all running again %v after %.1f s (target %.0f s)",
			rc.KilledCells, rc.Displaced, rc.AllRunning, rc.Seconds, rc.TargetSeconds),
			fmt.Sprintf("recovery presences: the killed cells' presences went %.1f–%.1f s after the kill; the last instance ran %.1f s after the last went",
				rc.FirstPresenceGoneSec, rc.LastPresenceGoneSec, rc.AfterLastPresenceSec),
			"recovery convergence: "+rc.Convergence.String(),
			"recovery cell errors: "+countList(rc.CellCallErrors))
	}
	c := r.Check
	lines = append(lines, fmt.Sprintf("check:       %d/%d indices with one ORDINARY RUNNING row; missing %d, not running %d, duplicates %d, suspects left %d, on killed cells %d",
		c.OrdinaryRunning, c.Indices, c.MissingOrdinary, c.NotRunning, c.DuplicateOrdinary, c.Suspect, c.OnDeadCells))
	if sc := r.SettledCheck; sc != nil {
		lines = append(lines, fmt.Sprintf("settled:     %.0f s later: %d/%d indices with one ORDINARY RUNNING row; not running %d %v, suspects left %d",
			sc.AfterSec, sc.OrdinaryRunning, sc.Indices, sc.NotRunning, sc.NotRunningStates, sc.Suspect))
	}
	if f := r.Failure; f != nil {
		lines = append(lines, fmt.Sprintf("FAILED:      after %.1f s with %d instances placed: %s", f.AfterSeconds, f.Placed, f.Reason))
	}
	for _, t := range r.Targets {
		mark := "MISSED"
		if t.Met {
			mark = "met"
		}
		lines = append(lines, fmt.Sprintf("target:      %-40s %-28s %10.3f  %s", t.Name, t.Goal, t.Value, mark))
	}
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
	}
	return nil
}

// processLine is the summary's line of the daemons' CPU and memory.
func processLine(p Placement) string {
	etcd := ""
	if e := p.EtcdProcess; e != nil {
		etcd = fmt.Sprintf("etcd %.1f CPU-s, %.0f MiB; ", e.CPUSeconds, e.PeakRSSMiB)
	}
	return fmt.Sprintf("processes:   BBS %.1f CPU-s, peak RSS %.0f MiB; %sauctioneer %.1f CPU-s, %.0f MiB; cells %.1f CPU-s, %.0f MiB; the bench itself %.1f CPU-s",
		p.BBS.CPUSeconds, p.BBS.PeakRSSMiB, etcd, p.Auctioneer.CPUSeconds, p.Auctioneer.PeakRSSMiB, p.Cells.CPUSeconds, p.Cells.PeakRSSMiB, p.Bench.CPUSeconds)
}

// memoryLine is the summary's line of the daemons' page faults and kernel
// CPU, with the host's huge page mode: what makes the same code cost more
// CPU per instance on one host than another.
func memoryLine(s Setup, p Placement) string {
	thp := s.TransparentHugePages
	if thp == "" {
		thp = "unknown"
	}
	etcd := ""
	if e := p.EtcdProcess; e != nil {
		etcd = fmt.Sprintf("etcd %.1f, ", e.MinorFaultsPerPlaced)
	}
	return fmt.Sprintf("memory:      minor page faults/placed: BBS %.1f, %sauctioneer %.1f, cells %.1f; kernel share of CPU: BBS %.0f %%, auctioneer %.0f %%, cells %.0f %%; host THP %s",
		p.BBS.MinorFaultsPerPlaced, etcd, p.Auctioneer.MinorFaultsPerPlaced, p.Cells.MinorFaultsPerPlaced,
		100*p.BBS.SystemCPUShare, 100*p.Auctioneer.SystemCPUShare, 100*p.Cells.SystemCPUShare, thp)
}

// inEtcdKeysLine is cpuLine in units of etcd's CPU per batched key.
func inEtcdKeysLine(p Placement) string {
	bbs := "BBS+etcd"
	if p.EtcdProcess != nil {
		bbs = fmt.Sprintf("etcd %.1f, BBS", p.EtcdProcess.CPUPerPlacedInEtcdKeys)
	}
	return fmt.Sprintf("in keys:     %s %.1f, auctioneer %.1f, cells %.1f (CPU/placed ÷ etcd's CPU per batched key in this run; a slower host moves it less)",
		bbs, p.BBS.CPUPerPlacedInEtcdKeys, p.Auctioneer.CPUPerPlacedInEtcdKeys, p.Cells.CPUPerPlacedInEtcdKeys)
}

// cpuLine is the summary's line of CPU per placed instance.
func cpuLine(p Placement) string {
	if e := p.EtcdProcess; e != nil {
		return fmt.Sprintf("CPU/placed:  BBS %.0f µs, etcd %.0f µs (its least: %.0f µs), auctioneer %.0f µs, cells %.0f µs",
			p.BBS.CPUMicrosPerPlaced, e.CPUMicrosPerPlaced, p.EtcdLeastMicros, p.Auctioneer.CPUMicrosPerPlaced, p.Cells.CPUMicrosPerPlaced)
	}
	return fmt.Sprintf("CPU/placed:  BBS+etcd %.0f µs (etcd embedded; etcd's least: %.0f µs), auctioneer %.0f µs, cells %.0f µs",
		p.BBS.CPUMicrosPerPlaced, p.EtcdLeastMicros, p.Auctioneer.CPUMicrosPerPlaced, p.Cells.CPUMicrosPerPlaced)
}

func tenthRates(ts []Tenth) string {
	out := ""
	for i, t := range ts {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("%.0f", t.PerSecond)
	}
	return out + " /s"
}

// CellBatch counts one kind of the cells' batched BBS calls and the requests
// they carried.
type CellBatch struct {
	Calls float64 `json:"calls"`
	Items float64 `json:"items"`
}

// batchList is "BatchClaimActualLRPs 120 calls × 3.2, ..." in call order, or
// "none".
func batchList(m map[string]CellBatch) string {
	return sortedList(m, func(call string, b CellBatch) string {
		return fmt.Sprintf("%s %.0f calls × %.1f", call, b.Calls, b.Items/max(b.Calls, 1))
	})
}

// callList formats per-method call times: the calls made 100 times or
// more, by method name without its service.
func callList(m map[string]Histogram) string {
	shown := map[string]Histogram{}
	for method, h := range m {
		if h.Count >= 100 {
			shown[method[strings.LastIndex(method, "/")+1:]] = h
		}
	}
	return sortedList(shown, func(method string, h Histogram) string {
		return fmt.Sprintf("%s %.0f × %s/%s", method, h.Count, seconds(h.P50), seconds(h.P99))
	})
}

// seconds formats a time given in seconds: "0.8 ms", "120 ms", "2.4 s".
func seconds(s float64) string {
	switch {
	case s < 0.01:
		return fmt.Sprintf("%.1f ms", s*1e3)
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1e3)
	default:
		return fmt.Sprintf("%.1f s", s)
	}
}

// RunInfo counts what the cells' run-info caches did: claims run with a
// cached desired LRP (Hits), claims that needed one fetched (Misses) and the
// GetDesiredLRP calls made for them (Fetches; fewer than Misses when cells
// of one process waited for the same fetch).
type RunInfo struct {
	Hits    float64 `json:"hits"`
	Misses  float64 `json:"misses"`
	Fetches float64 `json:"fetches"`
}

// claimOrder says, for the summary's first line, when the cells claim.
func claimOrder(delaySec float64) string {
	if delaySec <= 0 {
		return "; cells claim before running"
	}
	return fmt.Sprintf("; cells run first and claim after %gs (claim_delay)", delaySec)
}
