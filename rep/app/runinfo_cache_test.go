package app_test

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/etcdtest"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/backend/sim"
	"github.com/gavelhq/gavel/rep/executor"
	"github.com/gavelhq/gavel/rep/harmonizer"
)

// countingBBS is the real BBS client, counting GetDesiredLRP calls.
type countingBBS struct {
	harmonizer.BBS
	gets atomic.Int64
}

func (c *countingBBS) GetDesiredLRP(ctx context.Context, in *bbsv1.GetDesiredLRPRequest, opts ...grpc.CallOption) (*bbsv1.GetDesiredLRPResponse, error) {
	c.gets.Add(1)
	return c.BBS.GetDesiredLRP(ctx, in, opts...)
}

// simCell is a harmonizer over a simulated executor, with the shared cache.
func simCell(t *testing.T, cellID string, bbs harmonizer.BBS, cache *harmonizer.RunInfoCache) *executor.Executor {
	t.Helper()
	exec, _ := simCellEvac(t, cellID, bbs, cache)
	return exec
}

// simCellEvac is simCell with the cell's evacuation flag.
func simCellEvac(t *testing.T, cellID string, bbs harmonizer.BBS, cache *harmonizer.RunInfoCache) (*executor.Executor, *rep.Evacuation) {
	t.Helper()
	exec, err := executor.New(ctx, executor.Options{
		Backend: sim.New(sim.Options{}), CellID: cellID,
		TotalResources: executor.Resources{MemoryMB: 4096, DiskMB: 4096, Containers: 32},
	})
	require.NoError(t, err)
	t.Cleanup(exec.Close)
	evac := &rep.Evacuation{}
	h := harmonizer.New(harmonizer.Options{CellID: cellID, Executor: exec, BBS: bbs, BulkSyncInterval: time.Hour,
		Logger: lager.NewLogger("harmonizer"), RunInfo: cache, Evacuation: evac, EvacuationPollInterval: time.Hour})
	proc := ifrit.Background(h)
	t.Cleanup(func() { proc.Signal(os.Interrupt); <-proc.Wait() })
	<-proc.Ready()
	return exec, evac
}

// reserveIndex reserves a container for one index, as Perform does.
func reserveIndex(t *testing.T, exec *executor.Executor, d *modelsv1.DesiredLRP, index int32, instanceGuid string) {
	t.Helper()
	lrp := &repv1.LRP{
		Key:                 &modelsv1.ActualLRPKey{ProcessGuid: d.GetProcessGuid(), Index: index, Domain: d.GetDomain()},
		Resource:            &auctioneerv1.Resource{MemoryMb: d.GetMemoryMb(), DiskMb: d.GetDiskMb()},
		PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: d.GetRootFs()},
	}
	require.Empty(t, exec.Allocate([]executor.AllocationRequest{{Guid: instanceGuid, LRP: true,
		Resource: executor.Resource{MemoryMB: 64, DiskMB: 64}, Tags: rep.LRPTags(lrp, instanceGuid)}}))
}

func requireRunning(t *testing.T, bbs harmonizer.BBS, guid string, index int32, instanceGuid string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := bbs.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{guid}})
		if err != nil {
			return false
		}
		for _, a := range resp.GetActualLrps() {
			if a.GetKey().GetIndex() == index && a.GetState() == models.Running && a.GetInstanceKey().GetInstanceGuid() == instanceGuid {
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "%s/%d (%s) never RUNNING", guid, index, instanceGuid)
}

// The cells of a rep process fetch a desired LRP's run info once, on a real
// BBS over gRPC with real etcd: every later claim names the version held and
// runs without a GetDesiredLRP. Rewriting the run info (new image
// credentials) and desiring the LRP again (a new epoch) each cost exactly
// one fetch more.
func TestRunInfoFetchedOncePerVersion(t *testing.T) {
	_, c := startBBS(t, etcdtest.Prefix(t))
	bbs := &countingBBS{BBS: c}
	cache := harmonizer.NewRunInfoCache(0)
	cell1 := simCell(t, "cell-1", bbs, cache)
	cell2 := simCell(t, "cell-2", bbs, cache)

	d := desiredLRP("pg-cache", runA("/bin/app"), nil)
	d.Instances = 12
	_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
	require.NoError(t, err)

	for i := range int32(6) {
		reserveIndex(t, cell1, d, i, "ig-a"+string(rune('0'+i)))
	}
	for i := range int32(6) {
		requireRunning(t, bbs, "pg-cache", i, "ig-a"+string(rune('0'+i)))
	}
	require.EqualValues(t, 1, bbs.gets.Load(), "one fetch for six claims of one cell")
	for i := int32(6); i < 10; i++ {
		reserveIndex(t, cell2, d, i, "ig-b"+string(rune('0'+i)))
		requireRunning(t, bbs, "pg-cache", i, "ig-b"+string(rune('0'+i)))
	}
	require.EqualValues(t, 1, bbs.gets.Load(), "another cell of the process reuses the run info")

	// New image credentials rewrite the run record: the next claim names a
	// new version and fetches it.
	user, pass := "u", "p"
	_, err = c.UpdateDesiredLRP(ctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: "pg-cache", Update: &modelsv1.DesiredLRPUpdate{ImageUsername: &user, ImagePassword: &pass}})
	require.NoError(t, err)
	reserveIndex(t, cell2, d, 10, "ig-c10")
	requireRunning(t, bbs, "pg-cache", 10, "ig-c10")
	require.EqualValues(t, 2, bbs.gets.Load(), "the rewritten run info is fetched again")
	reserveIndex(t, cell1, d, 11, "ig-c11")
	requireRunning(t, bbs, "pg-cache", 11, "ig-c11")
	require.EqualValues(t, 2, bbs.gets.Load())

	// Desired again under the same guid: a new epoch.
	_, err = c.RemoveDesiredLRP(ctx, &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: "pg-cache"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := c.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: "pg-cache"})
		if err == nil {
			return false
		}
		// The BBS stops the old RUNNING instances in the background (these
		// cells have no presence, so it removes their rows): a new desire
		// made before that ends would find index 0 still held by ig-a0.
		resp, err := c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{"pg-cache"}})
		return err == nil && len(resp.GetActualLrps()) == 0
	}, 10*time.Second, 20*time.Millisecond, "the removed LRP's instances were never all gone")
	d.Instances = 1
	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
	require.NoError(t, err)
	reserveIndex(t, cell1, d, 0, "ig-new")
	requireRunning(t, bbs, "pg-cache", 0, "ig-new")
	require.EqualValues(t, 3, bbs.gets.Load(), "a new epoch is fetched again")
	require.Equal(t, 1, cache.Len())
}
