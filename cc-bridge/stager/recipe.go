package stager

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Recipe defaults, Diego's stager's unless noted.
const (
	// Domain is the BBS domain of staging tasks.
	Domain = "cf-app-staging"
	// DefaultStagingTimeout applies when a request gives no timeout.
	DefaultStagingTimeout = 15 * time.Minute
	// CPUWeight is every staging task's CPU weight.
	CPUWeight = 50
	// LogSource tags the staging task's log lines.
	LogSource = "STG"
	// DefaultFileDescriptors is nofile when a request gives none.
	DefaultFileDescriptors = 1024
	// ResultFile is where the builder writes its output metadata.
	ResultFile = "/tmp/result.json"
	// LifecycleDir is where the lifecycle bundle is extracted.
	LifecycleDir = "/tmp/lifecycle"
)

// Container paths of a buildpack staging. The builder's arguments name them
// relative to its working directory "/" (see RecipeOptions): in a real
// container they are these absolute paths, and on the process backend (no
// chroot) they stay inside the container's directory.
const (
	appDir         = "/tmp/app"
	cacheDir       = "/tmp/cache"
	outputCache    = "/tmp/output-cache"
	outputDroplet  = "/tmp/droplet"
	buildpacksDir  = "/tmp/buildpacks"
	builderWorkDir = "/"
)

// RecipeOptions configure the task a staging request becomes.
type RecipeOptions struct {
	// FileServerURL is the base URL of the file server cells download
	// lifecycle bundles from ("http://127.0.0.1:8080").
	FileServerURL string
	// LifecycleBundles maps "<lifecycle>/<stack>" (e.g. "buildpack/cflinuxfs4")
	// to a path under the file server's /v1/static/.
	LifecycleBundles map[string]string
	// UploaderURL is the base URL of cc-uploader, which relays the droplet
	// and the build cache to the controller.
	UploaderURL string
	// CallbackURL is the base URL of this stager, where the BBS posts the
	// completed task (…/v1/staging/<guid>/completed).
	CallbackURL string
	// DefaultTimeout applies when a request has none (default 15 min).
	DefaultTimeout time.Duration
	// Privileged runs staging containers privileged (Diego's operator option).
	Privileged bool
}

// BuildTask turns a staging request into the task definition the BBS runs.
// Docker staging is refused with bm.ErrDockerUnsupported; an invalid request
// or a stack with no lifecycle bundle gives a *bm.ValidationError.
func (o RecipeOptions) BuildTask(stagingGUID string, req *bm.StagingRequestFromCC) (*modelsv1.TaskDefinition, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if req.Lifecycle == bm.LifecycleDocker {
		return nil, bm.ErrDockerUnsupported
	}
	data, err := req.BuildpackData()
	if err != nil {
		return nil, err
	}
	bundleKey := req.Lifecycle + "/" + data.Stack
	bundle, ok := o.LifecycleBundles[bundleKey]
	if !ok {
		return nil, &bm.ValidationError{Fields: []string{fmt.Sprintf("lifecycle_data.stack: no lifecycle bundle for %q is configured (lifecycle_bundles)", bundleKey)}}
	}
	timeout := o.DefaultTimeout
	if timeout <= 0 {
		timeout = DefaultStagingTimeout
	}
	if req.Timeout > 0 {
		timeout = time.Duration(req.Timeout) * time.Second
	}
	nofile := uint64(DefaultFileDescriptors)
	if req.FileDescriptors > 0 {
		nofile = uint64(req.FileDescriptors)
	}

	deps := []*modelsv1.CachedDependency{{
		Name: "lifecycle", From: joinURL(o.FileServerURL, "/v1/static/"+strings.TrimLeft(bundle, "/")),
		To: LifecycleDir, CacheKey: req.Lifecycle + "-" + data.Stack + "-lifecycle", LogSource: LogSource,
	}}
	var order []string
	for _, b := range data.Buildpacks {
		order = append(order, b.Key)
		if b.URL == "" || b.Key == "custom" {
			continue // a git buildpack or one the builder finds itself
		}
		deps = append(deps, &modelsv1.CachedDependency{
			Name: b.Name, From: b.URL, To: buildpacksDir + "/" + keyDir(b.Key), CacheKey: b.Key, LogSource: LogSource,
		})
	}
	skipDetect := len(data.Buildpacks) == 1 && data.Buildpacks[0].SkipDetect

	env := make([]*modelsv1.EnvironmentVariable, 0, len(req.Environment)+1)
	for _, e := range req.Environment {
		env = append(env, &modelsv1.EnvironmentVariable{Name: e.Name, Value: e.Value})
	}
	env = append(env, &modelsv1.EnvironmentVariable{Name: "CF_STACK", Value: data.Stack})

	steps := []*modelsv1.Action{download("app package", data.AppBitsDownloadURI, appDir)}
	if data.BuildArtifactsCacheDownloadURI != "" {
		steps = append(steps, try(download("build artifacts cache", data.BuildArtifactsCacheDownloadURI, cacheDir)))
	}
	builder := &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{
		Path: LifecycleDir + "/builder",
		Args: []string{
			"-buildArtifactsCacheDir=" + rel(cacheDir),
			"-buildDir=" + rel(appDir),
			"-buildpackOrder=" + strings.Join(order, ","),
			"-buildpacksDir=" + rel(buildpacksDir),
			"-outputBuildArtifactsCache=" + rel(outputCache),
			"-outputDroplet=" + rel(outputDroplet),
			"-outputMetadata=" + rel(ResultFile),
			fmt.Sprintf("-skipDetect=%t", skipDetect),
		},
		Dir: builderWorkDir, Env: env, User: "vcap", LogSource: LogSource,
		ResourceLimits: &modelsv1.ResourceLimits{Nofile: nofile},
	}}}
	steps = append(steps, &modelsv1.Action{Action: &modelsv1.Action_EmitProgress{EmitProgress: &modelsv1.EmitProgressAction{
		Action: builder, StartMessage: "Staging...", SuccessMessage: "Staging complete", FailureMessagePrefix: "Staging failed",
	}}})
	uploads := []*modelsv1.Action{upload("droplet", outputDroplet, o.dropletUploadURL(stagingGUID, data.DropletUploadURI, timeout))}
	if data.BuildArtifactsCacheUploadURI != "" {
		uploads = append(uploads, try(upload("build artifacts cache", outputCache, o.cacheUploadURL(req.AppID, data.BuildArtifactsCacheUploadURI, timeout))))
	}
	steps = append(steps, &modelsv1.Action{Action: &modelsv1.Action_Parallel{Parallel: &modelsv1.ParallelAction{Actions: uploads}}})

	annotation, err := json.Marshal(bm.StagingTaskAnnotation{Lifecycle: req.Lifecycle, CompletionCallback: req.CompletionCB})
	if err != nil {
		return nil, fmt.Errorf("encode annotation: %w", err)
	}
	def := &modelsv1.TaskDefinition{
		RootFs:                "preloaded:" + data.Stack,
		EnvironmentVariables:  []*modelsv1.EnvironmentVariable{{Name: "LANG", Value: "en_US.UTF-8"}},
		Action:                timeoutAction(serial(steps...), timeout),
		MemoryMb:              int32(req.MemoryMB),
		DiskMb:                int32(req.DiskMB),
		CpuWeight:             CPUWeight,
		Privileged:            o.Privileged,
		LogSource:             LogSource,
		LogGuid:               req.LogGUID,
		MetricsGuid:           req.LogGUID,
		ResultFile:            ResultFile,
		CompletionCallbackUrl: joinURL(o.CallbackURL, "/v1/staging/"+stagingGUID+"/completed"),
		Annotation:            string(annotation),
		EgressRules:           egress(req.EgressRules),
		CachedDependencies:    deps,
	}
	if req.IsolationSegment != "" {
		def.PlacementTags = []string{req.IsolationSegment}
	}
	return def, nil
}

func (o RecipeOptions) dropletUploadURL(stagingGUID, ccURI string, timeout time.Duration) string {
	q := url.Values{"cc-droplet-upload-uri": {ccURI}, "timeout": {fmt.Sprint(int(timeout / time.Second))}}
	return joinURL(o.UploaderURL, "/v1/droplet/"+stagingGUID) + "?" + q.Encode()
}

func (o RecipeOptions) cacheUploadURL(appID, ccURI string, timeout time.Duration) string {
	q := url.Values{"cc-build-artifacts-upload-uri": {ccURI}, "timeout": {fmt.Sprint(int(timeout / time.Second))}}
	return joinURL(o.UploaderURL, "/v1/build_artifacts/"+appID) + "?" + q.Encode()
}

// keyDir is a buildpack's directory name (the md5 of its key, as Diego's builder expects).
func keyDir(key string) string {
	sum := md5.Sum([]byte(key))
	return hex.EncodeToString(sum[:])
}

func rel(p string) string { return strings.TrimPrefix(p, "/") }

func joinURL(base, path string) string { return strings.TrimRight(base, "/") + path }

func download(artifact, from, to string) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Download{Download: &modelsv1.DownloadAction{
		Artifact: artifact, From: from, To: to, User: "vcap", LogSource: LogSource,
	}}}
}

func upload(artifact, from, to string) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Upload{Upload: &modelsv1.UploadAction{
		Artifact: artifact, From: from, To: to, User: "vcap", LogSource: LogSource,
	}}}
}

func try(a *modelsv1.Action) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Try{Try: &modelsv1.TryAction{Action: a}}}
}

func serial(as ...*modelsv1.Action) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Serial{Serial: &modelsv1.SerialAction{Actions: as}}}
}

func timeoutAction(a *modelsv1.Action, d time.Duration) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Timeout{Timeout: &modelsv1.TimeoutAction{Action: a, TimeoutMs: d.Milliseconds()}}}
}

func egress(rules []bm.EgressRule) []*modelsv1.SecurityGroupRule {
	if len(rules) == 0 {
		return nil
	}
	out := make([]*modelsv1.SecurityGroupRule, len(rules))
	for i, r := range rules {
		out[i] = &modelsv1.SecurityGroupRule{Protocol: r.Protocol, Destinations: r.Destinations, Ports: r.Ports, Log: r.Log}
		if r.PortRange != nil {
			out[i].PortRange = &modelsv1.PortRange{Start: r.PortRange.Start, End: r.PortRange.End}
		}
	}
	return out
}
