package models_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gavelhq/gavel/bbs/models"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// fill sets every field of m to a value derived from seed, in place: it
// fills set nested messages and list elements again, sets list elements,
// adds two list elements and two map entries, and gives every message an
// unknown field. Filled once, a message has every field set; filled again,
// everything it holds has changed, so a clone that shares anything with its
// source changes that source too.
func fill(m protoreflect.Message, seed int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		n := seed*100 + i + 1
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for j := 0; j < 2; j++ {
				mp.Set(scalar(fd.MapKey(), n+j).MapKey(), scalar(fd.MapValue(), n+j))
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for j := 0; j < l.Len(); j++ {
				if fd.Kind() == protoreflect.MessageKind {
					fill(l.Get(j).Message(), n+j)
				} else {
					l.Set(j, scalar(fd, n+j))
				}
			}
			for j := 0; j < 2; j++ {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					fill(e.Message(), n+j)
					l.Append(e)
				} else {
					l.Append(scalar(fd, n+j))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			fill(m.Mutable(fd).Message(), n)
		default:
			m.Set(fd, scalar(fd, n))
		}
	}
	m.SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), uint64(seed)))
}

func scalar(fd protoreflect.FieldDescriptor, n int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("s%d", n))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(n%2 == 1)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		return protoreflect.ValueOfEnum(values.Get(n % values.Len()).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(n))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(fmt.Sprintf("b%d", n)))
	}
	panic(fmt.Sprintf("fill: no value for field %s of kind %s", fd.FullName(), fd.Kind()))
}

// Each hand-written clone equals proto.Clone's for a message with every field
// set (unknown fields included), and shares nothing with its source: filling
// the clone with other values leaves the source as it was.
func TestClonesCopyEveryField(t *testing.T) {
	cases := []struct {
		name  string
		src   proto.Message
		clone func(proto.Message) proto.Message
		clear func(proto.Message) // what the clone leaves out of proto.Clone's copy
	}{
		{"ActualLRP without its instance", &modelsv1.ActualLRP{}, func(m proto.Message) proto.Message {
			return models.CloneWithoutInstance(m.(*modelsv1.ActualLRP))
		}, func(m proto.Message) {
			lrp := m.(*modelsv1.ActualLRP)
			lrp.InstanceKey, lrp.NetInfo, lrp.InternalRoutes, lrp.MetricTags, lrp.Routable = nil, nil, nil, nil, nil
			lrp.AvailabilityZone = ""
		}},
		{"ActualLRP", &modelsv1.ActualLRP{}, func(m proto.Message) proto.Message { return models.CloneActualLRP(m.(*modelsv1.ActualLRP)) }, nil},
		{"ActualLRPKey", &modelsv1.ActualLRPKey{}, func(m proto.Message) proto.Message { return models.CloneActualLRPKey(m.(*modelsv1.ActualLRPKey)) }, nil},
		{"ActualLRPInstanceKey", &modelsv1.ActualLRPInstanceKey{}, func(m proto.Message) proto.Message {
			return models.CloneInstanceKey(m.(*modelsv1.ActualLRPInstanceKey))
		}, nil},
		{"ActualLRPNetInfo", &modelsv1.ActualLRPNetInfo{}, func(m proto.Message) proto.Message { return models.CloneNetInfo(m.(*modelsv1.ActualLRPNetInfo)) }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fill(tc.src.ProtoReflect(), 1)
			before := proto.Clone(tc.src)
			want := proto.Clone(tc.src)
			if tc.clear != nil {
				tc.clear(want)
			}
			got := tc.clone(tc.src)
			require.True(t, proto.Equal(want, got), "clone differs from proto.Clone:\nwant %v\ngot  %v", want, got)

			fill(got.ProtoReflect(), 2)
			require.True(t, proto.Equal(before, tc.src), "changing the clone changed its source:\nwas %v\nnow %v", before, tc.src)
		})
	}
}

func TestClonesOfNil(t *testing.T) {
	require.Nil(t, models.CloneActualLRP(nil))
	require.Nil(t, models.CloneActualLRPKey(nil))
	require.Nil(t, models.CloneInstanceKey(nil))
	require.Nil(t, models.CloneNetInfo(nil))
}

// A row with only some fields set clones to an equal row.
func TestCloneActualLRPOfASparseRow(t *testing.T) {
	row := &modelsv1.ActualLRP{
		Key:      &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 3},
		State:    models.Unclaimed,
		Presence: models.Ordinary,
	}
	require.True(t, proto.Equal(row, models.CloneActualLRP(row)))
}

// BenchmarkCloneActualLRP copies a RUNNING row, as a claim or start does;
// proto.Clone is the reference.
func BenchmarkCloneActualLRP(b *testing.B) {
	routable := true
	row := &modelsv1.ActualLRP{
		Key:         &modelsv1.ActualLRPKey{ProcessGuid: "pg-1", Index: 3, Domain: "cf-apps"},
		InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-1", CellId: "cell-1"},
		NetInfo: &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", InstanceAddress: "10.255.0.1",
			Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61001}}},
		State: models.Running, Presence: models.Ordinary, Since: 1,
		ModificationTag: &modelsv1.ModificationTag{Epoch: "e", Index: 2}, Routable: &routable,
	}
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = models.CloneActualLRP(row)
		}
	})
	b.Run("proto.Clone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = proto.Clone(row)
		}
	})
}
