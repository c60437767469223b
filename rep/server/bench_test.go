package server_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
	"github.com/gavelhq/gavel/rep/server"
)

// serve runs a cell's RepService over a sim-backend executor on a loopback port.
func serve(tb testing.TB, total executor.Resources) (*executor.Executor, repv1.RepServiceClient) {
	tb.Helper()
	e, err := executor.New(context.Background(), executor.Options{Backend: sim.New(sim.Options{}), TotalResources: total})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	srv := grpc.NewServer()
	repv1.RegisterRepServiceServer(srv, server.New(server.Options{
		CellID: "cell-1", Executor: e,
		RootFSProviders: []*modelsv1.RootFSProvider{{Name: "preloaded", Properties: []string{"cflinuxfs4"}}, {Name: "docker"}},
	}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return e, repv1.NewRepServiceClient(conn)
}

func lrps(n int) []*repv1.LRP {
	out := make([]*repv1.LRP, n)
	for i := range out {
		out[i] = &repv1.LRP{
			Key:                 &modelsv1.ActualLRPKey{ProcessGuid: fmt.Sprintf("app-%d", i%10), Index: int32(i / 10), Domain: "cf-apps"},
			Resource:            &auctioneerv1.Resource{MemoryMb: int32(128 + i%4*128), DiskMb: 1024},
			PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4", PlacementTags: []string{"blue"}},
		}
	}
	return out
}

// BenchmarkPerform100LRPs is one gRPC Perform of 100 LRPs on a sim-backend
// cell (loopback, no TLS): decoding, largest-first ordering, rootfs checks,
// tags and the atomic reservation of all 100.
func BenchmarkPerform100LRPs(b *testing.B) {
	e, repc := serve(b, executor.Resources{MemoryMB: 1 << 20, DiskMB: 1 << 22, Containers: 1000})
	req := &repv1.PerformRequest{CellId: "cell-1", Lrps: lrps(100)}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := repc.Perform(ctx, req)
		if err != nil || len(resp.GetFailedLrps()) > 0 {
			b.Fatal(err, len(resp.GetFailedLrps()))
		}
		b.StopTimer()
		for _, c := range e.List() {
			if err := e.Delete(ctx, c.Guid); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
}

// BenchmarkState250LRPs is one gRPC State of a cell holding 250 LRPs, with
// full entries and with the summaries the auctioneer asks for.
func BenchmarkState250LRPs(b *testing.B) {
	_, repc := serve(b, executor.Resources{MemoryMB: 1 << 20, DiskMB: 1 << 22, Containers: 1000})
	ctx := context.Background()
	if resp, err := repc.Perform(ctx, &repv1.PerformRequest{CellId: "cell-1", Lrps: lrps(250)}); err != nil || len(resp.GetFailedLrps()) > 0 {
		b.Fatal(err, len(resp.GetFailedLrps()))
	}
	for _, summaries := range []bool{false, true} {
		name := "full"
		if summaries {
			name = "summaries"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				st, err := repc.State(ctx, &repv1.StateRequest{LrpSummaries: summaries})
				if err != nil || len(st.GetLrps())+len(st.GetLrpSummaries()) != 250 {
					b.Fatal(err, len(st.GetLrps()), len(st.GetLrpSummaries()))
				}
			}
		})
	}
}
