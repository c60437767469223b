package executor

import (
	"errors"
	"time"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Sentinel errors.
var (
	// ErrContainerNotFound is returned for an unknown container guid.
	ErrContainerNotFound = errors.New("container not found")
	// ErrGuidNotAvailable is the allocation failure for a guid already in use or empty.
	ErrGuidNotAvailable = errors.New("container guid not available")
	// ErrInsufficientResources is the allocation failure for a request that does not fit.
	ErrInsufficientResources = errors.New("insufficient resources")
	// ErrInvalidTransition is returned for an operation the container's state forbids.
	ErrInvalidTransition = errors.New("container cannot transition to given state")
)

// Failure reasons set in RunResult.FailureReason.
const (
	// ReasonExpired is the reason of a reservation that expired.
	ReasonExpired = "expired container"
	// ReasonFailedToFetchResult is the reason of a task whose result file could not be read.
	ReasonFailedToFetchResult = "failed to fetch result"
	// ReasonCodependentExited is the error of a codependent group whose member exited cleanly.
	ReasonCodependentExited = "Codependent step exited"
	// MaxFailureReasonLength caps RunResult.FailureReason.
	MaxFailureReasonLength = 10000
	// MaxResultBytes caps RunResult.Result (the head of a task's result file).
	MaxResultBytes = 10 * 1024
)

// State is a container's lifecycle state.
type State string

// Container states, in lifecycle order.
const (
	StateReserved     State = "reserved"
	StateInitializing State = "initializing"
	StateCreated      State = "created"
	StateRunning      State = "running"
	StateCompleted    State = "completed"
)

// Tags are string labels set at allocation (lifecycle, domain, process guid, …).
// They are stored on the backend container as properties prefixed "tag:".
type Tags map[string]string

// Resources are amounts of a cell's resources.
type Resources struct {
	MemoryMB   int
	DiskMB     int
	Containers int
}

// Resource is what one container asks for.
type Resource struct {
	MemoryMB int
	DiskMB   int
	MaxPids  int
}

// AllocationRequest asks for one container's reservation.
type AllocationRequest struct {
	// Guid names the container: the instance guid of an LRP, the task guid of a task.
	Guid string
	// Resource is the requested memory, disk and pid limit.
	Resource Resource
	// LRP adds Options.ProxyMemoryMB to the reserved memory.
	LRP bool
	// Tags label the container. Allocate keeps the map, as the container's
	// snapshots share it: the caller must not change it afterwards.
	Tags Tags
}

// AllocationFailure is a request Allocate could not reserve, and why.
type AllocationFailure struct {
	Request AllocationRequest
	Err     error
}

// PortMapping maps a container port to the host port it is reachable on.
type PortMapping struct {
	ContainerPort uint32
	HostPort      uint32
}

// NetInfo is how a running container is reached.
type NetInfo struct {
	// HostIP is the cell's address for the mapped host ports.
	HostIP string
	// InternalIP is the container's own address.
	InternalIP string
	// Ports lists the mapped ports, in the order of RunRequest.Ports.
	Ports []PortMapping
}

// RunResult is how a container completed.
type RunResult struct {
	// Failed is true when the action tree failed (false for a stop).
	Failed bool
	// FailureReason says why, at most MaxFailureReasonLength characters.
	FailureReason string
	// Retryable is true for failures before the action ran (container creation,
	// cached downloads), after which a task may be rejected and placed elsewhere.
	Retryable bool
	// Stopped is true when the container was stopped or deleted on request.
	Stopped bool
	// ExitStatus is the exit status of the action's process (the first non-zero
	// one when there are several), or 0.
	ExitStatus int
	// Result is the head (MaxResultBytes) of the task's result file on success.
	Result string
}

// Container is a snapshot of one container: a copy of the executor's record.
// Its Tags and NetInfo.Ports are shared with that record, which never
// changes them in place (tags are fixed at allocation, net info is replaced
// whole), so they must not be changed.
type Container struct {
	Guid  string
	State State
	// Resource is what was requested; AllocatedMemoryMB includes the proxy allowance.
	Resource          Resource
	AllocatedMemoryMB int
	LRP               bool
	Tags              Tags
	AllocatedAt       time.Time
	// NetInfo is set from created on.
	NetInfo NetInfo
	// Routable is true while a running container passes its readiness checks
	// (always true once running when it has none).
	Routable bool
	// MemoryLimitEnforced says whether the backend enforces the memory limit.
	MemoryLimitEnforced bool
	// RunResult is set once completed.
	RunResult RunResult
}

// LogConfig names a container's log stream.
type LogConfig struct {
	// Guid is the log guid (the app's).
	Guid string
	// Index is the instance index.
	Index int
	// SourceName is the default log source ("APP", "TASK", …).
	SourceName string
}

// RunRequest is everything needed to run a reserved container.
type RunRequest struct {
	// Image is the root filesystem URI.
	Image      string
	Privileged bool
	// Env is the LRP's or task's environment (VCAP_SERVICES, …), added after
	// the instance env and before each run action's env.
	Env []*modelsv1.EnvironmentVariable
	// Setup runs first; Action is the main action; Monitor is the legacy
	// health check action, used only without a CheckDefinition.
	Setup, Action, Monitor *modelsv1.Action
	// CheckDefinition holds the declarative startup/liveness and readiness checks.
	CheckDefinition *modelsv1.CheckDefinition
	// StartTimeout bounds the startup check; 0 means Options.DefaultStartTimeout.
	StartTimeout time.Duration
	// Ports are the container ports to expose; the first is PORT.
	Ports []uint32
	// CachedDependencies are downloaded before setup; failures are retryable.
	CachedDependencies []*modelsv1.CachedDependency
	// VolumeMountedFiles are written into the container before setup.
	VolumeMountedFiles []*modelsv1.File
	// Sidecars run codependently with the action.
	Sidecars []*modelsv1.Sidecar
	// LogConfig names the log stream.
	LogConfig LogConfig
	// LogRateLimitBytesPerSecond caps the log output; ≤ 0 means unlimited.
	LogRateLimitBytesPerSecond int64
	// ResultFile is read after a task's action succeeds.
	ResultFile string
	// InstanceGuid and InstanceIndex identify an LRP instance (empty for tasks).
	InstanceGuid  string
	InstanceIndex int
}

// RunRequestForLRP builds the run request of one LRP instance.
func RunRequestForLRP(run *modelsv1.DesiredLRPRunInfo, index int, instanceGuid string) RunRequest {
	req := RunRequest{
		Privileged:         run.GetPrivileged(),
		Env:                run.GetEnvironmentVariables(),
		Setup:              run.GetSetup(),
		Action:             run.GetAction(),
		Monitor:            run.GetMonitor(),
		CheckDefinition:    run.GetCheckDefinition(),
		StartTimeout:       time.Duration(run.GetStartTimeoutMs()) * time.Millisecond,
		Ports:              run.GetPorts(),
		CachedDependencies: run.GetCachedDependencies(),
		VolumeMountedFiles: run.GetVolumeMountedFiles(),
		Sidecars:           run.GetSidecars(),
		LogConfig:          LogConfig{Guid: run.GetKey().GetLogGuid(), Index: index, SourceName: run.GetLogSource()},
		InstanceGuid:       instanceGuid,
		InstanceIndex:      index,
	}
	if l := run.GetLogRateLimit(); l != nil {
		req.LogRateLimitBytesPerSecond = l.GetBytesPerSecond()
	}
	return req
}

// RunRequestForTask builds the run request of a task.
func RunRequestForTask(def *modelsv1.TaskDefinition) RunRequest {
	req := RunRequest{
		Image:              def.GetRootFs(),
		Privileged:         def.GetPrivileged(),
		Env:                def.GetEnvironmentVariables(),
		Action:             def.GetAction(),
		CachedDependencies: def.GetCachedDependencies(),
		VolumeMountedFiles: def.GetVolumeMountedFiles(),
		LogConfig:          LogConfig{Guid: def.GetLogGuid(), SourceName: def.GetLogSource()},
		ResultFile:         def.GetResultFile(),
	}
	if l := def.GetLogRateLimit(); l != nil {
		req.LogRateLimitBytesPerSecond = l.GetBytesPerSecond()
	}
	return req
}
