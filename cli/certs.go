package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/certgen"
)

// certUse says which config fields take a role's certificate.
type certUse struct {
	role, user, fields string
}

// certUses lists, per role, who uses its certificate and in which fields
// (each field takes ca_file, cert_file and key_file).
func certUses() []certUse {
	return []certUse{
		{"bbs", "bbs", "tls, client_tls"},
		{"auctioneer", "auctioneer", "tls, bbs_tls, rep_client_tls"},
		{"rep", "rep of cell %s", "tls, bbs_tls"},
		{"route-emitter", "route-emitter", "bbs_tls"},
		{"operator", "gavel CLI (operator)", `--ca-file, --cert-file, --key-file, or "tls" in the client config`},
		{"controller", "a controller (external API)", "its BBS client's TLS"},
		{"bulker", "nsync bulker", "bbs_tls"},
	}
}

func newCertsCommand() *cobra.Command {
	var (
		dir               string
		hosts, components []string
		cellIDs           []string
		days              int
		force             bool
		caCertFile, caKey string
	)
	cmd := &cobra.Command{
		Use:   "certs --dir DIR",
		Short: "Write a CA and a mutual-TLS certificate per role (bbs, auctioneer, route-emitter, operator, controller, bulker, rep-<cell>)",
		Long: `Write a CA and, signed by it, one certificate and key per role: bbs, auctioneer,
route-emitter, operator (the gavel CLI's), controller, bulker, and rep-<cell-id> for
each cell of --cell-ids. Each certificate carries its role (and a rep's its cell id)
as a SAN URI, spiffe://gavel/<role>[/<cell-id>]; every server allows each role only
the calls of its table (README: Roles and certificates). Each is usable as both server
and client, ECDSA P-256, valid for --hosts. Keys are written mode 0600. Existing files
are never overwritten without --force. The output says which config field takes which
file.

With --ca-cert and --ca-key the certificates are signed by that existing CA instead
(nothing of the CA is written), so a cell added later, or a host that moved, gets a
certificate every running component already trusts:

  gavel certs --dir /etc/gavel/cell-7 --ca-cert ca.pem --ca-key ca-key.pem \
    --components rep --cell-ids cell-7 --hosts 10.0.0.7,cell-7.internal`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory to write the files into (created if absent; required)")
	f.StringSliceVar(&hosts, "hosts", certgen.DefaultHosts(), "DNS names and IP addresses every certificate is valid for (comma-separated)")
	f.IntVar(&days, "days", int(certgen.DefaultValidity/(24*time.Hour)), "validity in days")
	f.BoolVar(&force, "force", false, "overwrite existing files")
	f.StringSliceVar(&components, "components", certgen.Components(), "roles to issue certificates for (comma-separated; rep needs --cell-ids)")
	f.StringSliceVar(&cellIDs, "cell-ids", nil, "cells to issue rep certificates for, one each (rep-<cell-id>.pem; comma-separated)")
	f.StringVar(&caCertFile, "ca-cert", "", "sign with this existing CA certificate (PEM) instead of a new CA; needs --ca-key")
	f.StringVar(&caKey, "ca-key", "", "the existing CA's private key (PEM: PKCS #8, EC or RSA)")
	_ = cmd.MarkFlagRequired("dir")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if days < 1 {
			return fmt.Errorf("--days: must be at least 1 (got %d)", days)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("--dir: %w", err)
		}
		opts := certgen.DirOptions{
			Dir: abs, Hosts: hosts, Validity: time.Duration(days) * 24 * time.Hour, Force: force, Components: components, CellIDs: cellIDs,
		}
		if len(components) == 0 && len(cellIDs) == 0 {
			return errors.New("--components: name at least one certificate to issue")
		}
		if len(components) == 0 {
			opts.Components = []string{"rep"}
		}
		if (caCertFile == "") != (caKey == "") {
			return errors.New("--ca-cert and --ca-key: give both (an existing CA) or neither (a new CA)")
		}
		if caCertFile != "" {
			if opts.Authority, opts.AuthorityCertFile, err = loadAuthority(caCertFile, caKey); err != nil {
				return err
			}
		}
		w, err := certgen.WriteDir(opts)
		if errors.Is(err, certgen.ErrExists) {
			return fmt.Errorf("%w (pass --force to overwrite)", err)
		}
		if err != nil {
			return err
		}
		return printCerts(cmd, w, hosts, days)
	}
	return cmd
}

// loadAuthority reads an existing CA for gavel certs; it returns the CA and
// its certificate's absolute path (every certificate's ca_file).
func loadAuthority(certFile, keyFile string) (*certgen.Authority, string, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, "", fmt.Errorf("--ca-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("--ca-key: %w", err)
	}
	ca, err := certgen.LoadAuthority(certPEM, keyPEM)
	if err != nil {
		return nil, "", fmt.Errorf("--ca-cert %s, --ca-key %s: %w", certFile, keyFile, err)
	}
	abs, err := filepath.Abs(certFile)
	if err != nil {
		return nil, "", fmt.Errorf("--ca-cert: %w", err)
	}
	return ca, abs, nil
}

// printCerts says what was written and which config field takes which file.
func printCerts(cmd *cobra.Command, w certgen.Written, hosts []string, days int) error {
	out := cmd.OutOrStdout()
	if w.CAKeyFile == "" {
		fmt.Fprintf(out, "Wrote %d certificates signed by the existing CA to %s, valid %d days (at most until the CA expires) for %s.\n\n",
			len(w.Certs), filepath.Dir(w.Certs[0].Files.CertFile), days, strings.Join(hosts, ", "))
		fmt.Fprintf(out, "ca_file everywhere:  %s\n\n", w.CAFile)
	} else {
		fmt.Fprintf(out, "Wrote a CA and %d certificates to %s, valid %d days for %s.\n\n",
			len(w.Certs), filepath.Dir(w.CAFile), days, strings.Join(hosts, ", "))
		fmt.Fprintf(out, "ca_file everywhere:  %s\n", w.CAFile)
		fmt.Fprintf(out, "CA key:              %s (no daemon needs it: keep it offline)\n\n", w.CAKeyFile)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USED BY\tFIELDS (each takes ca_file, cert_file, key_file)\tCERT_FILE\tKEY_FILE")
	uses := map[string]certUse{}
	for _, u := range certUses() {
		uses[u.role] = u
	}
	use := func(c certgen.Cert) certUse {
		u, ok := uses[string(c.Identity.Role)]
		if !ok {
			return certUse{user: c.Component, fields: "-"}
		}
		if c.Identity.CellID != "" {
			u.user = fmt.Sprintf(u.user, c.Identity.CellID)
		}
		return u
	}
	for _, c := range w.Certs {
		u := use(c)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.user, u.fields, c.Files.CertFile, c.Files.KeyFile)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !hasRep(w.Certs) {
		fmt.Fprintln(out, "\nNo rep certificates: a rep's certificate names its cell; issue them with --cell-ids (each rep refuses a certificate for another cell).")
	}
	first := w.Certs[0]
	user := use(first).user
	_, err := fmt.Fprintf(out, "\nFor example, in the %s config:\n  \"tls\": {\"ca_file\": %q, \"cert_file\": %q, \"key_file\": %q}\n",
		user, w.CAFile, first.Files.CertFile, first.Files.KeyFile)
	return err
}

// hasRep reports whether a rep certificate was written.
func hasRep(certs []certgen.Cert) bool {
	for _, c := range certs {
		if c.Identity.Role == authz.Rep {
			return true
		}
	}
	return false
}
