package certgen

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/tlsconfig"
)

// File names WriteDir uses inside its directory; a component's certificate
// is "<component>.pem" and its key "<component>-key.pem".
const (
	// CAFileName is the CA certificate: every config's ca_file.
	CAFileName = "ca.pem"
	// CAKeyFileName is the CA's key; no daemon needs it.
	CAKeyFileName = "ca-key.pem"
)

// ErrExists is returned (wrapped, naming the files) by WriteDir when a file
// it would write already exists and Force is not set.
var ErrExists = errors.New("certgen: refusing to overwrite existing files")

// Components are the certificates WriteDir issues by default, one per
// role of internal/authz but rep (whose certificates name their cell: see
// DirOptions.CellIDs): the daemons', the operator's (the gavel CLI), a
// controller's and the nsync bulker's.
func Components() []string {
	return []string{"bbs", "auctioneer", "route-emitter", "operator", "controller", "bulker"}
}

// DirOptions say what WriteDir writes.
type DirOptions struct {
	// Dir receives the files; it is created (mode 0700) if absent.
	Dir string
	// Hosts are the DNS names and IP addresses every certificate is valid
	// for (default DefaultHosts()).
	Hosts []string
	// Validity is how long the CA and certificates are valid (default DefaultValidity).
	Validity time.Duration
	// Components name the roles to issue certificates for (default
	// Components()); "rep" needs CellIDs.
	Components []string
	// CellIDs are the cells to issue rep certificates for, one each
	// ("rep-<cell-id>.pem"), whether or not Components names rep.
	CellIDs []string
	// Force overwrites existing files instead of refusing.
	Force bool
	// Authority, when set, signs the certificates instead of a new CA, and
	// AuthorityCertFile (required with it) is where its certificate lives:
	// every certificate's ca_file. No CA file is written then.
	Authority         *Authority
	AuthorityCertFile string
}

// Cert is one component's certificate as written.
type Cert struct {
	// Component is the certificate's name (its common name and file name):
	// the role, or "rep-<cell-id>".
	Component string
	// Identity is what the certificate carries (its SAN URI).
	Identity authz.Identity
	// Files are the CA, the certificate and its key, ready for a config.
	Files tlsconfig.Files
}

// Written lists what WriteDir wrote.
type Written struct {
	// CAFile is the CA certificate.
	CAFile string
	// CAKeyFile is the CA's private key; empty when an existing CA signed.
	CAKeyFile string
	// Certs are the components' certificates, in the order asked for.
	Certs []Cert
}

// WriteDir generates a CA (or uses opts.Authority) and, signed by it, one
// server-and-client certificate per component, and writes them into
// opts.Dir: certificates mode 0644, keys 0600. Everything is generated before
// anything is written, and unless opts.Force nothing is written when any of
// the files exists (the error wraps ErrExists and names them).
func WriteDir(opts DirOptions) (Written, error) {
	if opts.Dir == "" {
		return Written{}, errors.New("certgen: a directory is required")
	}
	if len(opts.Hosts) == 0 {
		opts.Hosts = DefaultHosts()
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultValidity
	}
	if len(opts.Components) == 0 {
		opts.Components = Components()
	}
	type file struct {
		path string
		data []byte
		mode fs.FileMode
	}
	ca := opts.Authority
	var w Written
	var files []file
	if ca == nil {
		var err error
		if ca, err = NewAuthority("gavel-ca", opts.Validity); err != nil {
			return Written{}, err
		}
		w = Written{CAFile: filepath.Join(opts.Dir, CAFileName), CAKeyFile: filepath.Join(opts.Dir, CAKeyFileName)}
		files = []file{{w.CAFile, ca.CertPEM, 0o644}, {w.CAKeyFile, ca.KeyPEM, 0o600}}
	} else {
		if opts.AuthorityCertFile == "" {
			return Written{}, errors.New("certgen: AuthorityCertFile is required with Authority (it is every certificate's ca_file)")
		}
		w = Written{CAFile: opts.AuthorityCertFile}
	}
	ids, err := identities(opts.Components, opts.CellIDs)
	if err != nil {
		return Written{}, err
	}
	for _, id := range ids {
		name := id.Name()
		leaf, err := ca.IssueFor(id, opts.Hosts, opts.Validity)
		if err != nil {
			return Written{}, err
		}
		c := Cert{Component: name, Identity: id, Files: tlsconfig.Files{
			CAFile:   w.CAFile,
			CertFile: filepath.Join(opts.Dir, name+".pem"),
			KeyFile:  filepath.Join(opts.Dir, name+"-key.pem"),
		}}
		w.Certs = append(w.Certs, c)
		files = append(files, file{c.Files.CertFile, leaf.CertPEM, 0o644}, file{c.Files.KeyFile, leaf.KeyPEM, 0o600})
	}

	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return Written{}, fmt.Errorf("certgen: %w", err)
	}
	if !opts.Force {
		var existing []string
		for _, f := range files {
			if _, err := os.Lstat(f.path); err == nil {
				existing = append(existing, f.path)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return Written{}, fmt.Errorf("certgen: %w", err)
			}
		}
		if len(existing) > 0 {
			return Written{}, fmt.Errorf("%w: %s", ErrExists, strings.Join(existing, ", "))
		}
	}
	for _, f := range files {
		if err := writeFile(f.path, f.data, f.mode, opts.Force); err != nil {
			return Written{}, err
		}
	}
	return w, nil
}

// identities are the certificates to issue: one per role of components but
// rep, then one rep per cell id. Roles must be known and unique; rep needs
// cell ids.
func identities(components, cellIDs []string) ([]authz.Identity, error) {
	var ids []authz.Identity
	seen := map[string]bool{}
	wantRep := false
	for _, name := range components {
		role := authz.Role(name)
		switch {
		case seen[name]:
			return nil, fmt.Errorf("certgen: component %q: named twice", name)
		case !role.Valid():
			return nil, fmt.Errorf("certgen: component %q: want one of the roles %s", name, strings.Join(roleNames(), ", "))
		case role == authz.Rep:
			wantRep = true
		default:
			ids = append(ids, authz.Identity{Role: role})
		}
		seen[name] = true
	}
	if wantRep && len(cellIDs) == 0 {
		return nil, errors.New("certgen: component rep: a rep's certificate names its cell: give the cell ids (gavel certs --cell-ids)")
	}
	for _, cell := range cellIDs {
		id := authz.RepFor(cell)
		if err := id.Validate(); err != nil {
			return nil, fmt.Errorf("certgen: cell id %q: %w", cell, err)
		}
		if seen["rep/"+cell] {
			return nil, fmt.Errorf("certgen: cell id %q: named twice", cell)
		}
		seen["rep/"+cell] = true
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, errors.New("certgen: no certificate to issue")
	}
	return ids, nil
}

func roleNames() []string {
	var out []string
	for _, r := range authz.Roles() {
		out = append(out, string(r))
	}
	return out
}

// writeFile writes data to path with mode, refusing an existing file unless
// overwrite (the mode is set even on a file that existed).
func writeFile(path string, data []byte, mode fs.FileMode, overwrite bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", ErrExists, path)
	}
	if err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("certgen: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("certgen: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certgen: writing %s: %w", path, err)
	}
	return nil
}
