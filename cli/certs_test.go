package cli

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/internal/grpcserver"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
)

// files are a component's files as gavel certs writes them into dir.
func files(dir, component string) tlsconfig.Files {
	return tlsconfig.Files{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, component+".pem"),
		KeyFile:  filepath.Join(dir, component+"-key.pem"),
	}
}

// The files gavel certs writes load with tlsconfig, and a gRPC server with
// one component's and a client with another's complete a mutual handshake.
func TestCertsWritesFilesThatServeMutualTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := execute(t, "certs", "--dir", dir, "--hosts", "localhost,127.0.0.1", "--days", "30", "--cell-ids", "cell-1,cell-2")
	require.NoError(t, err)
	for _, want := range []string{
		filepath.Join(dir, "ca.pem"), "tls, client_tls", "tls, bbs_tls, rep_client_tls", "rep of cell cell-2",
		"route-emitter", "--ca-file, --cert-file, --key-file", filepath.Join(dir, "operator-key.pem"), "valid 30 days",
		"nsync bulker",
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "No rep certificates")

	for _, component := range []string{"bbs", "auctioneer", "rep-cell-1", "rep-cell-2", "route-emitter", "operator", "controller", "bulker"} {
		f := files(dir, component)
		_, err := f.Server()
		require.NoError(t, err, component)
		_, err = f.Client("")
		require.NoError(t, err, component)
		info, err := os.Stat(f.KeyFile)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "%s key", component)
	}

	serverTLS, err := files(dir, "bbs").Server()
	require.NoError(t, err)
	srv := grpcserver.New(grpcserver.Options{Addr: "127.0.0.1:0", TLS: serverTLS})
	proc := ifrit.Invoke(srv)
	t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })
	health := func(f tlsconfig.Files) error { return tlstest.HealthCheck(srv.Addr(), tlstest.Creds(t, f, "")) }
	require.NoError(t, health(files(dir, "operator")), "the CLI's certificate is served")
	require.Error(t, health(tlsconfig.Files{CAFile: filepath.Join(dir, "ca.pem")}), "no certificate is refused")
}

func TestCertsRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	_, err := execute(t, "certs", "--dir", dir)
	require.NoError(t, err)
	before, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	require.NoError(t, err)

	cases := []struct {
		name string
		args []string
		want string // empty: succeeds
	}{
		{"again without --force", []string{"certs", "--dir", dir}, "refusing to overwrite existing files"},
		{"no --dir", []string{"certs"}, `required flag(s) "dir" not set`},
		{"zero days", []string{"certs", "--dir", t.TempDir(), "--days", "0"}, "--days: must be at least 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := execute(t, tc.args...)
			require.ErrorContains(t, err, tc.want)
		})
	}
	after, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	require.NoError(t, err)
	require.Equal(t, before, after, "the CA was not replaced")
	require.ErrorContains(t, func() error { _, err := execute(t, "certs", "--dir", dir); return err }(), "pass --force to overwrite")

	_, err = execute(t, "certs", "--dir", dir, "--force")
	require.NoError(t, err)
	after, err = os.ReadFile(filepath.Join(dir, "ca.pem"))
	require.NoError(t, err)
	require.NotEqual(t, before, after, "--force writes a new CA")
	_, err = files(dir, "operator").Server()
	require.NoError(t, err)
}

// The CLI reaches a BBS that runs on gavel certs' files with the client
// certificate, and says what is wrong without one.
func TestCLIOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	_, err := execute(t, "certs", "--dir", dir)
	require.NoError(t, err)
	addr := startBBS(t, func(c *app.Config) {
		c.InsecurePlaintext = false
		c.TLS, c.ClientTLS = files(dir, "bbs"), files(dir, "bbs")
	})
	client := files(dir, "operator")
	cases := []struct {
		name string
		args []string
		want string // empty: succeeds
	}{
		{"client certificate", []string{"--ca-file", client.CAFile, "--cert-file", client.CertFile, "--key-file", client.KeyFile}, ""},
		{"plaintext", nil, "does it want mTLS? (pass --ca-file, --cert-file and --key-file; gavel certs writes them)"},
		{"CA only", []string{"--ca-file", client.CAFile}, "TLS with the BBS at " + addr + " failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"lrps", "--timeout", "5s", "--config", filepath.Join(t.TempDir(), "none.json")}, tc.args...)
			_, err := gavel(t, addr, args...)
			if tc.want == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.want)
			}
		})
	}
}

// A certificate for a cell added later, signed by the CA of the first run,
// is trusted by the components that already run on that CA's files.
func TestCertsFromAnExistingCA(t *testing.T) {
	first := t.TempDir()
	_, err := execute(t, "certs", "--dir", first)
	require.NoError(t, err)
	caCert, caKey := filepath.Join(first, "ca.pem"), filepath.Join(first, "ca-key.pem")

	cell := filepath.Join(t.TempDir(), "cell-7")
	out, err := execute(t, "certs", "--dir", cell, "--ca-cert", caCert, "--ca-key", caKey, "--components", "rep", "--cell-ids", "cell-7", "--hosts", "127.0.0.1,cell-7.internal")
	require.NoError(t, err)
	require.Contains(t, out, "Wrote 1 certificates signed by the existing CA")
	require.Contains(t, out, "ca_file everywhere:  "+caCert)
	entries, err := os.ReadDir(cell)
	require.NoError(t, err)
	require.Len(t, entries, 2, "only rep-cell-7.pem and rep-cell-7-key.pem")

	serverTLS, err := files(first, "bbs").Server()
	require.NoError(t, err)
	srv := grpcserver.New(grpcserver.Options{Addr: "127.0.0.1:0", TLS: serverTLS})
	proc := ifrit.Invoke(srv)
	t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })
	newRep := tlsconfig.Files{CAFile: caCert, CertFile: filepath.Join(cell, "rep-cell-7.pem"), KeyFile: filepath.Join(cell, "rep-cell-7-key.pem")}
	require.NoError(t, tlstest.HealthCheck(srv.Addr(), tlstest.Creds(t, newRep, "")), "the BBS of the first run accepts the new cell's certificate")

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"--ca-cert", caCert}, "--ca-cert and --ca-key: give both"},
		{"key of a leaf", []string{"--ca-cert", caCert, "--ca-key", filepath.Join(first, "bbs-key.pem")}, "CA key: it is not the key of CA certificate"},
		{"leaf as CA", []string{"--ca-cert", filepath.Join(first, "bbs.pem"), "--ca-key", filepath.Join(first, "bbs-key.pem")}, "is not a CA"},
		{"missing file", []string{"--ca-cert", filepath.Join(first, "nope.pem"), "--ca-key", caKey}, "--ca-cert: open"},
		{"no components", []string{"--components", ""}, "--components: name at least one"},
		{"rep without cell ids", []string{"--components", "rep"}, "give the cell ids (gavel certs --cell-ids)"},
		{"unknown role", []string{"--components", "admin"}, `component "admin": want one of the roles`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := execute(t, append([]string{"certs", "--dir", dir}, tc.args...)...)
			require.ErrorContains(t, err, tc.want)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Empty(t, entries, "nothing is written")
		})
	}
}
