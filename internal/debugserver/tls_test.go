package debugserver_test

import (
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/debugserver"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
)

// Without TLS the debug server refuses any address but loopback; with
// debug_tls it listens anywhere, serves HTTPS only to client certificates,
// and answers only the role operator.
func TestDebugServerLoopbackUnlessTLS(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "10.1.2.3:17017"} {
		err := <-ifrit.Invoke(debugserver.New(addr, nil, nil)).Wait()
		require.ErrorContains(t, err, "is not a loopback address", addr)
		require.ErrorContains(t, debugserver.CheckConfig(addr, tlsconfig.Files{}), "debug_address: ", addr)
	}
	require.NoError(t, debugserver.CheckConfig("127.0.0.1:17017", tlsconfig.Files{}))
	require.NoError(t, debugserver.CheckConfig("", tlsconfig.Files{}), "no debug server")

	ca := tlstest.NewCA(t, "gavel")
	serverFiles := ca.IssueFor(t, authz.Identity{Role: authz.BBS})
	require.ErrorContains(t, debugserver.CheckConfig("0.0.0.0:0", tlsconfig.Files{CertFile: serverFiles.CertFile, KeyFile: serverFiles.KeyFile}),
		"debug_tls.ca_file: required")
	require.NoError(t, debugserver.CheckConfig("0.0.0.0:0", serverFiles))

	noClientCA := tlsconfig.Files{CertFile: serverFiles.CertFile, KeyFile: serverFiles.KeyFile}
	srvNoCA := debugserver.NewFromConfig("127.0.0.1:0", noClientCA, nil, nil)
	require.ErrorContains(t, <-ifrit.Invoke(srvNoCA).Wait(), "without required client certificates")

	srv := debugserver.NewFromConfig("0.0.0.0:0", serverFiles, nil, nil)
	proc := ifrit.Invoke(srv)
	t.Cleanup(func() { proc.Signal(syscall.SIGTERM); <-proc.Wait() })
	_, port, err := net.SplitHostPort(srv.Addr())
	require.NoError(t, err)
	url := "https://127.0.0.1:" + port + "/metrics"

	fetch := func(files tlsconfig.Files) (int, string, error) {
		cfg, err := files.Client("")
		require.NoError(t, err)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	code, body, err := fetch(ca.IssueFor(t, authz.Identity{Role: authz.Operator}))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "go_goroutines")

	code, body, err = fetch(ca.IssueFor(t, authz.Identity{Role: authz.RouteEmitter}))
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, body, "role route-emitter may not read the debug endpoints (allowed: operator)")

	code, body, err = fetch(ca.Issue(t, "legacy"))
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, body, "reissue")

	_, _, err = fetch(tlsconfig.Files{CAFile: ca.File})
	require.Error(t, err, "no client certificate: the handshake fails")

	plain := &http.Client{Timeout: 5 * time.Second}
	resp, err := plain.Get("http://127.0.0.1:" + port + "/metrics")
	if err == nil {
		resp.Body.Close()
		require.NotEqual(t, http.StatusOK, resp.StatusCode, "plain HTTP is not served")
	}
}
