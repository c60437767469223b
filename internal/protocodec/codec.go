// Package protocodec is the protobuf codec of Gavel's gRPC clients and
// servers: gRPC's own, but sizing each message once. gRPC's codec computes a
// message's size to choose a buffer and then marshals without the size it
// computed, which sizes every message, nested ones included, a second time.
package protocodec

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Name is the codec's content subtype, the same as gRPC's proto codec: the
// bytes on the wire are the same.
const Name = "proto"

// Codec marshals and unmarshals protobuf messages for gRPC.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Marshal encodes v, which must be a protobuf message, into a buffer of
// exactly its size: pooled when the message is large enough to be worth it.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("protocodec: marshal %T: not a protobuf message", v)
	}
	size := proto.Size(m)
	// Marshal with the sizes proto.Size has just cached in the message
	// (safe: nothing changes the message in between, and a message
	// marshalled by two goroutines at once caches the same sizes).
	marshal := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf, err := marshal.MarshalAppend(make([]byte, 0, size), m)
		if err != nil {
			return nil, fmt.Errorf("protocodec: marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := marshal.MarshalAppend((*buf)[:0], m); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("protocodec: marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// Unmarshal decodes data into v, which must be a protobuf message.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("protocodec: unmarshal into %T: not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	if err := proto.Unmarshal(buf.ReadOnlyData(), m); err != nil {
		return fmt.Errorf("protocodec: unmarshal into %T: %w", v, err)
	}
	return nil
}

// Name returns the codec's content subtype.
func (Codec) Name() string { return Name }
