package bridgemessages

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// Lifecycles a staging request may name.
const (
	LifecycleBuildpack = "buildpack"
	LifecycleDocker    = "docker"
)

// Staging error ids (Diego's cc_messages), the id of a StagingError.
const (
	StagingErrorID         = "StagingError"
	InsufficientResources  = "InsufficientResources"
	NoCompatibleCell       = "NoCompatibleCell"
	CellCommunicationError = "CellCommunicationError"
	NoAppDetectedError     = "NoAppDetectedError"
	BuildpackCompileFailed = "BuildpackCompileFailed"
	BuildpackReleaseFailed = "BuildpackReleaseFailed"
)

// Limits of a staging request; larger values are refused with a field error.
const (
	// MaxEnvironmentVariables bounds a staging request's environment.
	MaxEnvironmentVariables = 1024
	// MaxBuildpacks bounds a buildpack staging request's buildpack list.
	MaxBuildpacks = 64
	// MaxEgressRules bounds a staging request's security group rules.
	MaxEgressRules = 1024
	// MaxMemoryMB and MaxDiskMB bound a staging task's resources.
	MaxMemoryMB = 1 << 20
	MaxDiskMB   = 1 << 22
	// MaxTimeoutSeconds bounds a staging timeout (one day).
	MaxTimeoutSeconds = 86400
)

// GUIDPattern is what process, staging and app guids must match (the BBS's rule).
var GUIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// EnvironmentVariable is one name=value pair.
type EnvironmentVariable struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// EgressRule is one security group rule, passed through to the task.
type EgressRule struct {
	Protocol     string     `json:"protocol"`
	Destinations []string   `json:"destinations"`
	Ports        []uint32   `json:"ports,omitempty"`
	PortRange    *PortRange `json:"port_range,omitempty"`
	Log          bool       `json:"log,omitempty"`
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	Start uint32 `json:"start"`
	End   uint32 `json:"end"`
}

// StagingRequestFromCC is the body of PUT /v1/staging/:staging_guid.
type StagingRequestFromCC struct {
	AppID            string                `json:"app_id"`
	FileDescriptors  int                   `json:"file_descriptors"`
	MemoryMB         int                   `json:"memory_mb"`
	DiskMB           int                   `json:"disk_mb"`
	Environment      []EnvironmentVariable `json:"environment"`
	EgressRules      []EgressRule          `json:"egress_rules,omitempty"`
	Timeout          int                   `json:"timeout"`
	LogGUID          string                `json:"log_guid"`
	Lifecycle        string                `json:"lifecycle"`
	LifecycleData    json.RawMessage       `json:"lifecycle_data"`
	CompletionCB     string                `json:"completion_callback"`
	IsolationSegment string                `json:"isolation_segment,omitempty"`
}

// Buildpack is one buildpack of a buildpack staging request.
type Buildpack struct {
	Name       string `json:"name"`
	Key        string `json:"key"`
	URL        string `json:"url"`
	SkipDetect bool   `json:"skip_detect"`
}

// BuildpackStagingData is the lifecycle_data of a buildpack staging request.
type BuildpackStagingData struct {
	AppBitsDownloadURI             string      `json:"app_bits_download_uri"`
	BuildArtifactsCacheDownloadURI string      `json:"build_artifacts_cache_download_uri,omitempty"`
	BuildArtifactsCacheUploadURI   string      `json:"build_artifacts_cache_upload_uri,omitempty"`
	Buildpacks                     []Buildpack `json:"buildpacks"`
	DropletUploadURI               string      `json:"droplet_upload_uri"`
	Stack                          string      `json:"stack"`
}

// ValidationError lists every invalid field of a request.
type ValidationError struct {
	Fields []string
}

func (v *ValidationError) Error() string {
	msg := "invalid request"
	for i, f := range v.Fields {
		if i == 0 {
			msg += ": "
		} else {
			msg += "; "
		}
		msg += f
	}
	return msg
}

func (v *ValidationError) add(format string, args ...any) {
	v.Fields = append(v.Fields, fmt.Sprintf(format, args...))
}

func (v *ValidationError) err() error {
	if len(v.Fields) == 0 {
		return nil
	}
	return v
}

// Validate checks the common fields of a staging request (not lifecycle_data).
func (r *StagingRequestFromCC) Validate() error {
	v := &ValidationError{}
	if !GUIDPattern.MatchString(r.AppID) {
		v.add("app_id: must match %s (got %q)", GUIDPattern, r.AppID)
	}
	if r.LogGUID != "" && !GUIDPattern.MatchString(r.LogGUID) {
		v.add("log_guid: must match %s (got %q)", GUIDPattern, r.LogGUID)
	}
	if r.MemoryMB < 0 || r.MemoryMB > MaxMemoryMB {
		v.add("memory_mb: must be in [0, %d] (got %d)", MaxMemoryMB, r.MemoryMB)
	}
	if r.DiskMB < 0 || r.DiskMB > MaxDiskMB {
		v.add("disk_mb: must be in [0, %d] (got %d)", MaxDiskMB, r.DiskMB)
	}
	if r.FileDescriptors < 0 {
		v.add("file_descriptors: must be >= 0 (got %d)", r.FileDescriptors)
	}
	if r.Timeout < 0 || r.Timeout > MaxTimeoutSeconds {
		v.add("timeout: must be in [0, %d] seconds (got %d)", MaxTimeoutSeconds, r.Timeout)
	}
	if len(r.Environment) > MaxEnvironmentVariables {
		v.add("environment: at most %d variables (got %d)", MaxEnvironmentVariables, len(r.Environment))
	}
	for i, e := range r.Environment {
		if e.Name == "" {
			v.add("environment[%d].name: is required", i)
		}
	}
	if len(r.EgressRules) > MaxEgressRules {
		v.add("egress_rules: at most %d rules (got %d)", MaxEgressRules, len(r.EgressRules))
	}
	switch r.Lifecycle {
	case LifecycleBuildpack, LifecycleDocker:
	default:
		v.add("lifecycle: must be %q or %q (got %q)", LifecycleBuildpack, LifecycleDocker, r.Lifecycle)
	}
	if len(r.LifecycleData) == 0 {
		v.add("lifecycle_data: is required")
	}
	return v.err()
}

// BuildpackData decodes and validates lifecycle_data as buildpack staging data.
func (r *StagingRequestFromCC) BuildpackData() (BuildpackStagingData, error) {
	var d BuildpackStagingData
	if err := json.Unmarshal(r.LifecycleData, &d); err != nil {
		return d, &ValidationError{Fields: []string{"lifecycle_data: " + err.Error()}}
	}
	v := &ValidationError{}
	if d.AppBitsDownloadURI == "" {
		v.add("lifecycle_data.app_bits_download_uri: is required")
	}
	if d.DropletUploadURI == "" {
		v.add("lifecycle_data.droplet_upload_uri: is required")
	}
	if d.Stack == "" {
		v.add("lifecycle_data.stack: is required")
	} else if !GUIDPattern.MatchString(d.Stack) {
		v.add("lifecycle_data.stack: must match %s (got %q)", GUIDPattern, d.Stack)
	}
	if len(d.Buildpacks) > MaxBuildpacks {
		v.add("lifecycle_data.buildpacks: at most %d (got %d)", MaxBuildpacks, len(d.Buildpacks))
	}
	for i, b := range d.Buildpacks {
		if b.Key == "" {
			v.add("lifecycle_data.buildpacks[%d].key: is required", i)
		}
	}
	return d, v.err()
}

// StagingError is the error of a failed staging.
type StagingError struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

// StagingResponseForCC is POSTed to the controller's completion callback.
type StagingResponseForCC struct {
	Error  *StagingError    `json:"error,omitempty"`
	Result *json.RawMessage `json:"result,omitempty"`
}

// StagingResult is the builder's output metadata (the task's result file),
// in the shape of Diego's buildpack lifecycle.
type StagingResult struct {
	LifecycleType     string            `json:"lifecycle_type"`
	LifecycleMetadata map[string]string `json:"lifecycle_metadata"`
	ProcessTypes      map[string]string `json:"process_types"`
	ExecutionMetadata string            `json:"execution_metadata"`
}

// StagingTaskAnnotation is stored as the staging task's annotation.
type StagingTaskAnnotation struct {
	Lifecycle          string `json:"lifecycle"`
	CompletionCallback string `json:"completion_callback"`
}

// Instance states reported by tps (the controller's view).
const (
	StateStarting = "STARTING"
	StateRunning  = "RUNNING"
	StateCrashed  = "CRASHED"
	StateDown     = "DOWN"
	StateUnknown  = "UNKNOWN"
)

// NetInfo is where an instance is reachable.
type NetInfo struct {
	Address         string        `json:"address"`
	InstanceAddress string        `json:"instance_address,omitempty"`
	Ports           []PortMapping `json:"ports"`
}

// PortMapping maps a container port to the host port that reaches it.
type PortMapping struct {
	ContainerPort uint32 `json:"container_port"`
	HostPort      uint32 `json:"host_port"`
}

// LRPInstance is one instance in tps's answers.
type LRPInstance struct {
	ProcessGUID  string  `json:"process_guid"`
	InstanceGUID string  `json:"instance_guid"`
	CellID       string  `json:"cell_id,omitempty"`
	Index        int32   `json:"index"`
	State        string  `json:"state"`
	Details      string  `json:"details,omitempty"`
	Since        int64   `json:"since"`
	Uptime       int64   `json:"uptime"`
	NetInfo      NetInfo `json:"net_info"`
	// Host and Port are the address and host port of container port 8080
	// (or the first port), as Diego's stats answer gave them.
	Host  string         `json:"host,omitempty"`
	Port  uint32         `json:"port,omitempty"`
	Stats *InstanceStats `json:"stats,omitempty"`
}

// InstanceStats is one instance's usage.
type InstanceStats struct {
	// Time is when the sample was taken (RFC 3339).
	Time string `json:"time"`
	// CPU is the fraction of one core used since the previous sample (or
	// since the container started, for the first sample).
	CPU float64 `json:"cpu"`
	// MemoryBytes, DiskBytes and their quotas are in bytes.
	MemoryBytes uint64 `json:"mem"`
	DiskBytes   uint64 `json:"disk"`
	MemoryQuota uint64 `json:"mem_quota"`
	DiskQuota   uint64 `json:"disk_quota"`
	// Unavailable says why the cell could not measure the instance (empty when it did).
	Unavailable string `json:"unavailable,omitempty"`
}

// CrashedRequest is POSTed to /internal/v4/apps/:process_guid/crashed.
type CrashedRequest struct {
	Instance        string `json:"instance"`
	Index           int32  `json:"index"`
	CellID          string `json:"cell_id"`
	Reason          string `json:"reason"`
	ExitDescription string `json:"exit_description"`
	CrashCount      int32  `json:"crash_count"`
	CrashTimestamp  int64  `json:"crash_timestamp"`
}

// ReschedulingRequest is POSTed to /internal/v4/apps/:process_guid/rescheduling.
type ReschedulingRequest struct {
	Instance string `json:"instance"`
	Index    int32  `json:"index"`
	CellID   string `json:"cell_id"`
	Reason   string `json:"reason"`
}

// ReadinessChangedRequest is POSTed to /internal/v4/apps/:process_guid/readiness_changed.
type ReadinessChangedRequest struct {
	Instance string `json:"instance"`
	Index    int32  `json:"index"`
	CellID   string `json:"cell_id"`
	Ready    bool   `json:"ready"`
}

// Reasons of the watcher's callbacks.
const (
	ReasonCrashed    = "CRASHED"
	ReasonEvacuating = "Cell is being evacuated"
)

// Job statuses of the controller's asynchronous upload jobs.
const (
	JobQueued   = "queued"
	JobRunning  = "running"
	JobFinished = "finished"
	JobFailed   = "failed"
)

// JobResponse is the controller's answer to an async upload and to a job poll.
type JobResponse struct {
	Metadata struct {
		GUID string `json:"guid"`
		URL  string `json:"url"`
	} `json:"metadata"`
	Entity struct {
		GUID   string `json:"guid"`
		Status string `json:"status"`
	} `json:"entity"`
}

// ErrorResponse is the JSON body of every bridge error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// ErrDockerUnsupported refuses docker staging: no registry is reachable here.
var ErrDockerUnsupported = errors.New("lifecycle: docker staging is not supported by this stager (it would need an image registry); stage with the buildpack lifecycle")
