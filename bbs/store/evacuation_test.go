package store

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// rowSpec is a row of index 0 (or of index i with at): presence, state and the cell holding it.
type rowSpec struct {
	presence modelsv1.ActualLRPPresence
	state    modelsv1.ActualLRPState
	cell     string
	at       int32
}

func ord(state modelsv1.ActualLRPState, cell string) rowSpec {
	return rowSpec{models.Ordinary, state, cell, 0}
}
func evac(cell string) rowSpec { return rowSpec{models.Evacuating, models.Running, cell, 0} }
func sus(cell string) rowSpec  { return rowSpec{models.Suspect, models.Running, cell, 0} }
func ordAt(i int32, state modelsv1.ActualLRPState, cell string) rowSpec {
	return rowSpec{models.Ordinary, state, cell, i}
}

func (r rowSpec) String() string {
	return fmt.Sprintf("%d:%s:%s:%s", r.at, models.PresenceName(r.presence), models.StateName(r.state), r.cell)
}

// seedRows writes rows of guid straight into etcd (as a history of calls
// would have left them) and waits for the cache to see them.
func (f *fixture) seedRows(t *testing.T, guid string, rows []rowSpec) {
	t.Helper()
	var rev int64
	for i, r := range rows {
		row := &modelsv1.ActualLRP{
			Key: &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: r.at, Domain: "d"}, State: r.state, Presence: r.presence,
			ModificationTag: models.NewTag(),
		}
		if r.cell != "" {
			row.InstanceKey = ik(r.cell)
		}
		if r.state == models.Running {
			row.NetInfo = netInfo(uint32(61000 + i))
		}
		b, err := f.store.marshal(f.store.Keys().Actual(guid, r.at, r.presence), row)
		require.NoError(t, err)
		resp, err := f.client.Put(f.ctx, f.store.Keys().Actual(guid, r.at, r.presence), string(b))
		require.NoError(t, err)
		rev = resp.Header.Revision
	}
	require.NoError(t, f.store.Cache().WaitForRevision(f.ctx, rev))
}

// rowsNow lists guid's rows as specs, sorted.
func (f *fixture) rowsNow(guid string) []string {
	rows, _ := f.store.ListActualLRPs(ActualFilter{ProcessGUIDs: []string{guid}})
	out := []string{}
	for _, a := range rows {
		out = append(out, rowSpec{a.GetPresence(), a.GetState(), a.GetInstanceKey().GetCellId(), a.GetKey().GetIndex()}.String())
	}
	sort.Strings(out)
	return out
}

func specs(rows ...rowSpec) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.String())
	}
	sort.Strings(out)
	return out
}

type evacCase struct {
	name      string
	instances int32 // default 1
	recreate  bool
	noDesired bool
	index     int32 // the index called (default 0)
	rows      []rowSpec
	keep      bool
	auction   bool
	after     []rowSpec
}

func (f *fixture) desireFor(t *testing.T, guid string, c evacCase) {
	t.Helper()
	if c.noDesired {
		return
	}
	n := c.instances
	if n == 0 {
		n = 1
	}
	d := desired(guid, 0)
	d.Instances = n
	if c.recreate {
		d.UpdateStrategy = modelsv1.UpdateStrategy_UPDATE_STRATEGY_RECREATE
	}
	_, err := f.store.DesireLRP(f.ctx, d)
	require.NoError(t, err)
	// DesireLRP created UNCLAIMED rows; the case's rows replace them.
	for i := int32(0); i < n; i++ {
		_, err := f.client.Delete(f.ctx, f.store.Keys().Actual(guid, i, models.Ordinary))
		require.NoError(t, err)
	}
}

func guidOf(name string) string {
	return strings.NewReplacer(" ", "-", ",", "", "(", "", ")", "", "'", "", "=", "").Replace(name)
}

// EvacuateRunningActualLRP, cell A reporting its running instance of index 0.
func TestEvacuateRunningActualLRP(t *testing.T) {
	f := newFixture(t)
	const U, C, R, X = models.Unclaimed, models.Claimed, models.Running, models.Crashed
	cases := []evacCase{
		{name: "ordinary running: evacuating copy, ordinary unclaimed and auctioned", rows: []rowSpec{ord(R, "A")},
			keep: true, auction: true, after: []rowSpec{ord(U, ""), evac("A")}},
		{name: "ordinary claimed: evacuating copy running", rows: []rowSpec{ord(C, "A")},
			keep: true, auction: true, after: []rowSpec{ord(U, ""), evac("A")}},
		{name: "retry while the replacement is unplaced", rows: []rowSpec{ord(U, ""), evac("A")},
			keep: true, after: []rowSpec{ord(U, ""), evac("A")}},
		{name: "retry while the replacement starts", rows: []rowSpec{ord(C, "B"), evac("A")},
			keep: true, after: []rowSpec{ord(C, "B"), evac("A")}},
		{name: "replacement running: evacuating row deleted", rows: []rowSpec{ord(R, "B"), evac("A")},
			keep: false, after: []rowSpec{ord(R, "B")}},
		{name: "replacement crashed: evacuating row deleted", rows: []rowSpec{ord(X, ""), evac("A")},
			keep: false, after: []rowSpec{ord(X, "")}},
		{name: "no row at all: evacuating row created", rows: nil,
			keep: true, after: []rowSpec{evac("A")}},
		{name: "another cell holds the evacuating row", rows: []rowSpec{ord(U, ""), evac("B")},
			keep: false, after: []rowSpec{ord(U, ""), evac("B")}},
		{name: "ordinary mine but another cell evacuates the index", rows: []rowSpec{ord(R, "A"), evac("B")},
			keep: false, auction: true, after: []rowSpec{ord(U, ""), evac("B")}},
		{name: "suspect mine: becomes the evacuating row, no new auction", rows: []rowSpec{ord(C, "B"), sus("A")},
			keep: true, after: []rowSpec{ord(C, "B"), evac("A")}},
		{name: "suspect mine, replacement running", rows: []rowSpec{ord(R, "B"), sus("A")},
			keep: false, after: []rowSpec{ord(R, "B")}},
		{name: "desired LRP gone", noDesired: true, rows: []rowSpec{ord(U, ""), evac("A")},
			keep: false, after: []rowSpec{ord(U, "")}},
		{name: "index beyond the desired instances", index: 1, rows: []rowSpec{ordAt(1, U, ""), {models.Evacuating, R, "A", 1}},
			keep: false, after: []rowSpec{ordAt(1, U, "")}},
		{name: "recreate, all running: unclaimed, no evacuating copy", recreate: true, instances: 2,
			rows: []rowSpec{ord(R, "A"), ordAt(1, R, "B")},
			keep: false, auction: true, after: []rowSpec{ord(U, ""), ordAt(1, R, "B")}},
		{name: "recreate, another instance not running: keep and retry", recreate: true, instances: 2,
			rows: []rowSpec{ord(R, "A"), ordAt(1, U, "")},
			keep: true, after: []rowSpec{ord(R, "A"), ordAt(1, U, "")}},
		{name: "recreate, another instance missing: keep and retry", recreate: true, instances: 2,
			rows: []rowSpec{ord(R, "A")},
			keep: true, after: []rowSpec{ord(R, "A")}},
		{name: "recreate, replacement already placed elsewhere", recreate: true,
			rows: []rowSpec{ord(C, "B")},
			keep: false, after: []rowSpec{ord(C, "B")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			guid := guidOf(c.name)
			f.desireFor(t, guid, c)
			index := c.index
			f.seedRows(t, guid, c.rows)
			key := &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: index, Domain: "d"}
			res, err := f.store.EvacuateRunningActualLRP(f.ctx, key, models.StartInfo{InstanceKey: ik("A"), NetInfo: netInfo(62000)})
			require.NoError(t, err)
			require.Equal(t, c.keep, res.Keep, "keep_container")
			require.Equal(t, c.auction, res.Auction, "auction requested")
			require.Equal(t, specs(c.after...), f.rowsNow(guid))
			// Repeating the call is stable: the same answer (no second auction), no change.
			again, err := f.store.EvacuateRunningActualLRP(f.ctx, key, models.StartInfo{InstanceKey: ik("A"), NetInfo: netInfo(62000)})
			require.NoError(t, err)
			if !c.auction || c.keep {
				require.Equal(t, c.keep, again.Keep, "keep_container on a retry")
			}
			require.False(t, again.Auction && c.auction && c.keep, "a retry does not auction again")
		})
	}
}

// The evacuating copy keeps the instance's address and stays routable.
func TestEvacuatingCopyKeepsTheAddress(t *testing.T) {
	f := newFixture(t)
	_, err := f.store.DesireLRP(f.ctx, desired("pg", 1))
	require.NoError(t, err)
	key := &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"}
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("A")))
	require.NoError(t, f.store.StartActualLRP(f.ctx, key, models.StartInfo{InstanceKey: ik("A"), NetInfo: netInfo(61234)}))
	res, err := f.store.EvacuateRunningActualLRP(f.ctx, key, models.StartInfo{InstanceKey: ik("A"), NetInfo: netInfo(61234)})
	require.NoError(t, err)
	require.True(t, res.Keep)
	e, err := f.store.GetActualLRP("pg", 0, models.Evacuating)
	require.NoError(t, err)
	require.Equal(t, models.Running, e.GetState())
	require.Equal(t, uint32(61234), e.GetNetInfo().GetPorts()[0].GetHostPort())
	require.True(t, e.GetRoutable())

	// Claims and starts by the evacuating instance are ignored.
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("A")))
	require.NoError(t, f.store.StartActualLRP(f.ctx, key, models.StartInfo{InstanceKey: ik("A"), NetInfo: netInfo(61234)}))
	require.Equal(t, models.Unclaimed, f.row(t, "pg", 0).GetState())

	// The replacement's claim keeps the evacuating row; its start deletes it.
	require.NoError(t, f.store.ClaimActualLRP(f.ctx, "pg", 0, ik("B")))
	_, err = f.store.GetActualLRP("pg", 0, models.Evacuating)
	require.NoError(t, err)
	require.NoError(t, f.store.StartActualLRP(f.ctx, key, models.StartInfo{InstanceKey: ik("B"), NetInfo: netInfo(61300)}))
	_, err = f.store.GetActualLRP("pg", 0, models.Evacuating)
	require.ErrorIs(t, err, models.ErrNotFound)
	res, err = f.store.EvacuateRunningActualLRP(f.ctx, key, models.StartInfo{InstanceKey: ik("A"), NetInfo: netInfo(61234)})
	require.NoError(t, err)
	require.False(t, res.Keep, "once the replacement runs the old container goes")
}

func TestEvacuateClaimedStoppedCrashedRemoveReclaim(t *testing.T) {
	f := newFixture(t)
	const U, C, R, X = models.Unclaimed, models.Claimed, models.Running, models.Crashed
	type call func(f *fixture, key *modelsv1.ActualLRPKey) (EvacuationResult, error)
	claimed := func(f *fixture, key *modelsv1.ActualLRPKey) (EvacuationResult, error) {
		return f.store.EvacuateClaimedActualLRP(f.ctx, key, ik("A"))
	}
	stopped := func(f *fixture, key *modelsv1.ActualLRPKey) (EvacuationResult, error) {
		return f.store.EvacuateStoppedActualLRP(f.ctx, key, ik("A"))
	}
	crashed := func(f *fixture, key *modelsv1.ActualLRPKey) (EvacuationResult, error) {
		return f.store.EvacuateCrashedActualLRP(f.ctx, key, ik("A"), "boom")
	}
	removeEvac := func(f *fixture, key *modelsv1.ActualLRPKey) (EvacuationResult, error) {
		return EvacuationResult{}, f.store.RemoveEvacuatingActualLRP(f.ctx, key, ik("A"))
	}
	reclaim := func(f *fixture, key *modelsv1.ActualLRPKey) (EvacuationResult, error) {
		ok, err := f.store.ReclaimEvacuatingActualLRP(f.ctx, key, ik("A"))
		return EvacuationResult{Keep: ok}, err // Keep carries "reclaimed" here
	}
	cases := []struct {
		evacCase
		call call
	}{
		{evacCase{name: "claimed: unclaimed and auctioned", rows: []rowSpec{ord(C, "A")}, auction: true, after: []rowSpec{ord(U, "")}}, claimed},
		{evacCase{name: "claimed, not mine: nothing", rows: []rowSpec{ord(C, "B")}, after: []rowSpec{ord(C, "B")}}, claimed},
		{evacCase{name: "claimed, evacuating row mine: deleted", rows: []rowSpec{ord(C, "B"), evac("A")}, after: []rowSpec{ord(C, "B")}}, claimed},
		{evacCase{name: "claimed, suspect mine: deleted", rows: []rowSpec{ord(C, "B"), sus("A")}, after: []rowSpec{ord(C, "B")}}, claimed},
		{evacCase{name: "stopped ordinary: removed", rows: []rowSpec{ord(R, "A")}, after: nil}, stopped},
		{evacCase{name: "stopped evacuating: removed", rows: []rowSpec{ord(C, "B"), evac("A")}, after: []rowSpec{ord(C, "B")}}, stopped},
		{evacCase{name: "stopped, not mine: nothing", rows: []rowSpec{ord(R, "B"), evac("C")}, after: []rowSpec{ord(R, "B"), evac("C")}}, stopped},
		{evacCase{name: "crashed ordinary: crash recorded, restarted", rows: []rowSpec{ord(R, "A")}, auction: true, after: []rowSpec{ord(U, "")}}, crashed},
		{evacCase{name: "crashed evacuating: removed", rows: []rowSpec{ord(U, ""), evac("A")}, after: []rowSpec{ord(U, "")}}, crashed},
		{evacCase{name: "crashed, not mine: nothing", rows: []rowSpec{ord(R, "B")}, after: []rowSpec{ord(R, "B")}}, crashed},
		{evacCase{name: "remove evacuating: deleted", rows: []rowSpec{ord(U, ""), evac("A")}, after: []rowSpec{ord(U, "")}}, removeEvac},
		{evacCase{name: "remove evacuating, none: no error", rows: []rowSpec{ord(U, "")}, after: []rowSpec{ord(U, "")}}, removeEvac},
		{evacCase{name: "reclaim, replacement unplaced: ordinary again", rows: []rowSpec{ord(U, ""), evac("A")}, keep: true, after: []rowSpec{ord(R, "A")}}, reclaim},
		{evacCase{name: "reclaim, replacement crashed: ordinary again", rows: []rowSpec{ord(X, ""), evac("A")}, keep: true, after: []rowSpec{ord(R, "A")}}, reclaim},
		{evacCase{name: "reclaim, no ordinary row: ordinary again", rows: []rowSpec{evac("A")}, keep: true, after: []rowSpec{ord(R, "A")}}, reclaim},
		{evacCase{name: "reclaim, replacement starting: left", rows: []rowSpec{ord(C, "B"), evac("A")}, after: []rowSpec{ord(C, "B"), evac("A")}}, reclaim},
		{evacCase{name: "reclaim, replacement running: evacuating deleted", rows: []rowSpec{ord(R, "B"), evac("A")}, after: []rowSpec{ord(R, "B")}}, reclaim},
		{evacCase{name: "reclaim, already ordinary", rows: []rowSpec{ord(R, "A")}, keep: true, after: []rowSpec{ord(R, "A")}}, reclaim},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			guid := guidOf(c.name)
			f.desireFor(t, guid, c.evacCase)
			f.seedRows(t, guid, c.rows)
			res, err := c.call(f, &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: 0, Domain: "d"})
			require.NoError(t, err)
			require.Equal(t, c.keep, res.Keep)
			require.Equal(t, c.auction, res.Auction, "auction requested")
			require.Equal(t, specs(c.after...), f.rowsNow(guid))
		})
	}

	t.Run("remove evacuating held by another instance", func(t *testing.T) {
		f.desireFor(t, "held", evacCase{})
		f.seedRows(t, "held", []rowSpec{ord(U, ""), evac("B")})
		err := f.store.RemoveEvacuatingActualLRP(f.ctx, &modelsv1.ActualLRPKey{ProcessGuid: "held", Domain: "d"}, ik("A"))
		require.ErrorIs(t, err, models.ErrInvalidTransition)
	})
}

// Concurrent RECREATE evacuations of every instance of an LRP unclaim exactly
// one: the others see it no longer running and keep their containers.
func TestEvacuateRecreateConcurrentlyMovesOne(t *testing.T) {
	f := newFixture(t)
	const n = 4
	c := evacCase{instances: n, recreate: true}
	f.desireFor(t, "rc", c)
	var rows []rowSpec
	for i := int32(0); i < n; i++ {
		rows = append(rows, rowSpec{models.Ordinary, models.Running, fmt.Sprintf("A%d", i), i})
	}
	f.seedRows(t, "rc", rows)
	results := make(chan EvacuationResult, n)
	var wg sync.WaitGroup
	for i := int32(0); i < n; i++ {
		wg.Add(1)
		go func(i int32) {
			defer wg.Done()
			res, err := f.store.EvacuateRunningActualLRP(f.ctx, &modelsv1.ActualLRPKey{ProcessGuid: "rc", Index: i, Domain: "d"},
				models.StartInfo{InstanceKey: ik(fmt.Sprintf("A%d", i)), NetInfo: netInfo(61000 + uint32(i))})
			require.NoError(t, err)
			results <- res
		}(i)
	}
	wg.Wait()
	close(results)
	released := 0
	for res := range results {
		if !res.Keep {
			released++
		}
	}
	require.Equal(t, 1, released, "one instance at a time")
	unclaimed := 0
	for _, r := range f.rowsNow("rc") {
		if strings.Contains(r, "UNCLAIMED") {
			unclaimed++
		}
	}
	require.Equal(t, 1, unclaimed, "%v", f.rowsNow("rc"))
}
