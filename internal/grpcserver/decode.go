package grpcserver

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/internal/protocodec"
)

// A request that does not decode (malformed protobuf) is answered
// InvalidArgument: the client sent it wrong and no retry can succeed.
// grpc-go answers Internal, from inside the generated handlers (unary) or
// before a handler can see the error (streams), so the server's codec does
// not fail a decode: it records the error against the message, and every
// service is registered with handlers that look the message up after
// decoding and answer InvalidArgument.

// decodeCodec is Gavel's proto codec with decode errors recorded, not
// returned.
type decodeCodec struct {
	encoding.CodecV2
	failed sync.Map // message (a pointer) → decode error
}

func newDecodeCodec() *decodeCodec {
	return &decodeCodec{CodecV2: protocodec.Codec{}}
}

// Unmarshal decodes data into v; a decode error is recorded for check.
func (c *decodeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.CodecV2.Unmarshal(data, v); err != nil {
		c.failed.Store(v, err)
	}
	return nil
}

// check returns InvalidArgument when decoding v failed, and forgets it.
func (c *decodeCodec) check(v any) error {
	e, ok := c.failed.LoadAndDelete(v)
	if !ok {
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "malformed request: %v", e)
}

// registrar registers services with handlers that check every decoded
// request against the codec.
type registrar struct {
	s     *grpc.Server
	codec *decodeCodec
}

var _ grpc.ServiceRegistrar = registrar{}

// RegisterService registers a copy of desc whose handlers check decoding.
func (r registrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		h := m.Handler
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(v any) error {
				if err := dec(v); err != nil {
					return err
				}
				return r.codec.check(v)
			}, ic)
		}
		d.Methods[i] = m
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, sd := range desc.Streams {
		h := sd.Handler
		sd.Handler = func(srv any, stream grpc.ServerStream) error {
			return h(srv, decodeStream{ServerStream: stream, codec: r.codec})
		}
		d.Streams[i] = sd
	}
	r.s.RegisterService(&d, impl)
}

// GetServiceInfo lets server reflection list the services.
func (r registrar) GetServiceInfo() map[string]grpc.ServiceInfo { return r.s.GetServiceInfo() }

// decodeStream checks every message it receives against the codec.
type decodeStream struct {
	grpc.ServerStream
	codec *decodeCodec
}

func (s decodeStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.codec.check(m)
}
