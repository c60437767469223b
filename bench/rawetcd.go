package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/internal/etcdclient"
)

// rawKeyPrefix is outside the BBS's key prefix, so the BBS's watch cache
// never sees the keys.
const rawKeyPrefix = "/gavel-bench/raw/"

// RawEtcd is the raw etcd transaction rate of the run.
type RawEtcd struct {
	// Clients is the number of goroutines, each with one transaction in
	// flight on a shared client connection (as the BBS's committer has).
	Clients int `json:"clients"`
	// ValueBytes is the size of each value written.
	ValueBytes int `json:"value_bytes"`
	// Seconds is how long the measurement ran.
	Seconds float64 `json:"seconds"`
	// Txns is the number of successful compare-and-put transactions.
	Txns int64 `json:"txns"`
	// TxnsPerSecond is Txns / Seconds: the ceiling the ratios refer to.
	TxnsPerSecond float64 `json:"txns_per_second"`
	// LatencyP50Ms and LatencyP99Ms are per-transaction latencies.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
}

// measureRawEtcd runs single-key compare-and-put transactions
// (If(ModRevision(key) == rev).Then(Put(key, value))), each goroutine on its
// own key, for d; then deletes the keys.
func measureRawEtcd(ctx context.Context, endpoints []string, clients, valueBytes int, d time.Duration) (RawEtcd, error) {
	res := RawEtcd{Clients: clients, ValueBytes: valueBytes}
	cli, err := etcdclient.Dial(ctx, etcdclient.Config{Endpoints: endpoints})
	if err != nil {
		return res, fmt.Errorf("raw etcd: %w", err)
	}
	defer cli.Close()
	value := string(make([]byte, valueBytes))
	// Create the keys first, so that the timed loop is only transactions.
	revs := make([]int64, clients)
	for i := range revs {
		resp, err := cli.Put(ctx, rawKeyPrefix+strconv.Itoa(i), value)
		if err != nil {
			return res, fmt.Errorf("raw etcd: create key %d: %w", i, err)
		}
		revs[i] = resp.Header.Revision
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  error
	)
	start := time.Now()
	end := start.Add(d)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := rawKeyPrefix + strconv.Itoa(i)
			rev := revs[i]
			var local []time.Duration
			var err error
			// Requests run under ctx, not a deadline: a request cut off by
			// a deadline fails on the server and would look like an error.
			for time.Now().Before(end) && ctx.Err() == nil {
				t := time.Now()
				var resp *clientv3.TxnResponse
				resp, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
					Then(clientv3.OpPut(key, value)).Commit()
				if err != nil {
					break
				}
				if !resp.Succeeded {
					err = fmt.Errorf("compare failed on %s: another writer?", key)
					break
				}
				local = append(local, time.Since(t))
				rev = resp.Header.Revision
			}
			mu.Lock()
			latencies = append(latencies, local...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return res, fmt.Errorf("raw etcd: %w", firstErr)
	}
	if _, err := cli.Delete(ctx, rawKeyPrefix, clientv3.WithPrefix()); err != nil {
		return res, fmt.Errorf("raw etcd: clean up: %w", err)
	}
	res.Seconds = elapsed.Seconds()
	res.Txns = int64(len(latencies))
	res.TxnsPerSecond = float64(res.Txns) / res.Seconds
	slices.Sort(latencies)
	res.LatencyP50Ms = ms(percentile(latencies, 0.50))
	res.LatencyP99Ms = ms(percentile(latencies, 0.99))
	return res, nil
}

// percentile returns the q-quantile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
