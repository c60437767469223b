// Package ccmessages holds the JSON messages a Cloud-Controller-style
// controller sends to nsync: the desire-app request, the task request and the
// bulk fingerprints the bulker pages.
package ccmessages

import "encoding/json"

// EnvironmentVariable is one name/value pair of an app's environment.
type EnvironmentVariable struct {
	// Name is the variable's name.
	Name string `json:"name"`
	// Value is the variable's value.
	Value string `json:"value"`
}

// HTTPRoute is one HTTP route of an app.
type HTTPRoute struct {
	// Hostname is the route's host name.
	Hostname string `json:"hostname"`
	// RouteServiceURL is an optional route service.
	RouteServiceURL string `json:"route_service_url,omitempty"`
	// Port is the container port; 0 means the app's first port.
	Port uint32 `json:"port,omitempty"`
}

// TCPRoute is one TCP route of an app.
type TCPRoute struct {
	// RouterGroupGUID names the TCP router group.
	RouterGroupGUID string `json:"router_group_guid"`
	// ExternalPort is the router's port.
	ExternalPort uint32 `json:"external_port"`
	// ContainerPort is the app's port.
	ContainerPort uint32 `json:"container_port"`
}

// RoutingInfo is an app's routes.
type RoutingInfo struct {
	// HTTPRoutes become the cf-router route key.
	HTTPRoutes []HTTPRoute `json:"http_routes,omitempty"`
	// TCPRoutes become the tcp-router route key.
	TCPRoutes []TCPRoute `json:"tcp_routes,omitempty"`
}

// Health-check types of DesireAppRequestFromCC.HealthCheckType.
const (
	PortHealthCheck = "port"
	HTTPHealthCheck = "http"
	NoneHealthCheck = "none"
)

// DesireAppRequestFromCC is the controller's request to run (or update) an app.
type DesireAppRequestFromCC struct {
	// ProcessGUID identifies this version of the app's process.
	ProcessGUID string `json:"process_guid"`
	// LogGUID tags the app's logs and metrics.
	LogGUID string `json:"log_guid"`
	// ETag is the controller's version; it becomes the LRP's annotation.
	ETag string `json:"etag"`
	// DropletURI is where a buildpack app's droplet is downloaded from.
	DropletURI string `json:"droplet_uri,omitempty"`
	// DropletHash is the droplet's sha1, checked on download when set.
	DropletHash string `json:"droplet_hash,omitempty"`
	// DockerImage is a docker app's image; set instead of DropletURI.
	DockerImage string `json:"docker_image,omitempty"`
	// DockerUser and DockerPassword are registry credentials.
	DockerUser string `json:"docker_user,omitempty"`
	// DockerPassword is DockerUser's password.
	DockerPassword string `json:"docker_password,omitempty"`
	// Stack is the root filesystem of a buildpack app (cflinuxfs4).
	Stack string `json:"stack"`
	// ExecutionMetadata is staging's JSON (docker: user and exposed ports).
	ExecutionMetadata string `json:"execution_metadata,omitempty"`
	// StartCommand is the app's command.
	StartCommand string `json:"start_command"`
	// Environment is the app's environment.
	Environment []EnvironmentVariable `json:"environment,omitempty"`
	// NumInstances is the desired instance count.
	NumInstances int32 `json:"num_instances"`
	// MemoryMB is each instance's memory.
	MemoryMB int32 `json:"memory_mb"`
	// DiskMB is each instance's disk.
	DiskMB int32 `json:"disk_mb"`
	// FileDescriptors is the nofile limit (default 1024).
	FileDescriptors uint64 `json:"file_descriptors,omitempty"`
	// LogSource is the app's log source (default APP).
	LogSource string `json:"log_source,omitempty"`
	// HealthCheckType is port (or empty), http or none.
	HealthCheckType string `json:"health_check_type,omitempty"`
	// HealthCheckHTTPEndpoint is the path an http check requests.
	HealthCheckHTTPEndpoint string `json:"health_check_http_endpoint,omitempty"`
	// HealthCheckTimeoutInSeconds becomes the start timeout.
	HealthCheckTimeoutInSeconds uint32 `json:"health_check_timeout_in_seconds,omitempty"`
	// Ports are the app's ports (default [8080]).
	Ports []uint32 `json:"ports,omitempty"`
	// RoutingInfo is the app's routes.
	RoutingInfo RoutingInfo `json:"routing_info"`
	// AllowSSH adds an SSH daemon beside the app.
	AllowSSH bool `json:"allow_ssh,omitempty"`
	// IsolationSegment becomes the LRP's placement tag.
	IsolationSegment string `json:"isolation_segment,omitempty"`
}

// TaskRequestFromCC is the controller's request to run a one-off task.
type TaskRequestFromCC struct {
	// TaskGUID identifies the task.
	TaskGUID string `json:"task_guid"`
	// LogGUID tags the task's logs.
	LogGUID string `json:"log_guid"`
	// DropletURI is the droplet to run the command in.
	DropletURI string `json:"droplet_uri,omitempty"`
	// DropletHash is the droplet's sha1.
	DropletHash string `json:"droplet_hash,omitempty"`
	// DockerPath is a docker task's image.
	DockerPath string `json:"docker_path,omitempty"`
	// RootFS is the stack of a buildpack task.
	RootFS string `json:"rootfs,omitempty"`
	// Command is the task's command.
	Command string `json:"command"`
	// Environment is the task's environment.
	Environment []EnvironmentVariable `json:"environment,omitempty"`
	// MemoryMB is the task's memory.
	MemoryMB int32 `json:"memory_mb"`
	// DiskMB is the task's disk.
	DiskMB int32 `json:"disk_mb"`
	// CompletionCallbackURL is called when the task completes.
	CompletionCallbackURL string `json:"completion_callback"`
	// LogSource is the task's log source (default APP/TASK).
	LogSource string `json:"log_source,omitempty"`
	// IsolationSegment becomes the task's placement tag.
	IsolationSegment string `json:"isolation_segment,omitempty"`
}

// Fingerprint is one app of a bulk fingerprint page.
type Fingerprint struct {
	// ProcessGUID is the app's process guid.
	ProcessGUID string `json:"process_guid"`
	// ETag is the controller's version of the app.
	ETag string `json:"etag"`
}

// FingerprintsPage is one page of GET /internal/bulk/apps?format=fingerprint.
type FingerprintsPage struct {
	// Fingerprints are the page's apps.
	Fingerprints []Fingerprint `json:"fingerprints"`
	// Token resumes paging after this page.
	Token json.RawMessage `json:"token"`
}

// Controller task states of TaskState.State.
const (
	TaskRunning   = "RUNNING"
	TaskCanceling = "CANCELING"
	TaskSucceeded = "SUCCEEDED"
	TaskFailed    = "FAILED"
)

// TaskState is one task of a bulk task-state page.
type TaskState struct {
	// TaskGUID identifies the task.
	TaskGUID string `json:"task_guid"`
	// State is the controller's state of the task.
	State string `json:"state"`
	// CompletionCallbackURL is where a lost task is reported failed.
	CompletionCallbackURL string `json:"completion_callback"`
}

// TaskStatesPage is one page of GET /internal/v3/bulk/task_states.
type TaskStatesPage struct {
	// TaskStates are the page's tasks.
	TaskStates []TaskState `json:"task_states"`
	// Token resumes paging after this page.
	Token json.RawMessage `json:"token"`
}

// TaskFailResponse is posted to a lost task's completion callback.
type TaskFailResponse struct {
	// TaskGUID identifies the task.
	TaskGUID string `json:"task_guid"`
	// Failed is always true.
	Failed bool `json:"failed"`
	// FailureReason says why.
	FailureReason string `json:"failure_reason"`
}
