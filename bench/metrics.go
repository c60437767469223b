package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// sample is one series of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// metrics is one scrape.
type metrics []sample

// scrape fetches http://addr/metrics.
func scrape(ctx context.Context, addr string) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: HTTP %s", addr, resp.Status)
	}
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	return m, nil
}

// parseMetrics reads the Prometheus text format (version 0.0.4): comments
// are skipped, every other line is `name{labels} value [timestamp]`.
func parseMetrics(r io.Reader) (metrics, error) {
	var out metrics
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i < 0 {
			return nil, fmt.Errorf("malformed line %q", line)
		} else if line[i] == '{' {
			s.name = line[:i]
			end := strings.LastIndexByte(line, '}')
			if end < i {
				return nil, fmt.Errorf("malformed labels in %q", line)
			}
			parseLabels(line[i+1:end], s.labels)
			rest = line[end+1:]
		} else {
			s.name = line[:i]
			rest = line[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("value in %q: %w", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return out, nil
}

// parseLabels parses `a="x",b="y"` (values may hold escaped quotes).
func parseLabels(s string, into map[string]string) {
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return
		}
		name := strings.TrimSpace(strings.TrimPrefix(s[:eq], ","))
		var b strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i])
				}
				continue
			}
			b.WriteByte(s[i])
		}
		into[name] = b.String()
		if i+1 >= len(s) {
			return
		}
		s = strings.TrimPrefix(s[i+1:], ",")
	}
}

// sum adds every series called name; ok is false when there is none.
func (m metrics) sum(name string) (total float64, ok bool) {
	for _, s := range m {
		if s.name == name {
			total += s.value
			ok = true
		}
	}
	return total, ok
}

// value is sum with a missing metric read as 0.
func (m metrics) value(name string) float64 {
	v, _ := m.sum(name)
	return v
}

// Histogram summarises a Prometheus histogram over an interval.
type Histogram struct {
	// Count is the number of observations.
	Count float64 `json:"count"`
	// Sum is their total.
	Sum float64 `json:"sum"`
	// Mean is Sum/Count.
	Mean float64 `json:"mean"`
	// P50 and P99 are estimated from the buckets by linear interpolation, as
	// Prometheus's histogram_quantile does.
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	// Max is the upper bound of the highest non-empty bucket (+Inf shows as
	// the largest finite bound).
	Max float64 `json:"max_bucket_bound"`
}

type bucket struct{ le, count float64 }

// histogram returns the histogram name as observed between before and
// after (after's counts minus before's), all its series summed.
func histogram(before, after metrics, name string) Histogram {
	return histogramOf(before, after, name, func(map[string]string) bool { return true })
}

// histogramsBy returns the histogram name between before and after for each
// value of label that was observed in between.
func histogramsBy(before, after metrics, name, label string) map[string]Histogram {
	out := map[string]Histogram{}
	for value := range after.deltaByLabel(before, name+"_count", label) {
		out[value] = histogramOf(before, after, name, func(l map[string]string) bool { return l[label] == value })
	}
	return out
}

// histogramOf is histogram over the series whose labels pass keep.
func histogramOf(before, after metrics, name string, keep func(labels map[string]string) bool) Histogram {
	value := func(m metrics, series string) (total float64) {
		for _, s := range m {
			if s.name == series && keep(s.labels) {
				total += s.value
			}
		}
		return total
	}
	buckets := func(m metrics) map[float64]float64 {
		out := map[float64]float64{}
		for _, s := range m {
			if s.name != name+"_bucket" || !keep(s.labels) {
				continue
			}
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if err != nil {
				continue
			}
			out[le] += s.value
		}
		return out
	}
	b0, b1 := buckets(before), buckets(after)
	var bs []bucket
	for le, c := range b1 {
		bs = append(bs, bucket{le, c - b0[le]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	h := Histogram{
		Count: value(after, name+"_count") - value(before, name+"_count"),
		Sum:   value(after, name+"_sum") - value(before, name+"_sum"),
	}
	if h.Count > 0 {
		h.Mean = h.Sum / h.Count
	}
	h.P50 = quantile(0.5, bs)
	h.P99 = quantile(0.99, bs)
	// Buckets are cumulative: the largest observation lies in the first
	// bucket that holds them all.
	if total := len(bs); total > 0 && bs[total-1].count > 0 {
		for i, b := range bs {
			if b.count >= bs[total-1].count {
				h.Max = b.le
				if math.IsInf(b.le, 1) && i > 0 {
					h.Max = bs[i-1].le
				}
				break
			}
		}
	}
	return h
}

// quantile estimates the q-quantile of cumulative buckets sorted by bound.
func quantile(q float64, bs []bucket) float64 {
	if len(bs) == 0 {
		return 0
	}
	total := bs[len(bs)-1].count
	if total <= 0 {
		return 0
	}
	rank := q * total
	prevLE, prevCount := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return prevLE
			}
			if b.count == prevCount {
				return b.le
			}
			return prevLE + (b.le-prevLE)*(rank-prevCount)/(b.count-prevCount)
		}
		prevLE, prevCount = b.le, b.count
	}
	return prevLE
}

// deltaByLabel is, for each value of the labels on the samples named name
// (joined by "/" when there are several), how much they grew from before to
// m; values that did not grow are left out.
func (m metrics) deltaByLabel(before metrics, name string, labels ...string) map[string]float64 {
	sum := func(ms metrics) map[string]float64 {
		out := map[string]float64{}
		for _, s := range ms {
			if s.name == name {
				values := make([]string, len(labels))
				for i, l := range labels {
					values[i] = s.labels[l]
				}
				out[strings.Join(values, "/")] += s.value
			}
		}
		return out
	}
	was, now := sum(before), sum(m)
	out := map[string]float64{}
	for v, n := range now {
		if d := n - was[v]; d > 0 {
			out[v] = d
		}
	}
	return out
}
