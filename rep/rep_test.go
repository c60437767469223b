package rep_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/executor"
)

// The tags of an LRP container carry what State reports of it; empty lists
// are left out and read back as empty.
func TestLRPTagsRoundTripThroughState(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pc       *auctioneerv1.PlacementConstraint
		version  bool
		wantTags int
	}{
		{name: "no lists, no version", pc: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"}, wantTags: 6},
		{name: "no lists, a version", pc: &auctioneerv1.PlacementConstraint{RootFs: "preloaded:cflinuxfs4"}, version: true, wantTags: 8},
		{name: "lists and a version", pc: &auctioneerv1.PlacementConstraint{RootFs: "docker", PlacementTags: []string{"gpu", "ssd"}, VolumeDrivers: []string{"nfs"}}, version: true, wantTags: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lrp := &repv1.LRP{
				Key:                 &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 3, Domain: "d"},
				Resource:            &auctioneerv1.Resource{MemoryMb: 64, DiskMb: 32},
				PlacementConstraint: tc.pc,
			}
			if tc.version {
				lrp.DesiredEpoch, lrp.RunInfoRevision = "e1", 7
			}
			tags := rep.LRPTags(lrp, "ig")
			require.Len(t, tags, tc.wantTags)
			c := executor.Container{Guid: "ig", Tags: tags, Resource: executor.Resource{MemoryMB: 64, DiskMB: 32}}
			require.True(t, rep.IsLRP(c))
			got := rep.StateLRP(c)
			require.Equal(t, "pg", got.GetKey().GetProcessGuid())
			require.EqualValues(t, 3, got.GetKey().GetIndex())
			require.Equal(t, "d", got.GetKey().GetDomain())
			require.Equal(t, tc.pc.GetRootFs(), got.GetPlacementConstraint().GetRootFs())
			require.Equal(t, tc.pc.GetPlacementTags(), got.GetPlacementConstraint().GetPlacementTags())
			require.Equal(t, tc.pc.GetVolumeDrivers(), got.GetPlacementConstraint().GetVolumeDrivers())
			epoch, revision, ok := rep.RunInfoVersion(c)
			require.Equal(t, tc.version, ok)
			if tc.version {
				require.Equal(t, "e1", epoch)
				require.EqualValues(t, 7, revision)
			}
		})
	}
}

func TestTaskTagsLeaveOutEmptyLists(t *testing.T) {
	task := &repv1.Task{TaskGuid: "tg", Domain: "d", PlacementConstraint: &auctioneerv1.PlacementConstraint{RootFs: "r"}}
	tags := rep.TaskTags(task)
	require.Equal(t, executor.Tags{rep.TagLifecycle: rep.LifecycleTask, rep.TagDomain: "d", rep.TagRootFS: "r"}, tags)
	task.PlacementConstraint.VolumeDrivers = []string{"nfs"}
	c := executor.Container{Guid: "tg", Tags: rep.TaskTags(task)}
	require.True(t, rep.IsTask(c))
	require.Equal(t, []string{"nfs"}, rep.StateTask(c).GetPlacementConstraint().GetVolumeDrivers())
}
