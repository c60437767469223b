// Package client is the Go client of the BBS that Gavel's components and the
// CLI use. It balances over every BBS address it is given and retries calls
// answered Unavailable on the next replica (a passive replica answers writes
// Unavailable), so callers reach the active BBS without knowing which it is.
// Errors unwrap to the sentinels of package models, so callers can test them
// with errors.Is(err, models.ErrNotFound).
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/grpcclient"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// Config says how to reach the BBS.
type Config struct {
	// Addresses are the host:port of every BBS replica.
	Addresses []string
	// TLS is the client's mTLS config; nil for plaintext.
	TLS *tls.Config
	// Retries is how many times a call answered Unavailable is retried (default 8).
	Retries int
	// RetryDelay is the first wait between retries, doubling up to 2 s (default 100 ms).
	RetryDelay time.Duration
}

// Client is a BBS client. Safe for concurrent use.
type Client struct {
	bbsv1.BBSServiceClient
	conn *grpc.ClientConn
}

// New returns a client; it connects lazily, so a BBS that is down shows on the first call.
func New(cfg Config) (*Client, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("bbs client: no BBS address given")
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 8
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 100 * time.Millisecond
	}
	r := manual.NewBuilderWithScheme("gavel-bbs-" + uuid.NewString())
	addrs := make([]resolver.Address, len(cfg.Addresses))
	for i, a := range cfg.Addresses {
		// Each replica's certificate is verified against its own host (the
		// dial target's "bbs" is only a placeholder). The addresses come
		// from the operator's config, so they are trusted as server names.
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a
		}
		addrs[i] = resolver.Address{Addr: a, ServerName: host}
	}
	r.InitialState(resolver.State{Addresses: addrs})
	opts := append(grpcclient.DialOptions(cfg.TLS),
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithChainUnaryInterceptor(retryUnary(cfg)),
		grpc.WithChainStreamInterceptor(mapStreamErrors),
	)
	conn, err := grpc.NewClient(r.Scheme()+":///bbs", opts...)
	if err != nil {
		return nil, fmt.Errorf("bbs client: %w", err)
	}
	return &Client{BBSServiceClient: bbsv1.NewBBSServiceClient(conn), conn: conn}, nil
}

// Close closes the connections.
func (c *Client) Close() error { return c.conn.Close() }

// retryUnary retries Unavailable answers with backoff (round robin moves each
// attempt to the next replica) and maps errors to models' sentinels.
func retryUnary(cfg Config) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		delay := cfg.RetryDelay
		var err error
		for attempt := 0; ; attempt++ {
			err = models.FromStatus(invoker(ctx, method, req, reply, cc, opts...))
			if !errors.Is(err, models.ErrUnavailable) || attempt >= cfg.Retries || ctx.Err() != nil {
				return err
			}
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return err
			}
			delay = min(2*delay, 2*time.Second)
		}
	}
}

func mapStreamErrors(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, models.FromStatus(err)
	}
	return &errorMappingStream{ClientStream: s}, nil
}

type errorMappingStream struct{ grpc.ClientStream }

func (s *errorMappingStream) RecvMsg(m any) error {
	return models.FromStatus(s.ClientStream.RecvMsg(m))
}
