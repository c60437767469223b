package models

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Limits of the data model, as in Diego.
const (
	MaxAnnotationBytes        = 10 * 1024
	MaxRoutesBytes            = 128 * 1024
	MaxVolumeMountedFileBytes = 1024 * 1024
	MaxReasonBytes            = 1024
	MaxCPUWeight              = 100
	MaxTaskResultBytes        = 10 * 1024
)

var guidPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// namePattern is what a domain or cell id may hold: no slashes, so it is safe in an etcd key.
var namePattern = regexp.MustCompile(`^[a-zA-Z0-9_.:-]+$`)

func checkGUID(v *ValidationError, field, guid string) {
	switch {
	case guid == "":
		v.Add(field, "is required")
	case len(guid) > MaxGUIDBytes:
		v.Add(field, "must be at most %d bytes (got %d)", MaxGUIDBytes, len(guid))
	case !guidPattern.MatchString(guid):
		v.Add(field, "must match ^[a-zA-Z0-9_-]+$ (got %q)", guid)
	}
}

func checkName(v *ValidationError, field, name string) {
	switch {
	case name == "":
		v.Add(field, "is required")
	case len(name) > MaxNameBytes:
		v.Add(field, "must be at most %d bytes (got %d)", MaxNameBytes, len(name))
	case !namePattern.MatchString(name):
		v.Add(field, "must match ^[a-zA-Z0-9_.:-]+$ (got %q)", name)
	}
}

func checkRootFS(v *ValidationError, field, rootfs string) {
	if rootfs == "" {
		v.Add(field, "is required")
		return
	}
	u, err := url.Parse(rootfs)
	if err != nil || u.Scheme == "" {
		v.Add(field, "must be a URL with a scheme, such as preloaded:cflinuxfs4 or docker:///busybox (got %q)", rootfs)
	}
}

func checkNonNegative(v *ValidationError, field string, n int64) {
	if n < 0 {
		v.Add(field, "must be >= 0 (got %d)", n)
	}
}

func checkAnnotation(v *ValidationError, field, annotation string) {
	if len(annotation) > MaxAnnotationBytes {
		v.Add(field, "must be at most %d bytes (got %d)", MaxAnnotationBytes, len(annotation))
	}
}

func checkRoutes(v *ValidationError, field string, routes map[string]string) {
	total := 0
	for name, doc := range routes {
		total += len(name) + len(doc)
		if name == "" {
			v.Add(field, "router names must not be empty")
		}
		if !json.Valid([]byte(doc)) {
			v.Add(fmt.Sprintf("%s[%q]", field, name), "must be a JSON document")
		}
	}
	if total > MaxRoutesBytes {
		v.Add(field, "must be at most %d bytes in all (got %d)", MaxRoutesBytes, total)
	}
}

func checkEnv(v *ValidationError, field string, env []*modelsv1.EnvironmentVariable) {
	if len(env) > MaxEnvVars {
		v.Add(field, "must hold at most %d items (got %d)", MaxEnvVars, len(env))
		return
	}
	for i, e := range env {
		checkEnvName(v, fmt.Sprintf("%s[%d].name", field, i), e.GetName())
		if strings.ContainsRune(e.GetValue(), 0) {
			v.Add(fmt.Sprintf("%s[%d].value", field, i), "must not contain NUL")
		}
	}
}

func checkMetricTags(v *ValidationError, field string, tags map[string]*modelsv1.MetricTagValue) {
	for name, tag := range tags {
		f := fmt.Sprintf("%s[%q]", field, name)
		hasStatic := tag.GetStatic() != ""
		hasDynamic := tag.GetDynamic() != modelsv1.MetricTagValue_DYNAMIC_VALUE_UNSPECIFIED
		if hasStatic == hasDynamic {
			v.Add(f, "must set exactly one of static or dynamic")
		}
	}
}

func checkPlacementTags(v *ValidationError, field string, tags []string) {
	for i, t := range tags {
		if t == "" {
			v.Add(fmt.Sprintf("%s[%d]", field, i), "must not be empty")
		}
	}
}

func checkEgressRules(v *ValidationError, field string, rules []*modelsv1.SecurityGroupRule) {
	for i, r := range rules {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch r.GetProtocol() {
		case "tcp", "udp", "icmp", "all":
		default:
			v.Add(f+".protocol", "must be one of tcp, udp, icmp, all (got %q)", r.GetProtocol())
		}
		if len(r.GetDestinations()) == 0 {
			v.Add(f+".destinations", "must not be empty")
		}
		if len(r.GetPorts()) > 0 && r.GetPortRange() != nil {
			v.Add(f, "must not set both ports and port_range")
		}
		for j, p := range r.GetPorts() {
			if p == 0 || p > 65535 {
				v.Add(fmt.Sprintf("%s.ports[%d]", f, j), "must be in 1-65535 (got %d)", p)
			}
		}
		if pr := r.GetPortRange(); pr != nil && (pr.GetStart() == 0 || pr.GetEnd() > 65535 || pr.GetStart() > pr.GetEnd()) {
			v.Add(f+".port_range", "must satisfy 1 <= start <= end <= 65535")
		}
	}
}

func checkCachedDependencies(v *ValidationError, field string, deps []*modelsv1.CachedDependency) {
	for i, d := range deps {
		f := fmt.Sprintf("%s[%d]", field, i)
		if d.GetFrom() == "" {
			v.Add(f+".from", "is required")
		}
		if d.GetTo() == "" {
			v.Add(f+".to", "is required")
		}
		checkChecksum(v, f, d.GetChecksumAlgorithm(), d.GetChecksumValue())
	}
}

func checkChecksum(v *ValidationError, field, algorithm, value string) {
	switch algorithm {
	case "":
		if value != "" {
			v.Add(field+".checksum_algorithm", "is required when checksum_value is set")
		}
	case "md5", "sha1", "sha256":
		if value == "" {
			v.Add(field+".checksum_value", "is required when checksum_algorithm is set")
		}
	default:
		v.Add(field+".checksum_algorithm", "must be one of md5, sha1, sha256 (got %q)", algorithm)
	}
}

func checkImageLayers(v *ValidationError, field string, layers []*modelsv1.ImageLayer) {
	for i, l := range layers {
		f := fmt.Sprintf("%s[%d]", field, i)
		if l.GetUrl() == "" {
			v.Add(f+".url", "is required")
		}
		if l.GetDestinationPath() == "" {
			v.Add(f+".destination_path", "is required")
		}
		if l.GetMediaType() == modelsv1.ImageLayer_MEDIA_TYPE_UNSPECIFIED {
			v.Add(f+".media_type", "is required")
		}
		switch l.GetDigestAlgorithm() {
		case "":
			if l.GetLayerType() == modelsv1.ImageLayer_LAYER_TYPE_EXCLUSIVE {
				v.Add(f+".digest_algorithm", "is required for an exclusive layer")
			}
		case "sha256", "sha512":
			if l.GetDigestValue() == "" {
				v.Add(f+".digest_value", "is required when digest_algorithm is set")
			}
		default:
			v.Add(f+".digest_algorithm", "must be sha256 or sha512 (got %q)", l.GetDigestAlgorithm())
		}
	}
}

func checkVolumeMounts(v *ValidationError, field string, mounts []*modelsv1.VolumeMount) {
	for i, m := range mounts {
		f := fmt.Sprintf("%s[%d]", field, i)
		if m.GetDriver() == "" {
			v.Add(f+".driver", "is required")
		}
		if m.GetContainerDir() == "" {
			v.Add(f+".container_dir", "is required")
		}
		if m.GetMode() != "r" && m.GetMode() != "rw" {
			v.Add(f+".mode", "must be r or rw (got %q)", m.GetMode())
		}
		if m.GetShared().GetVolumeId() == "" {
			v.Add(f+".shared.volume_id", "is required")
		}
	}
}

func checkFiles(v *ValidationError, field string, files []*modelsv1.File) {
	total := 0
	for i, file := range files {
		if file.GetPath() == "" {
			v.Add(fmt.Sprintf("%s[%d].path", field, i), "is required")
		}
		total += len(file.GetContent())
	}
	if total > MaxVolumeMountedFileBytes {
		v.Add(field, "must hold at most %d bytes in all (got %d)", MaxVolumeMountedFileBytes, total)
	}
}

func checkLogRateLimit(v *ValidationError, field string, l *modelsv1.LogRateLimit) {
	if l != nil && l.GetBytesPerSecond() < -1 {
		v.Add(field+".bytes_per_second", "must be >= -1 (got %d)", l.GetBytesPerSecond())
	}
}

func checkCPUWeight(v *ValidationError, field string, w uint32) {
	if w > MaxCPUWeight {
		v.Add(field, "must be at most %d (got %d)", MaxCPUWeight, w)
	}
}

func checkImageCredentials(v *ValidationError, field, user, password string) {
	if (user == "") != (password == "") {
		v.Add(field, "image_username and image_password must be given together")
	}
}

func checkPort(v *ValidationError, field string, port uint32) {
	if port == 0 || port > 65535 {
		v.Add(field, "must be in 1-65535 (got %d)", port)
	}
}

// checkAction validates an action tree; required says whether a nil action
// is an error. A tree beyond MaxActionDepth or MaxActionNodes is refused
// before it is walked.
func checkAction(v *ValidationError, field string, a *modelsv1.Action, required bool) {
	if a != nil && !checkActionTree(v, field, a) {
		return
	}
	checkActionNode(v, field, a, required)
}

func checkActionNode(v *ValidationError, field string, a *modelsv1.Action, required bool) {
	if a == nil || a.GetAction() == nil {
		if required {
			v.Add(field, "is required")
		} else if a != nil {
			v.Add(field, "must set exactly one action")
		}
		return
	}
	switch x := a.GetAction().(type) {
	case *modelsv1.Action_Download:
		f := field + ".download"
		if x.Download.GetFrom() == "" {
			v.Add(f+".from", "is required")
		} else if u, err := url.Parse(x.Download.GetFrom()); err != nil || u.Scheme == "" {
			v.Add(f+".from", "must be a URL (got %q)", x.Download.GetFrom())
		}
		if x.Download.GetTo() == "" {
			v.Add(f+".to", "is required")
		}
		checkChecksum(v, f, x.Download.GetChecksumAlgorithm(), x.Download.GetChecksumValue())
	case *modelsv1.Action_Upload:
		f := field + ".upload"
		if x.Upload.GetFrom() == "" {
			v.Add(f+".from", "is required")
		}
		if x.Upload.GetTo() == "" {
			v.Add(f+".to", "is required")
		}
	case *modelsv1.Action_Run:
		f := field + ".run"
		if x.Run.GetPath() == "" {
			v.Add(f+".path", "is required")
		}
		checkEnv(v, f+".env", x.Run.GetEnv())
		checkFiles(v, f+".volume_mounted_files", x.Run.GetVolumeMountedFiles())
	case *modelsv1.Action_Timeout:
		f := field + ".timeout"
		checkActionNode(v, f+".action", x.Timeout.GetAction(), true)
		if x.Timeout.GetTimeoutMs() <= 0 {
			v.Add(f+".timeout_ms", "must be > 0 (got %d)", x.Timeout.GetTimeoutMs())
		}
	case *modelsv1.Action_EmitProgress:
		checkActionNode(v, field+".emit_progress.action", x.EmitProgress.GetAction(), true)
	case *modelsv1.Action_Try:
		checkActionNode(v, field+".try.action", x.Try.GetAction(), true)
	case *modelsv1.Action_Parallel:
		checkActionList(v, field+".parallel.actions", x.Parallel.GetActions())
	case *modelsv1.Action_Serial:
		checkActionList(v, field+".serial.actions", x.Serial.GetActions())
	case *modelsv1.Action_Codependent:
		checkActionList(v, field+".codependent.actions", x.Codependent.GetActions())
	}
}

func checkActionList(v *ValidationError, field string, actions []*modelsv1.Action) {
	if len(actions) == 0 {
		v.Add(field, "must hold at least one action")
	}
	for i, a := range actions {
		checkActionNode(v, fmt.Sprintf("%s[%d]", field, i), a, true)
	}
}

func checkChecks(v *ValidationError, field string, checks []*modelsv1.Check) {
	for i, c := range checks {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch x := c.GetCheck().(type) {
		case *modelsv1.Check_TcpCheck:
			checkPort(v, f+".tcp_check.port", x.TcpCheck.GetPort())
		case *modelsv1.Check_HttpCheck:
			checkPort(v, f+".http_check.port", x.HttpCheck.GetPort())
		default:
			v.Add(f, "must set exactly one of tcp_check or http_check")
		}
	}
}

// Limits are the configurable bounds of validation.
type Limits struct {
	// MaxInstances bounds a desired LRP's instances (default DefaultMaxInstances).
	MaxInstances int32
}

func (l Limits) withDefaults() Limits {
	if l.MaxInstances <= 0 {
		l.MaxInstances = DefaultMaxInstances
	}
	return l
}

func checkInstances(v *ValidationError, field string, n int32, l Limits) {
	checkNonNegative(v, field, int64(n))
	if max := l.withDefaults().MaxInstances; n > max {
		v.Add(field, "must be at most %d (got %d; the BBS's max_desired_instances)", max, n)
	}
}

// ValidateDesiredLRP checks a desired LRP as given to DesireLRP, with the default limits.
func ValidateDesiredLRP(d *modelsv1.DesiredLRP) error {
	return ValidateDesiredLRPWithin(d, Limits{})
}

// ValidateDesiredLRPWithin checks a desired LRP as given to DesireLRP, with limits l.
func ValidateDesiredLRPWithin(d *modelsv1.DesiredLRP, l Limits) error {
	v := &ValidationError{}
	if d == nil {
		v.Add("desired_lrp", "is required")
		return v
	}
	const p = "desired_lrp."
	if checkFieldBounds(v, "desired_lrp", d.ProtoReflect()); len(v.Errors) > 0 {
		return v // beyond a bound: the other rules would only repeat it
	}
	checkGUID(v, p+"process_guid", d.GetProcessGuid())
	checkName(v, p+"domain", d.GetDomain())
	checkRootFS(v, p+"root_fs", d.GetRootFs())
	checkInstances(v, p+"instances", d.GetInstances(), l)
	checkNonNegative(v, p+"memory_mb", int64(d.GetMemoryMb()))
	checkNonNegative(v, p+"disk_mb", int64(d.GetDiskMb()))
	checkNonNegative(v, p+"max_pids", int64(d.GetMaxPids()))
	checkNonNegative(v, p+"start_timeout_ms", d.GetStartTimeoutMs())
	checkCPUWeight(v, p+"cpu_weight", d.GetCpuWeight())
	checkAnnotation(v, p+"annotation", d.GetAnnotation())
	checkRoutes(v, p+"routes", d.GetRoutes())
	checkEnv(v, p+"environment_variables", d.GetEnvironmentVariables())
	checkAction(v, p+"setup", d.GetSetup(), false)
	checkAction(v, p+"action", d.GetAction(), true)
	checkAction(v, p+"monitor", d.GetMonitor(), false)
	if d.GetMonitor() != nil && len(d.GetCheckDefinition().GetChecks()) > 0 {
		v.Add(p+"monitor", "must not be set together with check_definition.checks")
	}
	for i, port := range d.GetPorts() {
		checkPort(v, fmt.Sprintf("%sports[%d]", p, i), port)
	}
	checkChecks(v, p+"check_definition.checks", d.GetCheckDefinition().GetChecks())
	checkChecks(v, p+"check_definition.readiness_checks", d.GetCheckDefinition().GetReadinessChecks())
	checkEgressRules(v, p+"egress_rules", d.GetEgressRules())
	checkCachedDependencies(v, p+"cached_dependencies", d.GetCachedDependencies())
	checkImageLayers(v, p+"image_layers", d.GetImageLayers())
	checkVolumeMounts(v, p+"volume_mounts", d.GetVolumeMounts())
	checkFiles(v, p+"volume_mounted_files", d.GetVolumeMountedFiles())
	checkLogRateLimit(v, p+"log_rate_limit", d.GetLogRateLimit())
	checkMetricTags(v, p+"metric_tags", d.GetMetricTags())
	checkPlacementTags(v, p+"placement_tags", d.GetPlacementTags())
	checkImageCredentials(v, p+"image_username", d.GetImageUsername(), d.GetImagePassword())
	for i, s := range d.GetSidecars() {
		f := fmt.Sprintf("%ssidecars[%d]", p, i)
		checkAction(v, f+".action", s.GetAction(), true)
		checkNonNegative(v, f+".memory_mb", int64(s.GetMemoryMb()))
		checkNonNegative(v, f+".disk_mb", int64(s.GetDiskMb()))
	}
	if d.GetModificationTag() != nil {
		v.Add(p+"modification_tag", "is set by the BBS and must be empty")
	}
	if len(v.Errors) == 0 {
		checkRecordSize(v, "desired_lrp", d.ProtoReflect())
	}
	return v.Err()
}

// ValidateDesiredLRPUpdate checks an UpdateDesiredLRP request, with the default limits.
func ValidateDesiredLRPUpdate(processGUID string, u *modelsv1.DesiredLRPUpdate) error {
	return ValidateDesiredLRPUpdateWithin(processGUID, u, Limits{})
}

// ValidateDesiredLRPUpdateWithin checks an UpdateDesiredLRP request, with limits l.
func ValidateDesiredLRPUpdateWithin(processGUID string, u *modelsv1.DesiredLRPUpdate, l Limits) error {
	v := &ValidationError{}
	checkGUID(v, "process_guid", processGUID)
	if u == nil {
		v.Add("update", "is required")
		return v
	}
	if checkFieldBounds(v, "update", u.ProtoReflect()); len(v.Errors) > 0 {
		return v
	}
	if u.Instances != nil {
		checkInstances(v, "update.instances", u.GetInstances(), l)
	}
	if u.Annotation != nil {
		checkAnnotation(v, "update.annotation", u.GetAnnotation())
	}
	if u.GetSetRoutes() {
		checkRoutes(v, "update.routes", u.GetRoutes())
	} else if len(u.GetRoutes()) > 0 {
		v.Add("update.set_routes", "must be true when routes are given")
	}
	if u.GetSetMetricTags() {
		checkMetricTags(v, "update.metric_tags", u.GetMetricTags())
	} else if len(u.GetMetricTags()) > 0 {
		v.Add("update.set_metric_tags", "must be true when metric_tags are given")
	}
	if (u.ImageUsername != nil) != (u.ImagePassword != nil) {
		v.Add("update.image_username", "image_username and image_password must be given together")
	}
	if len(v.Errors) == 0 {
		checkRecordSize(v, "update", u.ProtoReflect())
	}
	return v.Err()
}

// ValidateTask checks a DesireTask request.
func ValidateTask(taskGUID, domain string, def *modelsv1.TaskDefinition) error {
	v := &ValidationError{}
	checkGUID(v, "task_guid", taskGUID)
	checkName(v, "domain", domain)
	if def == nil {
		v.Add("definition", "is required")
		return v
	}
	if checkFieldBounds(v, "definition", def.ProtoReflect()); len(v.Errors) > 0 {
		return v
	}
	const p = "definition."
	checkRootFS(v, p+"root_fs", def.GetRootFs())
	checkAction(v, p+"action", def.GetAction(), true)
	checkNonNegative(v, p+"memory_mb", int64(def.GetMemoryMb()))
	checkNonNegative(v, p+"disk_mb", int64(def.GetDiskMb()))
	checkNonNegative(v, p+"max_pids", int64(def.GetMaxPids()))
	checkCPUWeight(v, p+"cpu_weight", def.GetCpuWeight())
	checkAnnotation(v, p+"annotation", def.GetAnnotation())
	checkEnv(v, p+"environment_variables", def.GetEnvironmentVariables())
	checkEgressRules(v, p+"egress_rules", def.GetEgressRules())
	checkCachedDependencies(v, p+"cached_dependencies", def.GetCachedDependencies())
	checkImageLayers(v, p+"image_layers", def.GetImageLayers())
	checkVolumeMounts(v, p+"volume_mounts", def.GetVolumeMounts())
	checkFiles(v, p+"volume_mounted_files", def.GetVolumeMountedFiles())
	checkLogRateLimit(v, p+"log_rate_limit", def.GetLogRateLimit())
	checkMetricTags(v, p+"metric_tags", def.GetMetricTags())
	checkPlacementTags(v, p+"placement_tags", def.GetPlacementTags())
	checkImageCredentials(v, p+"image_username", def.GetImageUsername(), def.GetImagePassword())
	if cb := def.GetCompletionCallbackUrl(); cb != "" {
		u, err := url.Parse(cb)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.Add(p+"completion_callback_url", "must be an http or https URL (got %q)", cb)
		}
	}
	if len(v.Errors) == 0 {
		checkRecordSize(v, "definition", def.ProtoReflect())
	}
	return v.Err()
}

// ValidateDomain checks an UpsertDomain request.
func ValidateDomain(domain string, ttlSeconds int64) error {
	v := &ValidationError{}
	checkName(v, "domain", domain)
	checkNonNegative(v, "ttl_seconds", ttlSeconds)
	return v.Err()
}

// ValidateActualLRPKey checks an instance's key.
func ValidateActualLRPKey(field string, k *modelsv1.ActualLRPKey) error {
	v := &ValidationError{}
	checkActualLRPKey(v, field, k)
	return v.Err()
}

func checkActualLRPKey(v *ValidationError, field string, k *modelsv1.ActualLRPKey) {
	if k == nil {
		v.Add(field, "is required")
		return
	}
	checkGUID(v, field+".process_guid", k.GetProcessGuid())
	checkNonNegative(v, field+".index", int64(k.GetIndex()))
}

func checkInstanceKey(v *ValidationError, field string, k *modelsv1.ActualLRPInstanceKey) {
	if k == nil {
		v.Add(field, "is required")
		return
	}
	if k.GetInstanceGuid() == "" {
		v.Add(field+".instance_guid", "is required")
	}
	if k.GetCellId() == "" {
		v.Add(field+".cell_id", "is required")
	}
}

// ValidateClaim checks a ClaimActualLRP request.
func ValidateClaim(processGUID string, index int32, ik *modelsv1.ActualLRPInstanceKey) error {
	v := &ValidationError{}
	checkGUID(v, "process_guid", processGUID)
	checkNonNegative(v, "index", int64(index))
	checkInstanceKey(v, "instance_key", ik)
	return v.Err()
}

// ValidateStart checks a StartActualLRP request.
func ValidateStart(k *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey, net *modelsv1.ActualLRPNetInfo) error {
	v := &ValidationError{}
	checkActualLRPKey(v, "actual_lrp_key", k)
	checkInstanceKey(v, "instance_key", ik)
	if net == nil {
		v.Add("net_info", "is required")
	} else if net.GetAddress() == "" {
		v.Add("net_info.address", "is required")
	}
	return v.Err()
}

// ValidateCrash checks a CrashActualLRP request.
func ValidateCrash(k *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) error {
	v := &ValidationError{}
	checkActualLRPKey(v, "actual_lrp_key", k)
	checkInstanceKey(v, "instance_key", ik)
	return v.Err()
}

// ValidateRemove checks a RemoveActualLRP request; the instance key is optional.
func ValidateRemove(processGUID string, index int32, ik *modelsv1.ActualLRPInstanceKey) error {
	v := &ValidationError{}
	checkGUID(v, "process_guid", processGUID)
	checkNonNegative(v, "index", int64(index))
	if ik != nil {
		checkInstanceKey(v, "instance_key", ik)
	}
	return v.Err()
}

// ValidateTaskGUID checks a request that names a task.
func ValidateTaskGUID(guid string) error {
	v := &ValidationError{}
	checkGUID(v, "task_guid", guid)
	return v.Err()
}

// ValidateProcessGUID checks a request that names a desired LRP.
func ValidateProcessGUID(guid string) error {
	v := &ValidationError{}
	checkGUID(v, "process_guid", guid)
	return v.Err()
}

// ValidateTaskCell checks a request that names a task and a cell.
func ValidateTaskCell(guid, cellID string) error {
	v := &ValidationError{}
	checkGUID(v, "task_guid", guid)
	if cellID == "" {
		v.Add("cell_id", "is required")
	}
	return v.Err()
}

// ValidateProcessGUIDs checks a list filter.
func ValidateProcessGUIDs(field string, guids []string) error {
	v := &ValidationError{}
	for i, g := range guids {
		checkGUID(v, fmt.Sprintf("%s[%d]", field, i), g)
	}
	return v.Err()
}

// Truncate cuts a reason to MaxReasonBytes, as Diego does for crash reasons and placement errors.
func Truncate(s string) string {
	if len(s) <= MaxReasonBytes {
		return s
	}
	return s[:MaxReasonBytes]
}

// ValidateEvacuation checks an evacuation request naming an instance (all but EvacuateRunningActualLRP, which is checked as a start).
func ValidateEvacuation(k *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) error {
	return ValidateCrash(k, ik)
}
