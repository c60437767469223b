package auctioneer

import (
	"net/url"
	"slices"
	"strings"
)

// The filter stages of reference §1.5, in order. A cell that fails a stage
// reached the previous one.
const (
	stageNone    = iota // failed the rootfs filter
	stageRootFS         // passed the rootfs filter
	stageDrivers        // passed the volume driver filter
	stageTags           // passed the placement tag filter: eligible
)

// zoneCells is one zone's eligible cells, in iteration order.
type zoneCells struct {
	zone  int32
	cells []int32
}

// filterResult is the outcome of the hard filters for one placement
// constraint. The filters do not depend on resources, so the result holds
// for the whole run and is shared by every item with the same constraint.
type filterResult struct {
	// flat lists the eligible cells in the run's global iteration order.
	flat []int32
	// zones lists, in the run's zone order, the zones with eligible cells.
	zones []zoneCells
	// stage is the furthest stage any cell reached.
	stage int
	// rejected counts the cells that failed the rootfs, driver and tag filters.
	rejected [3]int
	// index holds the cell index of these cells for LRPs and for tasks
	// (nil: scan every cell), built on first use.
	index      [2]*cellIndex
	indexTried [2]bool
}

// failure returns the Diego error for a constraint no cell passes.
func (f *filterResult) failure(tags []string) (Reason, string) {
	switch f.stage {
	case stageNone:
		return ReasonRootFS, MsgRootFS
	case stageRootFS:
		return ReasonVolumeDrivers, MsgVolumeDrivers
	default:
		return ReasonPlacementTags, placementTagsMessage(tags)
	}
}

// rejections lists the filter rejections, for Failure.Rejections.
func (f *filterResult) rejections() []Rejection {
	var out []Rejection
	for i, name := range [3]string{"rootfs mismatch", "volume drivers missing", "placement tags mismatch"} {
		if f.rejected[i] > 0 {
			out = append(out, Rejection{Reason: name, Cells: f.rejected[i]})
		}
	}
	return out
}

// constraintKey identifies a placement constraint in the filter cache.
// Tags and drivers are sets, so their order does not matter.
func constraintKey(rootfs string, tags, drivers []string) string {
	if len(tags) == 0 && len(drivers) == 0 {
		return rootfs
	}
	var b strings.Builder
	b.WriteString(rootfs)
	for _, set := range [2][]string{tags, drivers} {
		b.WriteByte(0)
		sorted := slices.Clone(set)
		slices.Sort(sorted)
		for _, s := range sorted {
			b.WriteString(s)
			b.WriteByte(1)
		}
	}
	return b.String()
}

// filter applies the hard filters of reference §1.5 to every cell of the
// run, in the run's iteration order.
func (r *run) filter(rootfs string, tags, drivers []string) *filterResult {
	res := &filterResult{}
	u, err := url.Parse(rootfs)
	perZone := make([][]int32, len(r.zoneNames))
	for _, ci := range r.order {
		st := r.cells[ci].state
		stage := stageNone
		switch {
		case err != nil || !matchRootFS(st.RootFSProviders, u):
		case !containsAll(st.VolumeDrivers, drivers):
			stage = stageRootFS
		case !matchPlacementTags(st.PlacementTags, st.OptionalPlacementTags, tags):
			stage = stageDrivers
		default:
			stage = stageTags
		}
		res.stage = max(res.stage, stage)
		if stage < stageTags {
			res.rejected[stage]++
			continue
		}
		res.flat = append(res.flat, ci)
		z := r.cells[ci].zone
		perZone[z] = append(perZone[z], ci)
	}
	for _, z := range r.zoneOrder {
		if len(perZone[z]) > 0 {
			res.zones = append(res.zones, zoneCells{zone: z, cells: perZone[z]})
		}
	}
	return res
}

// matchRootFS reports whether a cell's providers serve the rootfs URL: the
// URL's scheme must be a provider; an empty stack list serves any URL of the
// scheme, otherwise the URL's opaque part (the stack) must be listed.
func matchRootFS(providers map[string][]string, u *url.URL) bool {
	stacks, ok := providers[u.Scheme]
	if !ok {
		return false
	}
	return len(stacks) == 0 || slices.Contains(stacks, u.Opaque)
}

// containsAll reports whether every wanted string is in have.
func containsAll(have, wanted []string) bool {
	for _, w := range wanted {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// matchPlacementTags implements Diego's rule: with the cell's required tags
// R, optional tags O and the request's tags D, the cell matches iff R ⊆ D
// and D ⊆ R ∪ O.
func matchPlacementTags(required, optional, requested []string) bool {
	if !containsAll(requested, required) {
		return false
	}
	for _, d := range requested {
		if !slices.Contains(required, d) && !slices.Contains(optional, d) {
			return false
		}
	}
	return true
}
