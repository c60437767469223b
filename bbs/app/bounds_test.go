package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// rawCodec sends *[]byte as they are, so a test can send malformed protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// The hostile requests of issue 19 are refused, each naming the field and the
// bound, nothing of them is stored, and the BBS stays up.
func TestHostileRequestsAreRefusedAndTheBBSStaysUp(t *testing.T) {
	cfg := testConfig(t, etcdtest.Prefix(t), "bbs-bounds")
	b := startBBS(t, cfg)
	waitActive(t, b)
	c := dial(t, b.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mb := strings.Repeat("g", 1<<20)
	run := func(path string) *modelsv1.Action {
		return &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: path}}}
	}
	deep := run("/bin/app")
	for i := 0; i < 40; i++ {
		deep = &modelsv1.Action{Action: &modelsv1.Action_Try{Try: &modelsv1.TryAction{Action: deep}}}
	}
	wide := &modelsv1.SerialAction{}
	for i := 0; i < 1100; i++ {
		wide.Actions = append(wide.Actions, run("/bin/step"))
	}
	with := func(f func(d *modelsv1.DesiredLRP)) func() error {
		return func() error {
			d := lrp("pg-hostile", 1)
			f(d)
			_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
			return err
		}
	}
	task := func(guid string, def *modelsv1.TaskDefinition) func() error {
		return func() error {
			_, err := c.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: guid, Domain: "d", Definition: def})
			return err
		}
	}
	goodTask := func() *modelsv1.TaskDefinition {
		return &modelsv1.TaskDefinition{RootFs: "preloaded:cflinuxfs4", Action: run("/bin/true")}
	}
	claims := &bbsv1.BatchClaimActualLRPsRequest{}
	for i := 0; i < 10_001; i++ {
		claims.Claims = append(claims.Claims, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "pg", Index: int32(i), InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "i", CellId: "c"}})
	}
	tags := map[string]string{}
	for i := 0; i < 65; i++ {
		tags[strings.Repeat("t", i+1)] = "v"
	}

	cases := []struct {
		name string
		call func() error
		code codes.Code
		want string
	}{
		{"instances 2147483647", with(func(d *modelsv1.DesiredLRP) { d.Instances = 2147483647 }), codes.InvalidArgument,
			"desired_lrp.instances: must be at most 10000 (got 2147483647; the BBS's max_desired_instances)"},
		{"1 MB process guid", with(func(d *modelsv1.DesiredLRP) { d.ProcessGuid = mb }), codes.InvalidArgument,
			"desired_lrp.process_guid: must be at most 256 bytes (got 1048576)"},
		{"1 MB domain", with(func(d *modelsv1.DesiredLRP) { d.Domain = mb }), codes.InvalidArgument,
			"desired_lrp.domain: must be at most 256 bytes"},
		{"1 MB log guid", with(func(d *modelsv1.DesiredLRP) { d.LogGuid = mb }), codes.InvalidArgument,
			"desired_lrp.log_guid: must be at most 256 bytes"},
		{"1 MB task guid", task(mb, goodTask()), codes.InvalidArgument, "task_guid: must be at most 256 bytes"},
		{"1 MB upserted domain", func() error {
			_, err := c.UpsertDomain(ctx, &bbsv1.UpsertDomainRequest{Domain: mb})
			return err
		}, codes.InvalidArgument, "domain: must be at most 256 bytes"},
		{"30 MB run record", with(func(d *modelsv1.DesiredLRP) {
			d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "BIG", Value: strings.Repeat("x", 30<<20)}}
		}), codes.ResourceExhausted, "larger than max"},
		{"2 MB run record", with(func(d *modelsv1.DesiredLRP) {
			d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "BIG", Value: strings.Repeat("x", 2<<20)}}
		}), codes.InvalidArgument, "desired_lrp: must be at most 1048576 bytes encoded"},
		{"unknown update strategy", with(func(d *modelsv1.DesiredLRP) { d.UpdateStrategy = 99 }), codes.InvalidArgument,
			"desired_lrp.update_strategy: unknown UpdateStrategy value 99"},
		{"unknown task state filter", func() error {
			_, err := c.ListTasks(ctx, &bbsv1.ListTasksRequest{State: 42})
			return err
		}, codes.InvalidArgument, "state: unknown TaskState value 42"},
		{"env name with =", with(func(d *modelsv1.DesiredLRP) {
			d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "A=B", Value: "v"}}
		}), codes.InvalidArgument, `desired_lrp.environment_variables[0].name: must not contain '=' or NUL`},
		{"env name with NUL", task("t-nul", func() *modelsv1.TaskDefinition {
			d := goodTask()
			d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "A\x00B", Value: "v"}}
			return d
		}()), codes.InvalidArgument, "definition.environment_variables[0].name: must not contain '=' or NUL"},
		{"2000 env vars", with(func(d *modelsv1.DesiredLRP) {
			for i := 0; i < 2000; i++ {
				d.EnvironmentVariables = append(d.EnvironmentVariables, &modelsv1.EnvironmentVariable{Name: "V", Value: "v"})
			}
		}), codes.InvalidArgument, "desired_lrp.environment_variables: must hold at most 1024 items (got 2000)"},
		{"action tree 41 deep", with(func(d *modelsv1.DesiredLRP) { d.Action = deep }), codes.InvalidArgument,
			"desired_lrp.action: must nest at most 32 actions deep"},
		{"action tree of 1101", with(func(d *modelsv1.DesiredLRP) {
			d.Action = &modelsv1.Action{Action: &modelsv1.Action_Serial{Serial: wide}}
		}), codes.InvalidArgument, "must hold at most 1024"},
		{"10001 batch claims", func() error { _, err := c.BatchClaimActualLRPs(ctx, claims); return err }, codes.InvalidArgument,
			"claims: must hold at most 10000 items (got 10001)"},
		{"65 metric tags on a start", func() error {
			_, err := c.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg"},
				InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "i", CellId: "c"}, NetInfo: &modelsv1.ActualLRPNetInfo{Address: "a"}, MetricTags: tags})
			return err
		}, codes.InvalidArgument, "metric_tags: must hold at most 64 entries (got 65)"},
		{"a start naming half a run info version", func() error {
			_, err := c.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg"},
				InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "i", CellId: "c"}, NetInfo: &modelsv1.ActualLRPNetInfo{Address: "a"},
				RunInfoVersion: &bbsv1.RunInfoVersion{DesiredEpoch: "e"}})
			return err
		}, codes.InvalidArgument, "run_info_version: when set, must name a desired_epoch and a run_info_revision > 0"},
		{"a 1 KB desired epoch on a start", func() error {
			_, err := c.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg"},
				InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "i", CellId: "c"}, NetInfo: &modelsv1.ActualLRPNetInfo{Address: "a"},
				RunInfoVersion: &bbsv1.RunInfoVersion{DesiredEpoch: strings.Repeat("e", 1024), RunInfoRevision: 7}})
			return err
		}, codes.InvalidArgument, "run_info_version.desired_epoch: must be at most 256 bytes"},
		{"100 KB crash cell id", func() error {
			_, err := c.CrashActualLRP(ctx, &bbsv1.CrashActualLRPRequest{ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg"},
				InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "i", CellId: strings.Repeat("c", 100<<10)}})
			return err
		}, codes.InvalidArgument, "instance_key.cell_id: must be at most 256 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			require.Equal(t, tc.code, status.Code(err), "%v", err)
			msg := status.Convert(err).Message()
			require.Contains(t, msg, tc.want)
			require.Less(t, len(msg), 4096, "the error does not echo the value back")
		})
	}

	// Malformed protobuf is InvalidArgument, not Internal.
	conn, err := grpc.NewClient(b.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	require.NoError(t, err)
	defer conn.Close()
	garbage, out := []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, []byte(nil)
	err = conn.Invoke(ctx, bbsv1.BBSService_DesireLRP_FullMethodName, &garbage, &out)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)

	// The BBS is up and stored nothing.
	ping, err := c.Ping(ctx, &bbsv1.PingRequest{})
	require.NoError(t, err)
	require.True(t, ping.GetAvailable())
	lrps, err := c.ListDesiredLRPs(ctx, &bbsv1.ListDesiredLRPsRequest{})
	require.NoError(t, err)
	require.Empty(t, lrps.GetDesiredLrps())
	tasks, err := c.ListTasks(ctx, &bbsv1.ListTasksRequest{})
	require.NoError(t, err)
	require.Empty(t, tasks.GetTasks())
	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg-ok", 2)})
	require.NoError(t, err, "a request within the bounds is served")
	_ = proto.Int32
}
