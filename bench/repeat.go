package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// Spread is the median and range of one figure over repeated runs.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func spreadOf(vals []float64) Spread {
	if len(vals) == 0 {
		return Spread{}
	}
	v := slices.Clone(vals)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Spread{Median: med, Min: v[0], Max: v[len(v)-1]}
}

// Repeat summarises runs of the same bench (gavel bench --repeat N).
type Repeat struct {
	// Runs is how many runs were made; Failed how many of them failed.
	Runs   int `json:"runs"`
	Failed int `json:"failed"`
	// The spreads are over the runs that did not fail.
	RawEtcdTxnsPerSecond Spread `json:"raw_etcd_txns_per_second"`
	PlacementsPerSecond  Spread `json:"placements_per_second"`
	RatioToRawEtcd       Spread `json:"ratio_to_raw_etcd"`
	BBSCPUMicros         Spread `json:"bbs_cpu_us_per_placed"`
	// EtcdCPUMicros is over the runs with etcd as its own process.
	EtcdCPUMicros Spread `json:"etcd_cpu_us_per_placed"`
	// EtcdLeastMicros is etcd's least CPU per placed instance
	// (Placement.EtcdLeastMicros).
	EtcdLeastMicros     Spread `json:"etcd_least_us_per_placed"`
	AuctioneerCPUMicros Spread `json:"auctioneer_cpu_us_per_placed"`
	CellsCPUMicros      Spread `json:"cells_cpu_us_per_placed"`
	BBSPeakRSSMiB       Spread `json:"bbs_peak_rss_mib"`
	// The CPU per placed instance in etcd keys (ProcUse.CPUPerPlacedInEtcdKeys).
	BBSInEtcdKeys        Spread `json:"bbs_cpu_per_placed_in_etcd_keys"`
	AuctioneerInEtcdKeys Spread `json:"auctioneer_cpu_per_placed_in_etcd_keys"`
	CellsInEtcdKeys      Spread `json:"cells_cpu_per_placed_in_etcd_keys"`
	// Results are the runs themselves, in order.
	Results []*Result `json:"results"`
}

// Summarize computes the median and spread of rs's main figures.
func Summarize(rs []*Result) Repeat {
	r := Repeat{Runs: len(rs), Results: rs}
	var raw, pps, ratio, bbs, etcd, least, auc, cells, rss, bbsKeys, aucKeys, cellsKeys []float64
	for _, x := range rs {
		if x == nil || x.Failure != nil {
			r.Failed++
			continue
		}
		p := x.Placement
		raw = append(raw, x.RawEtcd.TxnsPerSecond)
		pps = append(pps, p.PerSecond)
		ratio = append(ratio, p.RatioToRawEtcd)
		bbs = append(bbs, p.BBS.CPUMicrosPerPlaced)
		if p.EtcdProcess != nil {
			etcd = append(etcd, p.EtcdProcess.CPUMicrosPerPlaced)
		}
		least = append(least, p.EtcdLeastMicros)
		auc = append(auc, p.Auctioneer.CPUMicrosPerPlaced)
		cells = append(cells, p.Cells.CPUMicrosPerPlaced)
		rss = append(rss, p.BBS.PeakRSSMiB)
		if p.BBS.CPUPerPlacedInEtcdKeys > 0 {
			bbsKeys = append(bbsKeys, p.BBS.CPUPerPlacedInEtcdKeys)
			aucKeys = append(aucKeys, p.Auctioneer.CPUPerPlacedInEtcdKeys)
			cellsKeys = append(cellsKeys, p.Cells.CPUPerPlacedInEtcdKeys)
		}
	}
	r.RawEtcdTxnsPerSecond, r.PlacementsPerSecond, r.RatioToRawEtcd = spreadOf(raw), spreadOf(pps), spreadOf(ratio)
	r.EtcdCPUMicros, r.EtcdLeastMicros = spreadOf(etcd), spreadOf(least)
	r.BBSCPUMicros, r.AuctioneerCPUMicros, r.CellsCPUMicros, r.BBSPeakRSSMiB = spreadOf(bbs), spreadOf(auc), spreadOf(cells), spreadOf(rss)
	r.BBSInEtcdKeys, r.AuctioneerInEtcdKeys, r.CellsInEtcdKeys = spreadOf(bbsKeys), spreadOf(aucKeys), spreadOf(cellsKeys)
	return r
}

// WriteSummary writes the repeat's figures as a few lines.
func (r Repeat) WriteSummary(w io.Writer) error {
	f := func(name string, s Spread, unit string) string {
		return fmt.Sprintf("%-22s median %.3g %s (min %.3g, max %.3g)", name, s.Median, unit, s.Min, s.Max)
	}
	lines := []string{
		fmt.Sprintf("repeat:                %d runs, %d failed", r.Runs, r.Failed),
		f("raw etcd:", r.RawEtcdTxnsPerSecond, "txn/s"),
		f("placements:", r.PlacementsPerSecond, "/s"),
		f("ratio to raw etcd:", r.RatioToRawEtcd, ""),
		f("BBS CPU/placed:", r.BBSCPUMicros, "µs (with etcd's when embedded)"),
		f("etcd CPU/placed:", r.EtcdCPUMicros, "µs (etcd as its own process)"),
		f("etcd's least/placed:", r.EtcdLeastMicros, "µs (batched server CPU per key × writes per instance)"),
		f("auctioneer CPU/placed:", r.AuctioneerCPUMicros, "µs"),
		f("cells CPU/placed:", r.CellsCPUMicros, "µs"),
		f("BBS in etcd keys:", r.BBSInEtcdKeys, "(CPU/placed ÷ etcd's CPU per batched key, per run)"),
		f("auctioneer in keys:", r.AuctioneerInEtcdKeys, ""),
		f("cells in etcd keys:", r.CellsInEtcdKeys, ""),
		f("BBS peak RSS:", r.BBSPeakRSSMiB, "MiB"),
	}
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return fmt.Errorf("write repeat summary: %w", err)
		}
	}
	return nil
}

// WriteJSON writes the repeat, runs included, as indented JSON.
func (r Repeat) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write repeat: %w", err)
	}
	return nil
}
