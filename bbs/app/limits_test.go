package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdserver"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// A BBS on an etcd with --max-txn-ops 128 and a small --max-request-bytes
// scales across transactions, and answers a write that can never fit with
// InvalidArgument naming the limit (not Unavailable, which clients retry).
func TestWritesWithinEtcdLimitsOverTheWire(t *testing.T) {
	const maxBytes = 64 << 10
	srv := etcdtest.StartWith(t, etcdtest.Options{MaxTxnOps: 128, MaxRequestBytes: maxBytes})
	cfg := testConfig(t, etcdtest.Prefix(t), "bbs-1")
	cfg.Etcd = etcdclient.Config{Endpoints: srv.Endpoints()}
	cfg.EtcdMaxTxnOps = 128
	cfg.EtcdMaxRequestBytes = maxBytes
	cfg.MaxDesiredInstances = 30000
	require.NoError(t, cfg.Validate())
	b := startBBS(t, cfg)
	waitActive(t, b)
	c := dial(t, b.Addr())
	ctx := context.Background()

	_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg", 300)})
	require.NoError(t, err)
	_, err = c.UpdateDesiredLRP(ctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: "pg", Update: &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(20000)}})
	require.NoError(t, err)
	resp, err := c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{"pg"}})
	require.NoError(t, err)
	require.Len(t, resp.GetActualLrps(), 20000)
	_, err = c.RemoveDesiredLRP(ctx, &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: "pg"})
	require.NoError(t, err)
	resp, err = c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{"pg"}})
	require.NoError(t, err)
	require.Empty(t, resp.GetActualLrps())

	big := lrp("pg-big", 1)
	big.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "BIG", Value: strings.Repeat("x", maxBytes)}}
	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: big})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.ErrorIs(t, err, models.ErrTooLarge)
	require.Contains(t, err.Error(), "max-request-bytes")

	_, err = c.UpdateDesiredLRP(ctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: "pg-x", Update: &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(30001)}})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, err.Error(), "update.instances: must be at most 30000")
	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg-many", 30001)})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, err.Error(), "desired_lrp.instances: must be at most 30000")
}

// A BBS configured with larger limits than its etcd really has still maps
// etcd's refusal to InvalidArgument.
func TestEtcdRefusalOverTheWireIsNotUnavailable(t *testing.T) {
	const maxBytes = 32 << 10
	srv := etcdtest.StartWith(t, etcdtest.Options{MaxTxnOps: 128, MaxRequestBytes: maxBytes})
	cfg := testConfig(t, etcdtest.Prefix(t), "bbs-1")
	cfg.Etcd = etcdclient.Config{Endpoints: srv.Endpoints()} // etcd_max_request_bytes left at its 1.5 MiB default
	b := startBBS(t, cfg)
	waitActive(t, b)
	c := dial(t, b.Addr())
	big := lrp("pg-big", 1)
	big.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "BIG", Value: strings.Repeat("x", maxBytes)}}
	_, err := c.DesireLRP(context.Background(), &bbsv1.DesireLRPRequest{DesiredLrp: big})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.ErrorIs(t, err, models.ErrTooLarge)
	require.Contains(t, err.Error(), "request is too large")
}

// With the embedded etcd the BBS splits writes by the embedded etcd's own
// limits (here --max-txn-ops 128, set only in embedded_etcd).
func TestEmbeddedEtcdLimitsAreUsed(t *testing.T) {
	cfg := testConfig(t, etcdtest.Prefix(t), "bbs-1")
	cfg.Etcd = etcdclient.Config{}
	cfg.EmbeddedEtcd = etcdserver.Config{
		DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:0", PeerURL: "http://127.0.0.1:0",
		MaxTxnOps: 128, UnsafeNoFsync: true, LogLevel: "error", QuotaBackendBytes: 256 << 20,
	}
	cfg.MaxDesiredInstances = 20000
	require.NoError(t, cfg.Validate())
	b := startBBS(t, cfg)
	waitActive(t, b)
	c := dial(t, b.Addr())
	ctx := context.Background()
	_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg", 1)})
	require.NoError(t, err)
	start := time.Now()
	_, err = c.UpdateDesiredLRP(ctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: "pg", Update: &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(20000)}})
	require.NoError(t, err)
	t.Logf("embedded etcd, max-txn-ops 128: scale 1->20000 over gRPC took %s", time.Since(start))
	resp, err := c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{"pg"}})
	require.NoError(t, err)
	require.Len(t, resp.GetActualLrps(), 20000)
	_, err = c.UpdateDesiredLRP(ctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: "pg", Update: &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(0)}})
	require.NoError(t, err)
	resp, err = c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{"pg"}})
	require.NoError(t, err)
	require.Empty(t, resp.GetActualLrps())
}
