package models

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func validLRP() *modelsv1.DesiredLRP {
	return &modelsv1.DesiredLRP{
		ProcessGuid: "pg-1",
		Domain:      "cf-apps",
		RootFs:      "preloaded:cflinuxfs4",
		Instances:   2,
		MemoryMb:    64,
		DiskMb:      128,
		Ports:       []uint32{8080},
		Routes:      map[string]string{"cf-router": `[{"hostnames":["a.example.com"],"port":8080}]`},
		Action:      &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app"}}},
		CheckDefinition: &modelsv1.CheckDefinition{Checks: []*modelsv1.Check{
			{Check: &modelsv1.Check_TcpCheck{TcpCheck: &modelsv1.TCPCheck{Port: 8080}}},
		}},
	}
}

func run(path string) *modelsv1.Action {
	return &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: path}}}
}

func TestValidateDesiredLRP(t *testing.T) {
	require.NoError(t, ValidateDesiredLRP(validLRP()))
	big := strings.Repeat("x", MaxAnnotationBytes+1)
	cases := []struct {
		name   string
		mutate func(d *modelsv1.DesiredLRP)
		field  string
		rule   string
	}{
		{"missing guid", func(d *modelsv1.DesiredLRP) { d.ProcessGuid = "" }, "desired_lrp.process_guid", "is required"},
		{"guid charset", func(d *modelsv1.DesiredLRP) { d.ProcessGuid = "a/b" }, "desired_lrp.process_guid", "must match"},
		{"missing domain", func(d *modelsv1.DesiredLRP) { d.Domain = "" }, "desired_lrp.domain", "is required"},
		{"rootfs without scheme", func(d *modelsv1.DesiredLRP) { d.RootFs = "cflinuxfs4" }, "desired_lrp.root_fs", "URL with a scheme"},
		{"negative instances", func(d *modelsv1.DesiredLRP) { d.Instances = -1 }, "desired_lrp.instances", ">= 0"},
		{"negative memory", func(d *modelsv1.DesiredLRP) { d.MemoryMb = -5 }, "desired_lrp.memory_mb", ">= 0"},
		{"negative disk", func(d *modelsv1.DesiredLRP) { d.DiskMb = -5 }, "desired_lrp.disk_mb", ">= 0"},
		{"cpu weight", func(d *modelsv1.DesiredLRP) { d.CpuWeight = 101 }, "desired_lrp.cpu_weight", "at most 100"},
		{"annotation too big", func(d *modelsv1.DesiredLRP) { d.Annotation = big }, "desired_lrp.annotation", "at most 10240 bytes"},
		{"routes too big", func(d *modelsv1.DesiredLRP) {
			d.Routes = map[string]string{"cf-router": `"` + strings.Repeat("x", MaxRoutesBytes) + `"`}
		}, "desired_lrp.routes", "at most 131072 bytes"},
		{"route not JSON", func(d *modelsv1.DesiredLRP) { d.Routes = map[string]string{"cf-router": "{"} }, `desired_lrp.routes["cf-router"]`, "JSON"},
		{"missing action", func(d *modelsv1.DesiredLRP) { d.Action = nil }, "desired_lrp.action", "is required"},
		{"empty action wrapper", func(d *modelsv1.DesiredLRP) { d.Setup = &modelsv1.Action{} }, "desired_lrp.setup", "exactly one action"},
		{"run without path", func(d *modelsv1.DesiredLRP) { d.Action = run("") }, "desired_lrp.action.run.path", "is required"},
		{"nested bad action", func(d *modelsv1.DesiredLRP) {
			d.Action = &modelsv1.Action{Action: &modelsv1.Action_Serial{Serial: &modelsv1.SerialAction{Actions: []*modelsv1.Action{run("/a"), run("")}}}}
		}, "desired_lrp.action.serial.actions[1].run.path", "is required"},
		{"empty parallel", func(d *modelsv1.DesiredLRP) {
			d.Action = &modelsv1.Action{Action: &modelsv1.Action_Parallel{Parallel: &modelsv1.ParallelAction{}}}
		}, "desired_lrp.action.parallel.actions", "at least one"},
		{"timeout without duration", func(d *modelsv1.DesiredLRP) {
			d.Action = &modelsv1.Action{Action: &modelsv1.Action_Timeout{Timeout: &modelsv1.TimeoutAction{Action: run("/a")}}}
		}, "desired_lrp.action.timeout.timeout_ms", "> 0"},
		{"download bad checksum algorithm", func(d *modelsv1.DesiredLRP) {
			d.Setup = &modelsv1.Action{Action: &modelsv1.Action_Download{Download: &modelsv1.DownloadAction{From: "http://x/a.tgz", To: ".", ChecksumAlgorithm: "crc32", ChecksumValue: "1"}}}
		}, "desired_lrp.setup.download.checksum_algorithm", "md5, sha1, sha256"},
		{"env without name", func(d *modelsv1.DesiredLRP) {
			d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Value: "x"}}
		}, "desired_lrp.environment_variables[0].name", "is required"},
		{"port out of range", func(d *modelsv1.DesiredLRP) { d.Ports = []uint32{70000} }, "desired_lrp.ports[0]", "1-65535"},
		{"check port zero", func(d *modelsv1.DesiredLRP) {
			d.CheckDefinition.Checks[0] = &modelsv1.Check{Check: &modelsv1.Check_HttpCheck{HttpCheck: &modelsv1.HTTPCheck{Port: 0}}}
		}, "desired_lrp.check_definition.checks[0].http_check.port", "1-65535"},
		{"check with no kind", func(d *modelsv1.DesiredLRP) { d.CheckDefinition.ReadinessChecks = []*modelsv1.Check{{}} }, "desired_lrp.check_definition.readiness_checks[0]", "exactly one"},
		{"monitor and checks", func(d *modelsv1.DesiredLRP) { d.Monitor = run("/check") }, "desired_lrp.monitor", "check_definition"},
		{"egress protocol", func(d *modelsv1.DesiredLRP) {
			d.EgressRules = []*modelsv1.SecurityGroupRule{{Protocol: "sctp", Destinations: []string{"0.0.0.0/0"}}}
		}, "desired_lrp.egress_rules[0].protocol", "tcp, udp, icmp, all"},
		{"volume mount mode", func(d *modelsv1.DesiredLRP) {
			d.VolumeMounts = []*modelsv1.VolumeMount{{Driver: "nfs", ContainerDir: "/data", Mode: "x", Shared: &modelsv1.SharedDevice{VolumeId: "v"}}}
		}, "desired_lrp.volume_mounts[0].mode", "r or rw"},
		{"image credentials alone", func(d *modelsv1.DesiredLRP) { d.ImageUsername = "u" }, "desired_lrp.image_username", "together"},
		{"metric tag with both", func(d *modelsv1.DesiredLRP) {
			d.MetricTags = map[string]*modelsv1.MetricTagValue{"i": {Static: "x", Dynamic: modelsv1.MetricTagValue_DYNAMIC_VALUE_INDEX}}
		}, `desired_lrp.metric_tags["i"]`, "exactly one"},
		{"log rate limit", func(d *modelsv1.DesiredLRP) { d.LogRateLimit = &modelsv1.LogRateLimit{BytesPerSecond: -2} }, "desired_lrp.log_rate_limit.bytes_per_second", ">= -1"},
		{"volume mounted files too big", func(d *modelsv1.DesiredLRP) {
			d.VolumeMountedFiles = []*modelsv1.File{{Path: "/etc/x", Content: strings.Repeat("x", MaxVolumeMountedFileBytes+1)}}
		}, "desired_lrp.volume_mounted_files", "at most"},
		{"placement tag empty", func(d *modelsv1.DesiredLRP) { d.PlacementTags = []string{""} }, "desired_lrp.placement_tags[0]", "must not be empty"},
		{"modification tag set by client", func(d *modelsv1.DesiredLRP) { d.ModificationTag = &modelsv1.ModificationTag{Epoch: "x"} }, "desired_lrp.modification_tag", "set by the BBS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := proto.Clone(validLRP()).(*modelsv1.DesiredLRP)
			tc.mutate(d)
			err := ValidateDesiredLRP(d)
			require.ErrorIs(t, err, ErrInvalid)
			var ve *ValidationError
			require.True(t, errors.As(err, &ve))
			found := false
			for _, fe := range ve.Errors {
				if fe.Field == tc.field && strings.Contains(fe.Rule, tc.rule) {
					found = true
				}
			}
			require.Truef(t, found, "want %s: ...%s..., got %v", tc.field, tc.rule, ve.Errors)
			require.Equal(t, codes.InvalidArgument, Code(err))
		})
	}
}

func TestValidateCollectsEveryFieldError(t *testing.T) {
	err := ValidateDesiredLRP(&modelsv1.DesiredLRP{Instances: -1})
	var ve *ValidationError
	require.True(t, errors.As(err, &ve))
	fields := map[string]bool{}
	for _, fe := range ve.Errors {
		fields[fe.Field] = true
	}
	for _, f := range []string{"desired_lrp.process_guid", "desired_lrp.domain", "desired_lrp.root_fs", "desired_lrp.instances", "desired_lrp.action"} {
		require.Truef(t, fields[f], "missing %s in %v", f, ve.Errors)
	}
}

func TestValidateTaskAndOthers(t *testing.T) {
	def := &modelsv1.TaskDefinition{RootFs: "docker:///busybox", Action: run("/bin/true")}
	require.NoError(t, ValidateTask("tg-1", "d", def))
	cases := []struct {
		name  string
		err   error
		field string
	}{
		{"task guid", ValidateTask("bad guid", "d", def), "task_guid"},
		{"task domain", ValidateTask("tg", "", def), "domain"},
		{"task definition", ValidateTask("tg", "d", nil), "definition"},
		{"task callback url", ValidateTask("tg", "d", &modelsv1.TaskDefinition{RootFs: "docker:///x", Action: run("/x"), CompletionCallbackUrl: "ftp://x"}), "definition.completion_callback_url"},
		{"task annotation", ValidateTask("tg", "d", &modelsv1.TaskDefinition{RootFs: "docker:///x", Action: run("/x"), Annotation: strings.Repeat("a", MaxAnnotationBytes+1)}), "definition.annotation"},
		{"domain ttl", ValidateDomain("d", -1), "ttl_seconds"},
		{"domain name", ValidateDomain("a/b", 0), "domain"},
		{"claim instance key", ValidateClaim("pg", 0, &modelsv1.ActualLRPInstanceKey{CellId: "c"}), "instance_key.instance_guid"},
		{"claim index", ValidateClaim("pg", -1, keyA), "index"},
		{"start net info", ValidateStart(lrpK, keyA, &modelsv1.ActualLRPNetInfo{}), "net_info.address"},
		{"crash key", ValidateCrash(nil, keyA), "actual_lrp_key"},
		{"update instances", ValidateDesiredLRPUpdate("pg", &modelsv1.DesiredLRPUpdate{Instances: proto.Int32(-3)}), "update.instances"},
		{"update routes flag", ValidateDesiredLRPUpdate("pg", &modelsv1.DesiredLRPUpdate{Routes: map[string]string{"cf-router": "[]"}}), "update.set_routes"},
		{"list guids", ValidateProcessGUIDs("filter.process_guids", []string{"ok", "no way"}), "filter.process_guids[1]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ve *ValidationError
			require.True(t, errors.As(tc.err, &ve), "got %v", tc.err)
			require.Equal(t, tc.field, ve.Errors[0].Field)
		})
	}
}

func TestStatusRoundTrip(t *testing.T) {
	for _, sentinel := range []error{ErrNotFound, ErrAlreadyExists, ErrInvalidTransition, ErrConflict, ErrUnavailable, ErrResourceExhausted, ErrCompacted} {
		wire := ToStatus(errors.Join(sentinel, errors.New("context")))
		back := FromStatus(wire)
		require.ErrorIs(t, back, sentinel)
		require.Equal(t, Code(sentinel), Code(back))
	}
	back := FromStatus(ToStatus(ValidateDomain("", 0)))
	require.ErrorIs(t, back, ErrInvalid)
	require.Contains(t, back.Error(), "domain: is required")
}
