package models

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func seedLRP() *modelsv1.DesiredLRP {
	return &modelsv1.DesiredLRP{
		ProcessGuid: "pg", Domain: "d", RootFs: "preloaded:cflinuxfs4", Instances: 2, MemoryMb: 64,
		EnvironmentVariables: []*modelsv1.EnvironmentVariable{{Name: "A", Value: "b"}},
		Routes:               map[string]string{"cf-router": `[{"hostnames":["a"],"port":8080}]`},
		Action: &modelsv1.Action{Action: &modelsv1.Action_Serial{Serial: &modelsv1.SerialAction{Actions: []*modelsv1.Action{
			{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app", Args: []string{"x"}}}},
			{Action: &modelsv1.Action_Try{Try: &modelsv1.TryAction{Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/b"}}}}}},
		}}}},
		PlacementTags: []string{"blue"},
		MetricTags:    map[string]*modelsv1.MetricTagValue{"app": {Static: "x"}},
	}
}

func mustMarshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// assertWithinBounds is what an accepted record guarantees.
func assertWithinBounds(t *testing.T, m proto.Message) {
	t.Helper()
	if err := CheckBounds(m); err != nil {
		t.Fatalf("accepted, but beyond a bound: %v", err)
	}
	if n := proto.Size(m); n > MaxRecordBytes {
		t.Fatalf("accepted a record of %d bytes", n)
	}
}

// Any bytes decoded as a desired LRP are either refused with field errors
// or within every bound; validation never panics.
func FuzzValidateDesiredLRP(f *testing.F) {
	f.Add(mustMarshal(f, seedLRP()))
	bad := seedLRP()
	bad.Instances, bad.UpdateStrategy = 2147483647, 99
	bad.EnvironmentVariables = append(bad.EnvironmentVariables, &modelsv1.EnvironmentVariable{Name: "A=B\x00"})
	f.Add(mustMarshal(f, bad))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &modelsv1.DesiredLRP{}
		if proto.Unmarshal(data, d) != nil {
			return
		}
		err := ValidateDesiredLRP(d)
		if err != nil {
			if len(err.Error()) > 1<<20 {
				t.Fatalf("an error of %d bytes", len(err.Error()))
			}
			return
		}
		assertWithinBounds(t, d)
		if d.GetInstances() > DefaultMaxInstances {
			t.Fatalf("accepted %d instances", d.GetInstances())
		}
		for _, e := range d.GetEnvironmentVariables() {
			if strings.ContainsAny(e.GetName(), "=\x00") || e.GetName() == "" {
				t.Fatalf("accepted env name %q", e.GetName())
			}
		}
	})
}

// The same for a task's definition.
func FuzzValidateTask(f *testing.F) {
	def := &modelsv1.TaskDefinition{RootFs: "preloaded:cflinuxfs4", Action: seedLRP().GetAction(), CompletionCallbackUrl: "http://cc/done"}
	f.Add("tg", "d", mustMarshal(f, def))
	f.Add(strings.Repeat("g", 300), "", []byte{0x0a, 0x01})
	f.Fuzz(func(t *testing.T, guid, domain string, data []byte) {
		def := &modelsv1.TaskDefinition{}
		if proto.Unmarshal(data, def) != nil {
			return
		}
		if ValidateTask(guid, domain, def) != nil {
			return
		}
		assertWithinBounds(t, def)
		if len(guid) > MaxGUIDBytes || len(domain) > MaxNameBytes {
			t.Fatalf("accepted guid of %d bytes, domain of %d", len(guid), len(domain))
		}
	})
}

// bbsRequests are the request types of every BBS RPC.
func bbsRequests(tb testing.TB) []protoreflect.MessageType {
	svc := bbsv1.File_gavel_bbs_v1_bbs_proto.Services().Get(0)
	var out []protoreflect.MessageType
	for i := 0; i < svc.Methods().Len(); i++ {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(svc.Methods().Get(i).Input().FullName())
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, mt)
	}
	return out
}

// Every BBS request, decoded from any bytes, passes CheckBounds or is
// refused with field errors; never a panic, and never an error that echoes
// a huge value.
func FuzzCheckBoundsRequests(f *testing.F) {
	reqs := bbsRequests(f)
	f.Add(uint8(3), mustMarshal(f, &bbsv1.DesireLRPRequest{DesiredLrp: seedLRP()}))
	f.Add(uint8(25), mustMarshal(f, &bbsv1.StartActualLRPRequest{
		ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg"}, InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "i", CellId: "c"},
		NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1"}, MetricTags: map[string]string{"a": "b"},
	}))
	f.Add(uint8(19), mustMarshal(f, &bbsv1.ListTasksRequest{State: 42}))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		m := reqs[int(kind)%len(reqs)].New().Interface()
		if proto.Unmarshal(data, m) != nil {
			return
		}
		if err := CheckBounds(m); err != nil {
			if len(err.Error()) > 64<<10 {
				t.Fatalf("an error of %d bytes", len(err.Error()))
			}
			return
		}
		if proto.Size(m) > MaxRecordBytes && recordTypes[m.ProtoReflect().Descriptor().FullName()] {
			t.Fatalf("accepted a %s of %d bytes", m.ProtoReflect().Descriptor().FullName(), proto.Size(m))
		}
	})
}

// BenchmarkCheckBoundsDesireLRP is the cost of the bounds walk on a typical
// DesireLRP request.
func BenchmarkCheckBoundsDesireLRP(b *testing.B) {
	req := &bbsv1.DesireLRPRequest{DesiredLrp: seedLRP()}
	for i := 0; i < b.N; i++ {
		if err := CheckBounds(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckBoundsBatchStart is the cost of the bounds walk on a batch
// of 16 start reports, the BBS's most frequent request while placing.
func BenchmarkCheckBoundsBatchStart(b *testing.B) {
	req := &bbsv1.BatchStartActualLRPsRequest{}
	routable := true
	for i := range 16 {
		req.Starts = append(req.Starts, &bbsv1.StartActualLRPRequest{
			ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg-0123456789", Index: int32(i), Domain: "cf-apps"},
			InstanceKey:  &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-0123456789abcdef", CellId: "cell-0042"},
			NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", InstanceAddress: "10.255.0.2",
				Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61001}}},
			Routable: &routable, AvailabilityZone: "z1",
		})
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := CheckBounds(req); err != nil {
			b.Fatal(err)
		}
	}
}

// CheckBounds names the field beyond its bound by its full path: fields,
// list indexes and map keys, as a client would find it in its request.
func TestCheckBoundsNamesTheField(t *testing.T) {
	long := strings.Repeat("x", MaxGUIDBytes+1)
	start := func(mut func(*bbsv1.StartActualLRPRequest)) *bbsv1.BatchStartActualLRPsRequest {
		req := &bbsv1.BatchStartActualLRPsRequest{}
		for i := range 4 {
			s := &bbsv1.StartActualLRPRequest{
				ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: int32(i), Domain: "d"},
				InstanceKey:  &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig", CellId: "c"},
			}
			if i == 3 {
				mut(s)
			}
			req.Starts = append(req.Starts, s)
		}
		return req
	}
	cases := []struct {
		name string
		req  proto.Message
		want string
	}{
		{"a nested string", start(func(s *bbsv1.StartActualLRPRequest) { s.ActualLrpKey.ProcessGuid = long }),
			"starts[3].actual_lrp_key.process_guid: must be at most 256 bytes (got 257)"},
		{"a list in a list item", start(func(s *bbsv1.StartActualLRPRequest) {
			s.NetInfo = &modelsv1.ActualLRPNetInfo{Ports: make([]*modelsv1.PortMapping, MaxSmallList+1)}
		}), "starts[3].net_info.ports: must hold at most 64 items (got 65)"},
		{"a map key", start(func(s *bbsv1.StartActualLRPRequest) { s.MetricTags = map[string]string{long: "v"} }),
			"starts[3].metric_tags: keys must be at most 256 bytes (got one of 257)"},
		{"an unknown enum value", start(func(s *bbsv1.StartActualLRPRequest) {
			s.NetInfo = &modelsv1.ActualLRPNetInfo{PreferredAddress: 99}
		}), "starts[3].net_info.preferred_address: unknown PreferredAddress value 99"},
		{"a string of the root request", &bbsv1.GetDesiredLRPRequest{ProcessGuid: long},
			"process_guid: must be at most 256 bytes (got 257)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckBounds(tc.req)
			if err == nil || err.Error() != "invalid request: "+tc.want {
				t.Fatalf("CheckBounds: got %v, want %q", err, tc.want)
			}
		})
	}
	if err := CheckBounds(start(func(*bbsv1.StartActualLRPRequest) {})); err != nil {
		t.Fatalf("a request within its bounds: %v", err)
	}
}
