package tps_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gavelhq/gavel/cc-bridge/internal/bridgetest"
	"github.com/gavelhq/gavel/cc-bridge/tps"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// BenchmarkBulkStatus1000 measures GET /v1/bulk_actual_lrp_status for 1,000
// guids (2 RUNNING instances each) against a real BBS on embedded etcd.
//
//	go test -run '^$' -bench BulkStatus1000 -benchtime 200x ./cc-bridge/tps/
func BenchmarkBulkStatus1000(b *testing.B) {
	bbs := bridgetest.StartBBS(b)
	const n = 1000
	guids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range guids {
		guids[i] = fmt.Sprintf("app-%04d", i)
		wg.Add(1)
		sem <- struct{}{}
		go func(g string) {
			defer wg.Done()
			defer func() { <-sem }()
			ctx := b.Context()
			if _, err := bbs.Client.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: &modelsv1.DesiredLRP{
				ProcessGuid: g, Domain: tps.DefaultDomain, RootFs: "preloaded:cflinuxfs4", Instances: 2, MemoryMb: 1, DiskMb: 1,
				Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/true"}}},
			}}); err != nil {
				b.Error(err)
				return
			}
			for i := int32(0); i < 2; i++ {
				inst := fmt.Sprintf("%s-%d", g, i)
				if _, err := bbs.Client.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: g, Index: i, InstanceKey: ik(inst, "cell-1")}); err != nil {
					b.Error(err)
					return
				}
				if _, err := bbs.Client.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: key(g, i), InstanceKey: ik(inst, "cell-1"),
					NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61000}}}}); err != nil {
					b.Error(err)
					return
				}
			}
		}(guids[i])
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	srv := httptest.NewServer(tps.NewListener(tps.ListenerOptions{BBS: bbs.Client}).Handler())
	defer srv.Close()
	url := srv.URL + "/v1/bulk_actual_lrp_status?guids=" + strings.Join(guids, ",")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"app-0999":[{`) {
			b.Fatalf("%s: %.200s", resp.Status, body)
		}
	}
}
