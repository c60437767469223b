package tlstest

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gavelhq/gavel/internal/tlsconfig"
)

// Creds are the client credentials of files for serverName (as
// tlsconfig.Files.Client takes it); a file that does not load fails t.
func Creds(t testing.TB, files tlsconfig.Files, serverName string) credentials.TransportCredentials {
	t.Helper()
	cfg, err := files.Client(serverName)
	if err != nil {
		t.Fatalf("client TLS: %v", err)
	}
	return credentials.NewTLS(cfg)
}

// HealthCheck asks the gRPC health service at addr over creds once, within
// 5 s: nil when the server answered, so a refused handshake is an error.
func HealthCheck(addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}
