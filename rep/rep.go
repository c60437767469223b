package rep

import (
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep/executor"
)

// Container tags set by Perform (Diego's names). The container guid is the
// instance guid of an LRP and the task guid of a task.
const (
	TagLifecycle     = "lifecycle"
	TagDomain        = "domain"
	TagProcessGuid   = "process-guid"
	TagProcessIndex  = "process-index"
	TagInstanceGuid  = "instance-guid"
	TagRootFS        = "root-fs"
	TagPlacementTags = "placement-tags"
	TagVolumeDrivers = "volume-drivers"
	// TagDesiredEpoch and TagRunInfoRevision name the run info version the
	// auction carried (Gavel's own); absent when it carried none.
	TagDesiredEpoch    = "desired-epoch"
	TagRunInfoRevision = "run-info-revision"

	// LifecycleLRP and LifecycleTask are the values of TagLifecycle.
	LifecycleLRP  = "lrp"
	LifecycleTask = "task"
)

// Evacuation is a cell's evacuation flag: once set, the cell refuses work
// and drains (the harmonizer evacuates its LRPs and hands back its tasks).
// The zero value is a cell not evacuating. Safe for concurrent use.
type Evacuation struct {
	on       atomic.Bool
	mu       sync.Mutex
	deadline time.Time
	started  chan struct{} // closed when the flag is set; made lazily
}

// Evacuate sets the flag with no deadline; it cannot be cleared.
func (e *Evacuation) Evacuate() { e.Start(time.Time{}) }

// Start sets the flag with the drain's deadline. It returns false, and
// changes nothing, when the cell already evacuates.
func (e *Evacuation) Start(deadline time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.on.Load() {
		return false
	}
	e.deadline = deadline
	e.on.Store(true)
	close(e.startedLocked())
	return true
}

func (e *Evacuation) startedLocked() chan struct{} {
	if e.started == nil {
		e.started = make(chan struct{})
	}
	return e.started
}

// Started is closed once the cell evacuates.
func (e *Evacuation) Started() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.startedLocked()
}

// Evacuating reports whether the cell evacuates.
func (e *Evacuation) Evacuating() bool { return e.on.Load() }

// Deadline is when the drain gives up; zero when not evacuating or unbounded.
func (e *Evacuation) Deadline() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.deadline
}

// LRPTags are the tags of an LRP instance's container. A tag with no value
// (no placement tags, no volume drivers, no run info version) is left out,
// as a missing tag reads as empty: the usual instance then has 8 tags, which
// Go keeps in one small map group rather than a table (the map lives as long
// as the container, on every cell).
func LRPTags(lrp *repv1.LRP, instanceGuid string) executor.Tags {
	key := lrp.GetKey()
	pc := lrp.GetPlacementConstraint()
	tags := make(executor.Tags, 8)
	tags[TagLifecycle] = LifecycleLRP
	tags[TagDomain] = key.GetDomain()
	tags[TagProcessGuid] = key.GetProcessGuid()
	tags[TagProcessIndex] = strconv.Itoa(int(key.GetIndex()))
	tags[TagInstanceGuid] = instanceGuid
	tags[TagRootFS] = pc.GetRootFs()
	addLists(tags, pc)
	if lrp.GetDesiredEpoch() != "" && lrp.GetRunInfoRevision() > 0 {
		tags[TagDesiredEpoch] = lrp.GetDesiredEpoch()
		tags[TagRunInfoRevision] = strconv.FormatInt(lrp.GetRunInfoRevision(), 10)
	}
	return tags
}

// addLists adds the placement tags and volume drivers of pc, when it has any.
func addLists(tags executor.Tags, pc *auctioneerv1.PlacementConstraint) {
	if l := pc.GetPlacementTags(); len(l) > 0 {
		tags[TagPlacementTags] = jsonList(l)
	}
	if l := pc.GetVolumeDrivers(); len(l) > 0 {
		tags[TagVolumeDrivers] = jsonList(l)
	}
}

// RunInfoVersion is the run info version an LRP container's auction named;
// false when it named none.
func RunInfoVersion(c executor.Container) (epoch string, revision int64, ok bool) {
	epoch = c.Tags[TagDesiredEpoch]
	revision, err := strconv.ParseInt(c.Tags[TagRunInfoRevision], 10, 64)
	if epoch == "" || err != nil || revision <= 0 {
		return "", 0, false
	}
	return epoch, revision, true
}

// TaskTags are the tags of a task's container (empty lists left out, as
// for LRPTags).
func TaskTags(task *repv1.Task) executor.Tags {
	tags := executor.Tags{
		TagLifecycle: LifecycleTask,
		TagDomain:    task.GetDomain(),
		TagRootFS:    task.GetPlacementConstraint().GetRootFs(),
	}
	addLists(tags, task.GetPlacementConstraint())
	return tags
}

func jsonList(l []string) string {
	data, _ := json.Marshal(l)
	return string(data)
}

func parseList(s string) []string {
	if s == "" {
		return nil
	}
	var l []string
	_ = json.Unmarshal([]byte(s), &l)
	return l
}

// IsLRP reports whether a container runs an LRP instance.
func IsLRP(c executor.Container) bool { return c.Tags[TagLifecycle] == LifecycleLRP }

// IsTask reports whether a container runs a task.
func IsTask(c executor.Container) bool { return c.Tags[TagLifecycle] == LifecycleTask }

// ActualLRPKey is the key of the instance an LRP container runs.
func ActualLRPKey(c executor.Container) *modelsv1.ActualLRPKey {
	index, _ := strconv.Atoi(c.Tags[TagProcessIndex])
	return &modelsv1.ActualLRPKey{ProcessGuid: c.Tags[TagProcessGuid], Index: int32(index), Domain: c.Tags[TagDomain]}
}

// InstanceKey is the instance key of an LRP container on cellID.
func InstanceKey(c executor.Container, cellID string) *modelsv1.ActualLRPInstanceKey {
	return &modelsv1.ActualLRPInstanceKey{InstanceGuid: c.Guid, CellId: cellID}
}

func resource(c executor.Container) *auctioneerv1.Resource {
	return &auctioneerv1.Resource{MemoryMb: int32(c.Resource.MemoryMB), DiskMb: int32(c.Resource.DiskMB), MaxPids: int32(c.Resource.MaxPids)}
}

func constraint(c executor.Container) *auctioneerv1.PlacementConstraint {
	return &auctioneerv1.PlacementConstraint{
		RootFs: c.Tags[TagRootFS], PlacementTags: parseList(c.Tags[TagPlacementTags]), VolumeDrivers: parseList(c.Tags[TagVolumeDrivers]),
	}
}

// StateLRP is an LRP container as State reports it.
func StateLRP(c executor.Container) *repv1.LRP {
	return &repv1.LRP{Key: ActualLRPKey(c), InstanceGuid: c.Guid, Resource: resource(c), PlacementConstraint: constraint(c)}
}

// StateTask is a task container as State reports it.
func StateTask(c executor.Container) *repv1.Task {
	return &repv1.Task{TaskGuid: c.Guid, Domain: c.Tags[TagDomain], Resource: resource(c), PlacementConstraint: constraint(c)}
}

// NetInfo is the BBS net info of a running container.
func NetInfo(c executor.Container) *modelsv1.ActualLRPNetInfo {
	ni := &modelsv1.ActualLRPNetInfo{
		Address:          c.NetInfo.HostIP,
		InstanceAddress:  c.NetInfo.InternalIP,
		PreferredAddress: modelsv1.ActualLRPNetInfo_PREFERRED_ADDRESS_HOST,
	}
	for _, p := range c.NetInfo.Ports {
		ni.Ports = append(ni.Ports, &modelsv1.PortMapping{ContainerPort: p.ContainerPort, HostPort: p.HostPort})
	}
	return ni
}
