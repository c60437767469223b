package protocodec

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // gRPC's codec, to compare with
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func actualLRP(index int32, tags int) *modelsv1.ActualLRP {
	a := &modelsv1.ActualLRP{
		Key:         &modelsv1.ActualLRPKey{ProcessGuid: "process-guid-0123456789", Index: index, Domain: "cf-apps"},
		InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "instance-guid-0123456789", CellId: "cell-0042"},
		NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", InstanceAddress: "10.255.0.7",
			Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61001}, {ContainerPort: 2222, HostPort: 61002}}},
		State:           modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING,
		Since:           1_700_000_000_000_000_000,
		ModificationTag: &modelsv1.ModificationTag{Epoch: "epoch-0123456789", Index: 3},
		MetricTags:      map[string]string{},
	}
	for i := 0; i < tags; i++ {
		a.MetricTags["tag-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))] = strings.Repeat("v", 10+i%50)
	}
	return a
}

func changed(tags int) *modelsv1.Event {
	return &modelsv1.Event{Revision: 12345, Event: &modelsv1.Event_ActualLrpInstanceChanged{
		ActualLrpInstanceChanged: &modelsv1.ActualLRPInstanceChangedEvent{Before: actualLRP(7, tags), After: actualLRP(7, tags)},
	}}
}

// What the codec writes decodes to the same message, in the small (one
// exact slice) and the pooled (large) paths, and is as long as gRPC's own
// codec writes.
func TestRoundTrip(t *testing.T) {
	grpcCodec := encoding.GetCodecV2("proto")
	for _, tc := range []struct {
		name string
		msg  *modelsv1.Event
	}{
		{"small", changed(0)},
		{"pooled", changed(2000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Codec{}.Marshal(tc.msg)
			require.NoError(t, err)
			defer data.Free()
			want, err := grpcCodec.Marshal(tc.msg)
			require.NoError(t, err)
			defer want.Free()
			assert.Equal(t, want.Len(), data.Len())
			assert.Equal(t, proto.Size(tc.msg), data.Len())
			if tc.name == "pooled" {
				assert.False(t, mem.IsBelowBufferPoolingThreshold(data.Len()), "the message takes the pooled path")
			}

			var back modelsv1.Event
			require.NoError(t, Codec{}.Unmarshal(data, &back))
			assert.True(t, proto.Equal(tc.msg, &back), "decodes to the same message")
		})
	}
}

// A message changed after one marshal is marshalled with its new sizes.
func TestMarshalAfterChange(t *testing.T) {
	msg := changed(3)
	first, err := Codec{}.Marshal(msg)
	require.NoError(t, err)
	first.Free()
	msg.GetActualLrpInstanceChanged().GetAfter().GetKey().ProcessGuid += strings.Repeat("y", 300)
	data, err := Codec{}.Marshal(msg)
	require.NoError(t, err)
	defer data.Free()
	var back modelsv1.Event
	require.NoError(t, Codec{}.Unmarshal(data, &back))
	assert.True(t, proto.Equal(msg, &back))
}

// One message marshalled by many goroutines at once (an event or a cached
// record sent to several streams) comes out whole every time.
func TestConcurrentMarshal(t *testing.T) {
	msg := changed(5)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				data, err := Codec{}.Marshal(msg)
				if !assert.NoError(t, err) {
					return
				}
				var back modelsv1.Event
				assert.NoError(t, Codec{}.Unmarshal(data, &back))
				assert.True(t, proto.Equal(msg, &back))
				data.Free()
			}
		}()
	}
	wg.Wait()
}

func TestNotAProtobufMessage(t *testing.T) {
	_, err := Codec{}.Marshal("text")
	assert.ErrorContains(t, err, "not a protobuf message")
	err = Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{1})}, new(string))
	assert.ErrorContains(t, err, "not a protobuf message")
	err = Codec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0xff})}, &modelsv1.Event{})
	assert.Error(t, err, "malformed data")
}

// go test -run '^$' -bench Marshal ./internal/protocodec
func BenchmarkMarshal(b *testing.B) {
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"grpc", encoding.GetCodecV2("proto")}, {"protocodec", Codec{}}} {
		b.Run(c.name, func(b *testing.B) {
			msg := changed(2)
			b.ReportAllocs()
			for b.Loop() {
				data, err := c.codec.Marshal(msg)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}
