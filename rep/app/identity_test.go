package app_test

import (
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/internal/tlstest"
	"github.com/gavelhq/gavel/rep/app"
)

// A rep refuses to start with a certificate that is not its own cell's (the
// BBS would refuse its every report), naming the field, both identities and
// how to issue the right one; also a certificate without a role, and
// simulated cells with TLS (they would share one cell's certificate).
func TestRepRefusesAnotherCellsCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "gavel")
	other := ca.IssueFor(t, authz.RepFor("cell-b"))
	legacy := ca.Issue(t, "rep")
	own := ca.IssueFor(t, authz.RepFor("cell-a"))
	cases := []struct {
		name  string
		tweak func(*app.Config)
		want  []string
	}{
		{"another cell's certificate", func(c *app.Config) { c.TLS, c.BBSTLS = other, other },
			[]string{"tls.cert_file", "the certificate is for rep/cell-b, not for this rep (cell_id \"cell-a\")", "gavel certs --components rep --cell-ids cell-a"}},
		{"another cell's client certificate", func(c *app.Config) { c.TLS, c.BBSTLS = own, other },
			[]string{"bbs_tls.cert_file", "rep/cell-b"}},
		{"a certificate without a role", func(c *app.Config) { c.TLS, c.BBSTLS = legacy, legacy },
			[]string{"tls.cert_file", "no Gavel role", "reissue"}},
		{"simulated cells", func(c *app.Config) {
			c.TLS, c.BBSTLS = own, own
			c.Backend, c.SimCells = app.BackendSim, 2
		}, []string{"sim_cells: 2 simulated cells would share one certificate", "insecure_plaintext"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := repConfig(t, etcdtest.Prefix(t), "127.0.0.1:1", "cell-a")
			cfg.InsecurePlaintext = false
			tc.tweak(&cfg)
			require.NoError(t, cfg.Validate())
			proc := ifrit.Background(app.New(cfg, lager.NewLogger("rep")).Runner())
			select {
			case err := <-proc.Wait():
				require.Error(t, err)
				for _, w := range tc.want {
					require.Contains(t, err.Error(), w)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the rep did not refuse its certificate")
			}
		})
	}
}
