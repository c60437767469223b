package server_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/executor"
)

// Measured usage over the process backend is covered end to end by
// integration/ccbridge_test.go (tps stats); here, the selection, the bounds
// and the "zero with a reason" answer for containers that cannot be measured.
func TestContainerMetrics(t *testing.T) {
	ctx := context.Background()
	_, repc := serve(t, executor.Resources{MemoryMB: 1000, DiskMB: 1000, Containers: 10})
	_, err := repc.Perform(ctx, &repv1.PerformRequest{CellId: "cell-1", Lrps: []*repv1.LRP{lrp("web", 100, ""), lrp("web", 100, ""), lrp("other", 10, "")}})
	require.NoError(t, err)

	resp, err := repc.ContainerMetrics(ctx, &repv1.ContainerMetricsRequest{ProcessGuid: "web"})
	require.NoError(t, err)
	require.Len(t, resp.GetMetrics(), 2)
	for _, m := range resp.GetMetrics() {
		require.Equal(t, "web", m.GetProcessGuid())
		require.Contains(t, m.GetUnavailable(), "not created yet", "a reserved container cannot be measured")
		require.Zero(t, m.GetMemoryBytes())
		require.Equal(t, uint64(100)<<20, m.GetMemoryQuotaBytes())
		require.Equal(t, uint64(10)<<20, m.GetDiskQuotaBytes())
		require.NotZero(t, m.GetTimestamp())
	}

	one := resp.GetMetrics()[1].GetInstanceGuid()
	resp, err = repc.ContainerMetrics(ctx, &repv1.ContainerMetricsRequest{ProcessGuid: "web", InstanceGuids: []string{one}})
	require.NoError(t, err)
	require.Len(t, resp.GetMetrics(), 1)
	require.Equal(t, one, resp.GetMetrics()[0].GetInstanceGuid())

	resp, err = repc.ContainerMetrics(ctx, &repv1.ContainerMetricsRequest{ProcessGuid: "absent"})
	require.NoError(t, err)
	require.Empty(t, resp.GetMetrics())

	_, err = repc.ContainerMetrics(ctx, &repv1.ContainerMetricsRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = repc.ContainerMetrics(ctx, &repv1.ContainerMetricsRequest{ProcessGuid: "web", InstanceGuids: make([]string, 1001)})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "instance_guids: at most 1000")
}
