package app

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// A client balancing over replicas writes through the active one and reads
// wherever its balancer sends it: every read must see every write the
// client was already told succeeded, on the passive replica too.
func TestPassiveReplicaReadsWritesAcknowledgedByTheActive(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	active := startBBS(t, testConfig(t, prefix, "bbs-1"))
	waitActive(t, active)
	passive := startBBS(t, testConfig(t, prefix, "bbs-2"))
	require.False(t, passive.Held())

	ctx := context.Background()
	writer := dial(t, active.Addr())
	reader, err := client.New(client.Config{Addresses: []string{passive.Addr()}, Retries: 1})
	require.NoError(t, err)
	defer reader.Close()

	for i := 0; i < 60; i++ {
		guid := fmt.Sprintf("ryw-%d", i)
		_, err := writer.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp(guid, 1)})
		require.NoError(t, err)
		got, err := reader.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: guid})
		require.NoError(t, err, "round %d: the passive replica answered without an acknowledged desire", i)
		require.Equal(t, guid, got.GetDesiredLrp().GetProcessGuid())

		_, err = writer.RemoveDesiredLRP(ctx, &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: guid})
		require.NoError(t, err)
		_, err = reader.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: guid})
		require.Equal(t, codes.NotFound, status.Code(err), "round %d: the passive replica still served an acknowledged removal's LRP", i)
	}
}
