package app

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/internal/tlstest"
)

// What a BBS exposes off loopback needs TLS: the debug endpoints need
// debug_tls, the API without TLS (insecure_plaintext) stays on loopback, and
// max_request_bytes has a floor; each refusal names the field.
func TestConfigRefusesExposureWithoutTLS(t *testing.T) {
	base := func() Config { return testConfig(t, etcdtest.Prefix(t), "bbs-exposure") }

	cfg := base()
	cfg.DebugAddress = "0.0.0.0:17017"
	require.ErrorContains(t, cfg.Validate(), "debug_address: \"0.0.0.0:17017\" is not a loopback address")
	cfg.DebugTLS = tlstest.NewCA(t, "gavel").IssueFor(t, authz.Identity{Role: authz.BBS})
	require.NoError(t, cfg.Validate(), "with debug_tls the debug server may listen anywhere")
	cfg.DebugTLS.CAFile = ""
	require.ErrorContains(t, cfg.Validate(), "debug_tls.ca_file: required")

	cfg = base()
	cfg.ListenAddress = "0.0.0.0:8889"
	require.ErrorContains(t, cfg.Validate(), "listen_address: grpcserver: listen address \"0.0.0.0:8889\": without TLS (insecure_plaintext)")

	cfg = base()
	cfg.MaxRequestBytes = 1024
	require.ErrorContains(t, cfg.Validate(), "max_request_bytes: must be 0 (default 4194304) or at least 65536 (got 1024)")
}
