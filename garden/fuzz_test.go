package garden_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/gavelhq/gavel/garden"
)

// wireTypes are the Garden wire types a server or a client decodes from the
// other side, by the first byte of a fuzz input.
var wireTypes = []func() any{
	func() any { return &garden.ContainerSpec{} },
	func() any { return &garden.ProcessSpec{} },
	func() any { return &garden.ProcessPayload{} },
	func() any { return &garden.NetOutRule{} },
	func() any { return &[]garden.NetOutRule{} },
	func() any { return &garden.NetInRequest{} },
	func() any { return &garden.Error{} },
	func() any { return &garden.ContainerInfo{} },
	func() any { return &garden.Metrics{} },
	func() any { return &map[string]garden.ContainerInfoEntry{} },
	func() any { return &map[string]garden.ContainerMetricsEntry{} },
	func() any { return &garden.Capacity{} },
	func() any { return &garden.ListResponse{} },
	func() any { return &garden.StopRequest{} },
}

// Whatever JSON the other side sends, each wire type decodes it or refuses
// it without a panic, and what it decodes re-encodes to a fixed point (the
// encoding is stable: decode(encode(v)) encodes the same). An error body
// always converts to an error.
func FuzzWireTypes(f *testing.F) {
	for i, seed := range []string{
		`{"handle":"h","grace_time":30000000000,"rootfs":"/r","image":{"uri":"docker:///busybox"},"limits":{"memory_limits":{"limit_in_bytes":1024}},"properties":{"a":"b"},"net_in":[{"host_port":1,"container_port":2}]}`,
		`{"path":"/bin/sh","args":["-c","x"],"env":["A=B"],"dir":"/","user":"root","rlimits":{"nofile":10},"tty":{"window_size":{"columns":80,"rows":24}}}`,
		`{"process_id":"p","source":0,"data":"x","exit_status":0,"error":"e","tty":{}}`,
		`{"protocol":3,"networks":[{"start":"10.0.0.1","end":"10.0.0.9"}],"ports":[{"start":1,"end":2}],"icmps":{"type":8,"code":0},"log":true}`,
		`[{"protocol":1}]`,
		`{"handle":"h","host_port":1,"container_port":2}`,
		`{"Type":"UnknownHandleError","Message":"unknown handle: h","Handle":"h","ProcessID":"","Binary":""}`,
		`{"State":"active","Events":[],"HostIP":"10.0.0.1","ContainerIP":"10.254.0.2","ExternalIP":"","ContainerPath":"/c","ProcessIDs":["1"],"Properties":{},"MappedPorts":[{"HostPort":1,"ContainerPort":2}]}`,
		`{"MemoryStat":{"cache":1},"CPUStat":{"usage":1},"DiskStat":{},"NetworkStat":null,"PidStat":{},"Age":1,"CPUEntitlement":2}`,
		`{"h":{"Info":{"State":"active"},"Err":null}}`,
		`{"h":{"Metrics":{"Age":1},"Err":{"Type":"x","Message":"m"}}}`,
		`{"memory_in_bytes":1,"disk_in_bytes":2,"max_containers":3,"scheme_version":1}`,
		`{"handles":["a","b"]}`,
		`{"kill":true}`,
	} {
		f.Add(uint8(i), []byte(seed))
	}
	f.Add(uint8(0), []byte(`{"grace_time":1e400}`))
	f.Add(uint8(2), []byte(`{"source":-1}`))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		mk := wireTypes[int(kind)%len(wireTypes)]
		v := mk()
		if json.Unmarshal(data, v) != nil {
			return
		}
		if e, ok := v.(*garden.Error); ok && e.Typed() == nil {
			t.Fatal("an error body converted to no error")
		}
		first, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%T decoded %q but does not encode: %v", v, data, err)
		}
		again := mk()
		if err := json.Unmarshal(first, again); err != nil {
			t.Fatalf("%T: its own encoding %q does not decode: %v", v, first, err)
		}
		second, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("%T: encoding not stable:\n%s\n%s", v, first, second)
		}
	})
}
