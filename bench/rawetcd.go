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
	// Server is the CPU the etcd server spent on the measurement.
	Server EtcdServerCPU `json:"server"`
}

// EtcdServerCPU is the CPU of the process serving etcd (the gavel-etcd
// process, or the BBS when etcd is embedded in it, idle otherwise) over one
// of the ceiling measurements: etcd's own cost of a write, apart from the
// client's, which the BBS+etcd figure of the placement includes.
type EtcdServerCPU struct {
	// CPUSeconds is the process's user + system CPU over the measurement.
	CPUSeconds float64 `json:"cpu_seconds"`
	// MicrosPerWrite is CPUSeconds in microseconds per transaction (raw)
	// or per guarded key (batched).
	MicrosPerWrite float64 `json:"micros_per_write"`
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

// BatchedEtcd is etcd's rate of guarded keys written in nested batches, the
// way the BBS's committer writes: one transaction holds KeysPerTxn nested
// transactions, each If(ModRevision(key) == rev) Then(Put(key, value)).
type BatchedEtcd struct {
	// Clients is the number of goroutines, each with one batch in flight
	// (the BBS's commit workers).
	Clients int `json:"clients"`
	// KeysPerTxn is the nested transactions per transaction.
	KeysPerTxn int `json:"keys_per_txn"`
	// ValueBytes is the size of each value written.
	ValueBytes int `json:"value_bytes"`
	// Seconds is how long the measurement ran.
	Seconds float64 `json:"seconds"`
	// Txns is the number of outer transactions, Keys the guarded puts that
	// succeeded in them.
	Txns int64 `json:"txns"`
	Keys int64 `json:"keys"`
	// KeysPerSecond is Keys / Seconds: the batched ceiling.
	KeysPerSecond float64 `json:"keys_per_second"`
	// LatencyP50Ms and LatencyP99Ms are per-transaction latencies.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	// Server is the CPU the etcd server spent on the measurement; its
	// MicrosPerWrite times the placement's writes per instance is etcd's
	// least cost of placing one instance.
	Server EtcdServerCPU `json:"server"`
}

// measureBatchedEtcd runs nested batches of guarded puts for d: each of
// clients goroutines owns keysPerTxn keys and rewrites all of them in one
// transaction at a time; then deletes the keys. A guard that fails is an
// error (no other writer touches the keys).
func measureBatchedEtcd(ctx context.Context, endpoints []string, clients, keysPerTxn, valueBytes int, d time.Duration) (BatchedEtcd, error) {
	res := BatchedEtcd{Clients: clients, KeysPerTxn: keysPerTxn, ValueBytes: valueBytes}
	cli, err := etcdclient.Dial(ctx, etcdclient.Config{Endpoints: endpoints})
	if err != nil {
		return res, fmt.Errorf("batched etcd: %w", err)
	}
	defer cli.Close()
	value := string(make([]byte, valueBytes))
	key := func(c, k int) string { return rawKeyPrefix + "batched/" + strconv.Itoa(c) + "/" + strconv.Itoa(k) }
	// Create each client's keys in one transaction first.
	revs := make([]int64, clients)
	for c := range clients {
		ops := make([]clientv3.Op, keysPerTxn)
		for k := range ops {
			ops[k] = clientv3.OpPut(key(c, k), value)
		}
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return res, fmt.Errorf("batched etcd: create keys of client %d: %w", c, err)
		}
		revs[c] = resp.Header.Revision
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		latencies []time.Duration
		keys      int64
		firstErr  error
	)
	start := time.Now()
	end := start.Add(d)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rev := revs[c]
			var local []time.Duration
			var n int64
			var err error
			nested := make([]clientv3.Op, keysPerTxn)
			for time.Now().Before(end) && ctx.Err() == nil {
				for k := range nested {
					kk := key(c, k)
					nested[k] = clientv3.OpTxn(
						[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(kk), "=", rev)},
						[]clientv3.Op{clientv3.OpPut(kk, value)}, nil)
				}
				t := time.Now()
				var resp *clientv3.TxnResponse
				resp, err = cli.Txn(ctx).Then(nested...).Commit()
				if err != nil {
					break
				}
				for _, r := range resp.Responses {
					if !r.GetResponseTxn().GetSucceeded() {
						err = fmt.Errorf("a guard failed in client %d's batch: another writer?", c)
						break
					}
				}
				if err != nil {
					break
				}
				local = append(local, time.Since(t))
				n += int64(keysPerTxn)
				rev = resp.Header.Revision
			}
			mu.Lock()
			latencies = append(latencies, local...)
			keys += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return res, fmt.Errorf("batched etcd: %w", firstErr)
	}
	if _, err := cli.Delete(ctx, rawKeyPrefix+"batched/", clientv3.WithPrefix()); err != nil {
		return res, fmt.Errorf("batched etcd: clean up: %w", err)
	}
	res.Seconds = elapsed.Seconds()
	res.Txns = int64(len(latencies))
	res.Keys = keys
	res.KeysPerSecond = float64(keys) / res.Seconds
	slices.Sort(latencies)
	res.LatencyP50Ms = ms(percentile(latencies, 0.50))
	res.LatencyP99Ms = ms(percentile(latencies, 0.99))
	return res, nil
}
