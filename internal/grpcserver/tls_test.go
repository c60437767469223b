package grpcserver_test

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
)

func TestMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "gavel")
	serverTLS, err := ca.Issue(t, "bbs.service").Server()
	require.NoError(t, err)

	srv := grpcserver.New(grpcserver.Options{Addr: "127.0.0.1:0", TLS: serverTLS})
	proc := ifrit.Invoke(srv)
	t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })

	check := func(files tlsconfig.Files) error {
		return tlstest.HealthCheck(srv.Addr(), tlstest.Creds(t, files, "bbs.service"))
	}

	assert.NoError(t, check(ca.Issue(t, "rep")), "a client with a certificate from the CA is served")
	assert.Error(t, check(tlsconfig.Files{CAFile: ca.File}), "a client without a certificate is refused")
	rogue := tlstest.NewCA(t, "rogue").Issue(t, "rep")
	rogue.CAFile = ca.File // trusts the server; only its own certificate is foreign
	assert.Error(t, check(rogue), "a client with a certificate from another CA is refused")
}
