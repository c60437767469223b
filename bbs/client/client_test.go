package client_test

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/certgen"
	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

// pinger is a BBS that only answers Ping.
type pinger struct {
	bbsv1.UnimplementedBBSServiceServer
}

func (pinger) Ping(context.Context, *bbsv1.PingRequest) (*bbsv1.PingResponse, error) {
	return &bbsv1.PingResponse{Available: true}, nil
}

// write writes a CA and one certificate valid only for hosts, as gavel certs does.
func write(t *testing.T, hosts ...string) tlsconfig.Files {
	t.Helper()
	w, err := certgen.WriteDir(certgen.DirOptions{Dir: filepath.Join(t.TempDir(), "certs"), Hosts: hosts, Components: []string{"bbs"}})
	require.NoError(t, err)
	return w.Certs[0].Files
}

// Each replica's certificate is checked against the host of its own address:
// a certificate valid only for 127.0.0.1 is accepted, one valid for another
// host is refused.
func TestVerifiesEachReplicaAgainstItsHost(t *testing.T) {
	cases := []struct {
		name  string
		hosts []string
		ok    bool
	}{
		{"certificate for the address", []string{"127.0.0.1"}, true},
		{"certificate for another host", []string{"bbs.example.com", "10.1.2.3"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := write(t, tc.hosts...)
			serverTLS, err := files.Server()
			require.NoError(t, err)
			srv := grpcserver.New(grpcserver.Options{
				Addr: "127.0.0.1:0", TLS: serverTLS,
				Register: func(s grpc.ServiceRegistrar) { bbsv1.RegisterBBSServiceServer(s, pinger{}) },
			})
			proc := ifrit.Invoke(srv)
			t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })

			clientTLS, err := files.Client("")
			require.NoError(t, err)
			c, err := client.New(client.Config{Addresses: []string{srv.Addr()}, TLS: clientTLS, Retries: 1})
			require.NoError(t, err)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = c.Ping(ctx, &bbsv1.PingRequest{})
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, "certificate")
			}
		})
	}
}
