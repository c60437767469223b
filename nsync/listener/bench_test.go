package listener_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gavelhq/gavel/nsync/listener"
	"github.com/gavelhq/gavel/nsync/nsynctest"
)

// BenchmarkDesire times PUT /v1/apps/:guid of new apps (GetDesiredLRP then
// DesireLRP on a real BBS), 8 clients in parallel; desires/s is reported.
func BenchmarkDesire(b *testing.B) {
	bbs := nsynctest.StartBBS(b, nil)
	srv := httptest.NewServer(listener.New(bbs.Client, recipeConfig(), 0, listener.NewMetrics(prometheus.NewRegistry()), lager.NewLogger("test")))
	defer srv.Close()
	var n atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			guid := fmt.Sprintf("app-%d", n.Add(1))
			body, _ := json.Marshal(app(guid, 1, "e"))
			req, _ := http.NewRequest("PUT", srv.URL+"/v1/apps/"+guid, bytes.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "desires/s")
}
