package auctioneer

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// cellOpt adjusts a test cell before its available resources are derived.
type cellOpt func(*CellState)

// testCell builds a 100 MB / 100 MB / 100-container cell offering
// preloaded:cflinuxfs4 and any docker image; Available is Total minus the
// work the options put on it.
func testCell(id, zone string, opts ...cellOpt) CellState {
	c := CellState{
		CellID:          id,
		Zone:            zone,
		Total:           Resources{MemoryMB: 100, DiskMB: 100, Containers: 100},
		RootFSProviders: map[string][]string{"preloaded": {"cflinuxfs4"}, "docker": {}},
	}
	for _, o := range opts {
		o(&c)
	}
	c.Available = c.Total
	for _, l := range c.LRPs {
		c.Available.MemoryMB -= l.MemoryMB
		c.Available.DiskMB -= l.DiskMB
		c.Available.Containers--
	}
	for _, t := range c.Tasks {
		c.Available.MemoryMB -= t.MemoryMB
		c.Available.DiskMB -= t.DiskMB
		c.Available.Containers--
	}
	return c
}

func withTotal(mem, disk, containers int) cellOpt {
	return func(c *CellState) { c.Total = Resources{MemoryMB: mem, DiskMB: disk, Containers: containers} }
}

func withLRP(guid string, index, mem, disk int) cellOpt {
	return func(c *CellState) {
		c.LRPs = append(c.LRPs, RunningLRP{ProcessGUID: guid, Index: index, MemoryMB: mem, DiskMB: disk})
	}
}

func withTask(guid string, mem, disk int) cellOpt {
	return func(c *CellState) {
		c.Tasks = append(c.Tasks, RunningTask{TaskGUID: guid, MemoryMB: mem, DiskMB: disk})
	}
}

func withIndex(i int) cellOpt { return func(c *CellState) { c.Index = i } }

func withStarting(n int) cellOpt { return func(c *CellState) { c.StartingContainers = n } }

func withProxy(mb int) cellOpt { return func(c *CellState) { c.ProxyMemoryMB = mb } }

func withDrivers(d ...string) cellOpt { return func(c *CellState) { c.VolumeDrivers = d } }

func withTags(required, optional []string) cellOpt {
	return func(c *CellState) { c.PlacementTags, c.OptionalPlacementTags = required, optional }
}

func withProviders(p map[string][]string) cellOpt {
	return func(c *CellState) { c.RootFSProviders = p }
}

func evacuating() cellOpt { return func(c *CellState) { c.Evacuating = true } }

// lrpReq builds a start request for one instance with 1 MB of disk.
func lrpReq(guid string, index, mem int) LRPStart {
	return LRPStart{ProcessGUID: guid, Index: index, Domain: "d", MemoryMB: mem, DiskMB: 1, RootFS: "preloaded:cflinuxfs4"}
}

// taskReq builds a task start request with 1 MB of disk.
func taskReq(guid string, mem int) TaskStart {
	return TaskStart{TaskGUID: guid, Domain: "d", MemoryMB: mem, DiskMB: 1, RootFS: "preloaded:cflinuxfs4"}
}

// diegoOpts are Diego's defaults with a fixed seed.
func diegoOpts(mods ...func(*Options)) Options {
	o := DefaultOptions()
	o.Seed = 42
	for _, m := range mods {
		m(&o)
	}
	return o
}

// mustRun runs the auction and fails the test on an error.
func mustRun(t *testing.T, a Auction, opts Options) Result {
	t.Helper()
	res, err := Run(a, opts)
	require.NoError(t, err)
	require.Equal(t, len(a.LRPs)+len(a.Tasks), len(res.Placements)+len(res.Failures), "every item is placed or failed")
	return res
}

// workID names an item as Diego's Identifier does: "guid.index" or task guid.
func workID(kind Kind, guid string, index int, taskGUID string) string {
	if kind == KindTask {
		return taskGUID
	}
	return fmt.Sprintf("%s.%d", guid, index)
}

// winners maps each placed item to its cell.
func winners(res Result) map[string]string {
	out := map[string]string{}
	for _, p := range res.Placements {
		out[workID(p.Kind, p.ProcessGUID, p.Index, p.TaskGUID)] = p.CellID
	}
	return out
}

// failures maps each failed item to its placement error.
func failures(res Result) map[string]string {
	out := map[string]string{}
	for _, f := range res.Failures {
		out[workID(f.Kind, f.ProcessGUID, f.Index, f.TaskGUID)] = f.Message
	}
	return out
}

// order lists the placed items in placement order.
func order(res Result) []string {
	var out []string
	for _, p := range res.Placements {
		out = append(out, workID(p.Kind, p.ProcessGUID, p.Index, p.TaskGUID))
	}
	return out
}

// perCell counts the placements on each cell.
func perCell(res Result) map[string]int {
	out := map[string]int{}
	for _, p := range res.Placements {
		out[p.CellID]++
	}
	return out
}
