// Package recipe turns the controller's desire-app and task requests into
// BBS desired LRPs and task definitions: buildpack apps run the lifecycle's
// launcher over a downloaded droplet, docker apps run their image.
package recipe

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/gavelhq/gavel/nsync/ccmessages"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Domains and route keys nsync writes.
const (
	AppsDomain      = "cf-apps"
	TasksDomain     = "cf-tasks"
	CFRouterKey     = "cf-router"
	TCPRouterKey    = "tcp-router"
	DefaultPort     = 8080
	DefaultNofile   = 1024
	LifecycleDir    = "/tmp/lifecycle"
	TrustedCertsDir = "/etc/cf-system-certificates"
	// MaxRoutes bounds the HTTP plus TCP routes of one app.
	MaxRoutes = 1000
	// MaxPorts bounds the ports of one app.
	MaxPorts = 16
	// MaxEnv bounds the environment variables of one app or task.
	MaxEnv = 1000
)

// Config is what the builders need beyond the request.
type Config struct {
	// FileServerURL is the base URL lifecycle bundles are served from.
	FileServerURL string
	// LifecycleBundles maps a lifecycle ("buildpack/cflinuxfs4", "docker")
	// to its path under FileServerURL.
	LifecycleBundles map[string]string
	// MaxInstances bounds num_instances (the BBS's max).
	MaxInstances int32
	// Privileged runs buildpack apps privileged (never docker apps).
	Privileged bool
}

// FieldError is a refusal naming the request field and the rule.
type FieldError struct {
	// Field is the JSON name of the offending field.
	Field string
	// Rule says what is wrong.
	Rule string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Rule }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Rule: fmt.Sprintf(format, args...)}
}

// CPUWeight is 100 × clamp(memory, 128, 8192) ÷ 8192.
func CPUWeight(memoryMB int32) uint32 {
	m := min(max(memoryMB, 128), 8192)
	return uint32(100 * m / 8192)
}

// Routes builds the cf-router and tcp-router keys; both are always present.
func Routes(req *ccmessages.DesireAppRequestFromCC) (map[string]string, error) {
	if n := len(req.RoutingInfo.HTTPRoutes) + len(req.RoutingInfo.TCPRoutes); n > MaxRoutes {
		return nil, fieldErr("routing_info", "must hold at most %d routes (got %d)", MaxRoutes, n)
	}
	ports := appPorts(req)
	type group struct {
		Hostnames       []string `json:"hostnames"`
		Port            uint32   `json:"port"`
		RouteServiceURL string   `json:"route_service_url,omitempty"`
	}
	type gkey struct {
		port uint32
		rs   string
	}
	groups := map[gkey]*group{}
	var order []gkey
	for i, r := range req.RoutingInfo.HTTPRoutes {
		if r.Hostname == "" {
			return nil, fieldErr(fmt.Sprintf("routing_info.http_routes[%d].hostname", i), "is required")
		}
		p := r.Port
		if p == 0 {
			p = ports[0]
		}
		k := gkey{p, r.RouteServiceURL}
		g, ok := groups[k]
		if !ok {
			g = &group{Port: p, RouteServiceURL: r.RouteServiceURL, Hostnames: []string{}}
			groups[k] = g
			order = append(order, k)
		}
		g.Hostnames = append(g.Hostnames, r.Hostname)
	}
	http := make([]*group, 0, len(order))
	for _, k := range order {
		http = append(http, groups[k])
	}
	tcp := req.RoutingInfo.TCPRoutes
	if tcp == nil {
		tcp = []ccmessages.TCPRoute{}
	}
	hb, err := json.Marshal(http)
	if err != nil {
		return nil, fmt.Errorf("encode cf-router: %w", err)
	}
	tb, err := json.Marshal(tcp)
	if err != nil {
		return nil, fmt.Errorf("encode tcp-router: %w", err)
	}
	return map[string]string{CFRouterKey: string(hb), TCPRouterKey: string(tb)}, nil
}

func appPorts(req *ccmessages.DesireAppRequestFromCC) []uint32 {
	if len(req.Ports) > 0 {
		return req.Ports
	}
	return []uint32{DefaultPort}
}

func env(field string, in []ccmessages.EnvironmentVariable) ([]*modelsv1.EnvironmentVariable, error) {
	if len(in) > MaxEnv {
		return nil, fieldErr(field, "must hold at most %d variables (got %d)", MaxEnv, len(in))
	}
	out := make([]*modelsv1.EnvironmentVariable, 0, len(in))
	for i, e := range in {
		if e.Name == "" {
			return nil, fieldErr(fmt.Sprintf("%s[%d].name", field, i), "is required")
		}
		out = append(out, &modelsv1.EnvironmentVariable{Name: e.Name, Value: e.Value})
	}
	return out, nil
}

// dockerMetadata is the part of a docker app's execution metadata nsync reads.
type dockerMetadata struct {
	User         string `json:"user"`
	ExposedPorts []struct {
		Port     uint32 `json:"Port"`
		Protocol string `json:"Protocol"`
	} `json:"ports"`
}

// DesiredLRP builds the desired LRP of a buildpack or docker app (docker
// when docker_image is set).
func (c Config) DesiredLRP(req *ccmessages.DesireAppRequestFromCC) (*modelsv1.DesiredLRP, error) {
	if req.ProcessGUID == "" {
		return nil, fieldErr("process_guid", "is required")
	}
	if req.NumInstances < 0 {
		return nil, fieldErr("num_instances", "must be >= 0 (got %d)", req.NumInstances)
	}
	if c.MaxInstances > 0 && req.NumInstances > c.MaxInstances {
		return nil, fieldErr("num_instances", "must be at most %d (got %d)", c.MaxInstances, req.NumInstances)
	}
	if req.MemoryMB < 0 {
		return nil, fieldErr("memory_mb", "must be >= 0 (got %d)", req.MemoryMB)
	}
	if req.DiskMB < 0 {
		return nil, fieldErr("disk_mb", "must be >= 0 (got %d)", req.DiskMB)
	}
	if len(req.Ports) > MaxPorts {
		return nil, fieldErr("ports", "must hold at most %d ports (got %d)", MaxPorts, len(req.Ports))
	}
	docker := req.DockerImage != ""
	if docker && req.DropletURI != "" {
		return nil, fieldErr("docker_image", "set either docker_image or droplet_uri, not both")
	}
	if !docker && req.DropletURI == "" {
		return nil, fieldErr("droplet_uri", "is required unless docker_image is set")
	}
	switch req.HealthCheckType {
	case "", ccmessages.PortHealthCheck, ccmessages.HTTPHealthCheck, ccmessages.NoneHealthCheck:
	default:
		return nil, fieldErr("health_check_type", "must be port, http or none (got %q)", req.HealthCheckType)
	}
	routes, err := Routes(req)
	if err != nil {
		return nil, err
	}
	appEnv, err := env("environment", req.Environment)
	if err != nil {
		return nil, err
	}
	ports := appPorts(req)
	user := "vcap"
	var rootFS, lifecycle string
	if docker {
		rootFS = dockerRootFS(req.DockerImage)
		lifecycle = "docker"
		if req.ExecutionMetadata != "" {
			var md dockerMetadata
			if err := json.Unmarshal([]byte(req.ExecutionMetadata), &md); err != nil {
				return nil, fieldErr("execution_metadata", "is not valid JSON: %v", err)
			}
			if md.User != "" {
				user = md.User
			} else {
				user = "root"
			}
			if len(req.Ports) == 0 && len(md.ExposedPorts) > 0 {
				ports = nil
				for _, p := range md.ExposedPorts {
					if p.Protocol == "" || p.Protocol == "tcp" {
						ports = append(ports, p.Port)
					}
				}
			}
		} else {
			user = "root"
		}
	} else {
		if req.Stack == "" {
			return nil, fieldErr("stack", "is required for a buildpack app")
		}
		rootFS = "preloaded:" + req.Stack
		lifecycle = "buildpack/" + req.Stack
	}
	bundle, ok := c.LifecycleBundles[lifecycle]
	if !ok {
		return nil, fieldErr(stackField(docker), "no lifecycle bundle configured for %q", lifecycle)
	}
	nofile := req.FileDescriptors
	if nofile == 0 {
		nofile = DefaultNofile
	}
	logSource := req.LogSource
	if logSource == "" {
		logSource = "APP"
	}
	runEnv := append(append([]*modelsv1.EnvironmentVariable(nil), appEnv...),
		&modelsv1.EnvironmentVariable{Name: "PORT", Value: fmt.Sprint(ports[0])},
		&modelsv1.EnvironmentVariable{Name: "VCAP_APP_PORT", Value: fmt.Sprint(ports[0])},
		&modelsv1.EnvironmentVariable{Name: "VCAP_APP_HOST", Value: "0.0.0.0"},
	)
	launcher := &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{
		Path:           LifecycleDir + "/launcher",
		Args:           []string{"app", req.StartCommand, req.ExecutionMetadata},
		Env:            runEnv,
		ResourceLimits: &modelsv1.ResourceLimits{Nofile: nofile},
		User:           user,
		LogSource:      logSource,
	}}}
	lrp := &modelsv1.DesiredLRP{
		ProcessGuid: req.ProcessGUID,
		Domain:      AppsDomain,
		RootFs:      rootFS,
		Instances:   req.NumInstances,
		EnvironmentVariables: []*modelsv1.EnvironmentVariable{
			{Name: "LANG", Value: "en_US.UTF-8"},
		},
		CachedDependencies: []*modelsv1.CachedDependency{{
			Name:     "lifecycle",
			From:     strings.TrimSuffix(c.FileServerURL, "/") + "/v1/static/" + strings.TrimPrefix(bundle, "/"),
			To:       LifecycleDir,
			CacheKey: lifecycle + "-lifecycle",
		}},
		Action:                        &modelsv1.Action{Action: &modelsv1.Action_Codependent{Codependent: &modelsv1.CodependentAction{Actions: []*modelsv1.Action{launcher}}}},
		MemoryMb:                      req.MemoryMB,
		DiskMb:                        req.DiskMB,
		CpuWeight:                     CPUWeight(req.MemoryMB),
		Privileged:                    c.Privileged && !docker,
		Ports:                         ports,
		Routes:                        routes,
		LogSource:                     "CELL",
		LogGuid:                       req.LogGUID,
		MetricsGuid:                   req.LogGUID,
		Annotation:                    req.ETag,
		TrustedSystemCertificatesPath: TrustedCertsDir,
	}
	if req.AllowSSH {
		action, route, err := sshd(user, runEnv)
		if err != nil {
			return nil, err
		}
		cd := lrp.Action.GetCodependent()
		cd.Actions = append(cd.Actions, action)
		lrp.Ports = append(append([]uint32(nil), lrp.Ports...), SSHPort)
		lrp.Routes[SSHRouteKey] = route
	}
	if !docker {
		dl := &modelsv1.DownloadAction{From: req.DropletURI, To: ".", CacheKey: "droplets-" + req.ProcessGUID, User: user}
		if req.DropletHash != "" {
			dl.ChecksumAlgorithm, dl.ChecksumValue = "sha1", req.DropletHash
		}
		lrp.Setup = &modelsv1.Action{Action: &modelsv1.Action_Serial{Serial: &modelsv1.SerialAction{
			Actions: []*modelsv1.Action{{Action: &modelsv1.Action_Download{Download: dl}}},
		}}}
	} else {
		lrp.ImageUsername, lrp.ImagePassword = req.DockerUser, req.DockerPassword
	}
	if req.HealthCheckTimeoutInSeconds > 0 {
		lrp.StartTimeoutMs = int64(req.HealthCheckTimeoutInSeconds) * 1000
	}
	if req.HealthCheckType != ccmessages.NoneHealthCheck {
		lrp.Monitor = monitor(req, ports, user)
	}
	if req.IsolationSegment != "" {
		lrp.PlacementTags = []string{req.IsolationSegment}
	}
	return lrp, nil
}

func stackField(docker bool) string {
	if docker {
		return "docker_image"
	}
	return "stack"
}

// monitor runs one healthcheck per port in parallel, in a 10-minute timeout.
func monitor(req *ccmessages.DesireAppRequestFromCC, ports []uint32, user string) *modelsv1.Action {
	checks := make([]*modelsv1.Action, 0, len(ports))
	for _, p := range ports {
		args := []string{fmt.Sprintf("-port=%d", p)}
		if req.HealthCheckType == ccmessages.HTTPHealthCheck {
			args = append(args, "-uri="+req.HealthCheckHTTPEndpoint)
		}
		checks = append(checks, &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{
			Path: LifecycleDir + "/healthcheck", Args: args, User: user,
			LogSource: "HEALTH", SuppressLogOutput: true,
		}}})
	}
	return &modelsv1.Action{Action: &modelsv1.Action_Timeout{Timeout: &modelsv1.TimeoutAction{
		TimeoutMs: 10 * 60 * 1000,
		Action:    &modelsv1.Action{Action: &modelsv1.Action_Parallel{Parallel: &modelsv1.ParallelAction{Actions: checks}}},
	}}}
}

func dockerRootFS(image string) string {
	if strings.Contains(image, "://") {
		return image
	}
	return "docker:///" + image
}

// Update is the part of a desire request that may change an existing LRP:
// instances, the cf-router and tcp-router route keys (other keys of
// existing, such as diego-ssh, are kept) and the annotation.
func Update(existing map[string]string, req *ccmessages.DesireAppRequestFromCC, maxInstances int32) (*modelsv1.DesiredLRPUpdate, error) {
	if req.NumInstances < 0 || (maxInstances > 0 && req.NumInstances > maxInstances) {
		return nil, fieldErr("num_instances", "must be in [0, %d] (got %d)", maxInstances, req.NumInstances)
	}
	routes, err := Routes(req)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(existing))
	for k := range existing {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k != CFRouterKey && k != TCPRouterKey {
			routes[k] = existing[k]
		}
	}
	inst, ann := req.NumInstances, req.ETag
	return &modelsv1.DesiredLRPUpdate{Instances: &inst, Routes: routes, SetRoutes: true, Annotation: &ann}, nil
}

// Task builds the task definition of a controller task request.
func (c Config) Task(req *ccmessages.TaskRequestFromCC) (*modelsv1.TaskDefinition, error) {
	if req.TaskGUID == "" {
		return nil, fieldErr("task_guid", "is required")
	}
	if req.Command == "" {
		return nil, fieldErr("command", "is required")
	}
	if req.MemoryMB < 0 {
		return nil, fieldErr("memory_mb", "must be >= 0 (got %d)", req.MemoryMB)
	}
	if req.DiskMB < 0 {
		return nil, fieldErr("disk_mb", "must be >= 0 (got %d)", req.DiskMB)
	}
	taskEnv, err := env("environment", req.Environment)
	if err != nil {
		return nil, err
	}
	docker := req.DockerPath != ""
	var rootFS, lifecycle, user string
	switch {
	case docker && req.DropletURI != "":
		return nil, fieldErr("docker_path", "set either docker_path or droplet_uri, not both")
	case docker:
		rootFS, lifecycle, user = dockerRootFS(req.DockerPath), "docker", "root"
	case req.DropletURI == "":
		return nil, fieldErr("droplet_uri", "is required unless docker_path is set")
	case req.RootFS == "":
		return nil, fieldErr("rootfs", "is required for a buildpack task")
	default:
		rootFS, lifecycle, user = "preloaded:"+req.RootFS, "buildpack/"+req.RootFS, "vcap"
	}
	bundle, ok := c.LifecycleBundles[lifecycle]
	if !ok {
		field := "rootfs"
		if docker {
			field = "docker_path"
		}
		return nil, fieldErr(field, "no lifecycle bundle configured for %q", lifecycle)
	}
	logSource := req.LogSource
	if logSource == "" {
		logSource = "APP/TASK"
	}
	run := &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{
		Path: LifecycleDir + "/launcher", Args: []string{"app", req.Command, ""},
		Env: taskEnv, User: user, LogSource: logSource,
	}}}
	var action *modelsv1.Action
	if docker {
		action = run
	} else {
		dl := &modelsv1.DownloadAction{From: req.DropletURI, To: ".", User: user}
		if req.DropletHash != "" {
			dl.ChecksumAlgorithm, dl.ChecksumValue = "sha1", req.DropletHash
		}
		action = &modelsv1.Action{Action: &modelsv1.Action_Serial{Serial: &modelsv1.SerialAction{Actions: []*modelsv1.Action{
			{Action: &modelsv1.Action_Download{Download: dl}}, run,
		}}}}
	}
	def := &modelsv1.TaskDefinition{
		RootFs: rootFS, Action: action, MemoryMb: req.MemoryMB, DiskMb: req.DiskMB,
		CpuWeight: CPUWeight(req.MemoryMB), LogSource: logSource, LogGuid: req.LogGUID, MetricsGuid: req.LogGUID,
		CompletionCallbackUrl: req.CompletionCallbackURL,
		CachedDependencies: []*modelsv1.CachedDependency{{
			Name:     "lifecycle",
			From:     strings.TrimSuffix(c.FileServerURL, "/") + "/v1/static/" + strings.TrimPrefix(bundle, "/"),
			To:       LifecycleDir,
			CacheKey: lifecycle + "-lifecycle",
		}},
		TrustedSystemCertificatesPath: TrustedCertsDir,
	}
	if req.IsolationSegment != "" {
		def.PlacementTags = []string{req.IsolationSegment}
	}
	return def, nil
}

// IsFieldError says whether err is a refusal of the request (never retryable).
func IsFieldError(err error) bool {
	var fe *FieldError
	return errors.As(err, &fe)
}
