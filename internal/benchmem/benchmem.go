// Package benchmem measures, in a benchmark, the heap its operations leave
// live: what every later GC cycle marks again.
package benchmem

import (
	"runtime"
	"testing"
)

// LiveBytesPerOp runs op(0), op(1), … under b.Loop with allocations
// reported, and reports as metric the heap still live after the loop per
// op (a full GC on each side). The objects op keeps must stay reachable
// until it returns.
func LiveBytesPerOp(b *testing.B, metric string, op func(i int)) {
	b.Helper()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		n++
		op(i)
	}
	b.StopTimer()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), metric)
}
