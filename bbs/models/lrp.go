package models

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// State and presence short names.
const (
	Unclaimed = modelsv1.ActualLRPState_ACTUAL_LRP_STATE_UNCLAIMED
	Claimed   = modelsv1.ActualLRPState_ACTUAL_LRP_STATE_CLAIMED
	Running   = modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING
	Crashed   = modelsv1.ActualLRPState_ACTUAL_LRP_STATE_CRASHED

	Ordinary   = modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY
	Evacuating = modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_EVACUATING
	Suspect    = modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_SUSPECT
)

// NewTag starts a modification tag for a new record.
func NewTag() *modelsv1.ModificationTag {
	return &modelsv1.ModificationTag{Epoch: uuid.NewString(), Index: 0}
}

// NextTag returns the tag after one change.
func NextTag(t *modelsv1.ModificationTag) *modelsv1.ModificationTag {
	if t == nil || t.GetEpoch() == "" {
		return NewTag()
	}
	return &modelsv1.ModificationTag{Epoch: t.GetEpoch(), Index: t.GetIndex() + 1}
}

// SucceededBy says whether tag b is newer than tag a (a different epoch counts as newer).
func SucceededBy(a, b *modelsv1.ModificationTag) bool {
	if a == nil || a.GetEpoch() == "" || b.GetEpoch() != a.GetEpoch() {
		return true
	}
	return b.GetIndex() > a.GetIndex()
}

// StateName is a short name of a state for messages ("RUNNING").
func StateName(s modelsv1.ActualLRPState) string {
	switch s {
	case Unclaimed:
		return "UNCLAIMED"
	case Claimed:
		return "CLAIMED"
	case Running:
		return "RUNNING"
	case Crashed:
		return "CRASHED"
	}
	return s.String()
}

// PresenceName is a short name of a presence for messages ("ORDINARY").
func PresenceName(p modelsv1.ActualLRPPresence) string {
	switch p {
	case Ordinary:
		return "ORDINARY"
	case Evacuating:
		return "EVACUATING"
	case Suspect:
		return "SUSPECT"
	}
	return p.String()
}

// SameInstance says whether two instance keys name the same container.
func SameInstance(a, b *modelsv1.ActualLRPInstanceKey) bool {
	return a.GetInstanceGuid() == b.GetInstanceGuid() && a.GetCellId() == b.GetCellId()
}

func invalid(lrp *modelsv1.ActualLRP, action string) error {
	return fmt.Errorf("%w: cannot %s instance %s/%d: it is %s %s on cell %q",
		ErrInvalidTransition, action, lrp.GetKey().GetProcessGuid(), lrp.GetKey().GetIndex(),
		PresenceName(lrp.GetPresence()), StateName(lrp.GetState()), lrp.GetInstanceKey().GetCellId())
}

// NewUnclaimed builds the UNCLAIMED ordinary row of an index.
func NewUnclaimed(key *modelsv1.ActualLRPKey, now time.Time) *modelsv1.ActualLRP {
	return &modelsv1.ActualLRP{
		Key:             CloneActualLRPKey(key),
		State:           Unclaimed,
		Presence:        Ordinary,
		Since:           now.UnixNano(),
		ModificationTag: NewTag(),
	}
}

// Claim is a cell claiming the instance. Allowed from UNCLAIMED, and from
// CLAIMED or RUNNING with the same instance key (a repeat, or the cell
// restarting its container). changed is false when the claim repeats one
// already made.
func Claim(cur *modelsv1.ActualLRP, ik *modelsv1.ActualLRPInstanceKey, now time.Time) (next *modelsv1.ActualLRP, changed bool, err error) {
	switch {
	case cur.GetState() == Unclaimed:
	case cur.GetState() == Claimed && SameInstance(cur.GetInstanceKey(), ik):
		return cur, false, nil
	case cur.GetState() == Running && SameInstance(cur.GetInstanceKey(), ik):
	default:
		return nil, false, invalid(cur, "claim")
	}
	next = CloneActualLRP(cur)
	next.State = Claimed
	next.InstanceKey = CloneInstanceKey(ik)
	next.NetInfo = nil
	next.PlacementError = ""
	next.Since = now.UnixNano()
	next.ModificationTag = NextTag(cur.GetModificationTag())
	return next, true, nil
}

// StartInfo is what a cell reports when an instance runs.
type StartInfo struct {
	InstanceKey      *modelsv1.ActualLRPInstanceKey
	NetInfo          *modelsv1.ActualLRPNetInfo
	InternalRoutes   []*modelsv1.ActualLRPInternalRoute
	MetricTags       map[string]string
	Routable         *bool
	AvailabilityZone string
	// RanVersion, when set, is the run info version a cell ran without
	// claiming the instance first: a start from UNCLAIMED (or of a missing
	// row) is accepted only while it is the desired LRP's current version,
	// which the store checks.
	RanVersion *RunInfoVersion
}

// RunInfoVersion names one version of a desired LRP's run info: the epoch
// of the desired LRP's modification tag (new when it is desired again under
// the same guid) and the etcd revision of its run record (new whenever the
// run info is written).
type RunInfoVersion struct {
	Epoch    string
	Revision int64
}

// Start moves the instance to RUNNING. Allowed from UNCLAIMED, CLAIMED, and
// RUNNING with the same instance key; cur may be nil, and then a RUNNING row
// is created (so actual state recovers after data loss). Repeating a start
// with identical data is a no-op heartbeat (changed false).
func Start(cur *modelsv1.ActualLRP, key *modelsv1.ActualLRPKey, info StartInfo, now time.Time) (next *modelsv1.ActualLRP, changed bool, err error) {
	if cur == nil {
		next = &modelsv1.ActualLRP{Key: CloneActualLRPKey(key), Presence: Ordinary, ModificationTag: NewTag()}
	} else {
		switch cur.GetState() {
		case Unclaimed, Claimed:
		case Running:
			if !SameInstance(cur.GetInstanceKey(), info.InstanceKey) {
				return nil, false, invalid(cur, "start")
			}
			if heartbeat(cur, info) {
				return cur, false, nil
			}
		default:
			return nil, false, invalid(cur, "start")
		}
		next = cloneWithoutInstance(cur) // the instance's fields are set below
		next.ModificationTag = NextTag(cur.GetModificationTag())
	}
	routable := info.Routable
	if routable == nil {
		t := true
		routable = &t
	}
	next.State = Running
	next.InstanceKey = CloneInstanceKey(info.InstanceKey)
	next.NetInfo = CloneNetInfo(info.NetInfo)
	next.InternalRoutes = info.InternalRoutes
	next.MetricTags = info.MetricTags
	next.Routable = routable
	next.AvailabilityZone = info.AvailabilityZone
	next.PlacementError = ""
	if cur != nil && cur.GetState() == Running {
		next.Since = cur.GetSince()
	} else {
		next.Since = now.UnixNano()
	}
	return next, true, nil
}

// StartRepeats says whether a start report would change nothing: cur is
// RUNNING with the same instance and already holds what info reports (Start
// then writes nothing). A cell's bulk sync skips such reports.
func StartRepeats(cur *modelsv1.ActualLRP, info StartInfo) bool {
	return cur.GetState() == Running && SameInstance(cur.GetInstanceKey(), info.InstanceKey) && heartbeat(cur, info)
}

// heartbeat says whether a start repeats what a RUNNING row already holds
// (cells re-post every running instance each bulk sync), without copying it.
func heartbeat(cur *modelsv1.ActualLRP, info StartInfo) bool {
	routable := info.Routable == nil || *info.Routable
	if cur.GetPlacementError() != "" || cur.GetRoutable() != routable || cur.GetAvailabilityZone() != info.AvailabilityZone ||
		!proto.Equal(cur.GetNetInfo(), info.NetInfo) || len(cur.GetInternalRoutes()) != len(info.InternalRoutes) ||
		len(cur.GetMetricTags()) != len(info.MetricTags) {
		return false
	}
	for i, r := range cur.GetInternalRoutes() {
		if !proto.Equal(r, info.InternalRoutes[i]) {
			return false
		}
	}
	for k, v := range cur.GetMetricTags() {
		if w, ok := info.MetricTags[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Crash records that the instance's process exited. Allowed only from CLAIMED
// or RUNNING with the same instance key. The crash count restarts at 1 when the
// instance had been running longer than the policy's reset time. When the
// policy restarts at once the row goes straight to UNCLAIMED (restart true, an
// auction is due); otherwise it stays CRASHED until convergence restarts it.
func Crash(cur *modelsv1.ActualLRP, ik *modelsv1.ActualLRPInstanceKey, reason string, policy CrashPolicy, now time.Time) (next *modelsv1.ActualLRP, restart bool, err error) {
	if (cur.GetState() != Claimed && cur.GetState() != Running) || !SameInstance(cur.GetInstanceKey(), ik) {
		return nil, false, invalid(cur, "crash")
	}
	next = cloneWithoutInstance(cur)
	next.CrashCount = policy.NextCrashCount(cur.GetState(), cur.GetCrashCount(), time.Unix(0, cur.GetSince()), now)
	next.CrashReason = Truncate(reason)
	next.Since = now.UnixNano()
	next.ModificationTag = NextTag(cur.GetModificationTag())
	if policy.ShouldRestart(next.CrashCount, now, now) {
		next.State = Unclaimed
		return next, true, nil
	}
	next.State = Crashed
	return next, false, nil
}

// Fail records a placement error. Allowed only on an UNCLAIMED row; the state does not change.
func Fail(cur *modelsv1.ActualLRP, reason string) (*modelsv1.ActualLRP, error) {
	if cur.GetState() != Unclaimed {
		return nil, invalid(cur, "record a placement error on")
	}
	next := CloneActualLRP(cur)
	next.PlacementError = Truncate(reason)
	next.ModificationTag = NextTag(cur.GetModificationTag())
	return next, nil
}

// Unclaim returns the row to UNCLAIMED with no instance (convergence and evacuation use it).
func Unclaim(cur *modelsv1.ActualLRP, now time.Time) *modelsv1.ActualLRP {
	next := cloneWithoutInstance(cur)
	next.State = Unclaimed
	next.Presence = Ordinary
	next.Since = now.UnixNano()
	next.ModificationTag = NextTag(cur.GetModificationTag())
	return next
}

// CheckRemove says whether a RemoveActualLRP with this instance key may delete the row.
func CheckRemove(cur *modelsv1.ActualLRP, ik *modelsv1.ActualLRPInstanceKey) error {
	if ik != nil && !SameInstance(cur.GetInstanceKey(), ik) {
		return invalid(cur, fmt.Sprintf("remove (as instance %q on cell %q)", ik.GetInstanceGuid(), ik.GetCellId()))
	}
	return nil
}
