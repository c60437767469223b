package authz

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
)

// Role is what a certificate's holder is allowed to do (see the table).
type Role string

// The roles of Gavel's certificates.
const (
	// Operator is a person with the gavel CLI: the external API, every
	// read, domains, drain and the debug endpoints; everything but the
	// components' own protocol (Rule.Internal).
	Operator Role = "operator"
	// Controller uses the external API: desire, update and remove LRPs,
	// tasks, retire instances, reads and events (a Cloud Controller, CI).
	Controller Role = "controller"
	// Bulker is a controller that may also mark domains fresh (UpsertDomain):
	// the nsync bulker.
	Bulker Role = "bulker"
	// Auctioneer reads cells, performs work on them and writes placement
	// failures back to the BBS.
	Auctioneer Role = "auctioneer"
	// Rep is a cell: it reads what it runs and reports the lifecycle of the
	// instances and tasks of its own cell id only.
	Rep Role = "rep"
	// RouteEmitter reads routing information and events.
	RouteEmitter Role = "route-emitter"
	// BBS is what the BBS calls on the auctioneer (auctions) and on reps
	// (stops, cancels, state).
	BBS Role = "bbs"
)

// Roles lists every role, in a fixed order.
func Roles() []Role {
	return []Role{Operator, Controller, Bulker, Auctioneer, Rep, RouteEmitter, BBS}
}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool {
	for _, x := range Roles() {
		if r == x {
			return true
		}
	}
	return false
}

// URI scheme and trust domain of identity URIs: spiffe://gavel/<role>[/<cell-id>].
const (
	uriScheme = "spiffe"
	uriDomain = "gavel"
)

// cellIDPattern is what a cell id in an identity may hold (the BBS's rule for
// cell ids and domains: safe in an etcd key and in a URI path).
var cellIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_.:-]+$`)

// MaxCellIDBytes bounds a cell id in an identity.
const MaxCellIDBytes = 128

// ErrNoIdentity means a verified certificate carries no Gavel identity: it
// was issued before roles existed (or by another tool) and must be reissued.
var ErrNoIdentity = errors.New("the certificate carries no Gavel role (no spiffe://gavel/<role> SAN URI): it was issued before roles existed; reissue it with gavel certs")

// Identity is who a certificate speaks for: a role and, for a rep, the cell
// id it acts for.
type Identity struct {
	Role   Role
	CellID string
}

// RepFor is the identity of the rep of cellID.
func RepFor(cellID string) Identity { return Identity{Role: Rep, CellID: cellID} }

// Validate checks the role and the cell id: a rep needs a cell id, other
// roles must have none.
func (id Identity) Validate() error {
	if !id.Role.Valid() {
		return fmt.Errorf("role %q: must be one of %s", id.Role, rolesList())
	}
	switch {
	case id.Role == Rep && id.CellID == "":
		return errors.New("role rep: a cell id is required (a rep acts only for its own cell)")
	case id.Role != Rep && id.CellID != "":
		return fmt.Errorf("role %s: takes no cell id (got %q)", id.Role, id.CellID)
	case id.CellID != "" && (len(id.CellID) > MaxCellIDBytes || !cellIDPattern.MatchString(id.CellID)):
		return fmt.Errorf("cell id %q: must match %s and be at most %d bytes", id.CellID, cellIDPattern, MaxCellIDBytes)
	}
	return nil
}

// String is "operator" or "rep/cell-7".
func (id Identity) String() string {
	if id.CellID == "" {
		return string(id.Role)
	}
	return string(id.Role) + "/" + id.CellID
}

// Name is a file and common name for the identity's certificate: the role,
// or "rep-<cell-id>".
func (id Identity) Name() string {
	if id.CellID == "" {
		return string(id.Role)
	}
	return string(id.Role) + "-" + id.CellID
}

// URI is the SAN URI that carries the identity in a certificate.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: uriScheme, Host: uriDomain, Path: "/" + id.String()}
}

// ParseURI reads an identity URI. ok is false for a URI that is not in
// Gavel's trust domain (spiffe://gavel/...); err is set for one that is but
// does not name a valid identity.
func ParseURI(u *url.URL) (id Identity, ok bool, err error) {
	if u == nil || u.Scheme != uriScheme || u.Host != uriDomain {
		return Identity{}, false, nil
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) > 2 || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return Identity{}, true, fmt.Errorf("identity URI %q: want spiffe://gavel/<role>[/<cell-id>]", u)
	}
	id = Identity{Role: Role(parts[0])}
	if len(parts) == 2 {
		id.CellID = parts[1]
	}
	if err := id.Validate(); err != nil {
		return Identity{}, true, fmt.Errorf("identity URI %q: %w", u, err)
	}
	return id, true, nil
}

// FromCertificate is the identity a certificate carries: exactly one
// spiffe://gavel/ SAN URI. A certificate with none returns ErrNoIdentity; one
// with several, or an invalid one, an error naming it.
func FromCertificate(cert *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		id, ok, err := ParseURI(u)
		if err != nil {
			return Identity{}, err
		}
		if ok {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return Identity{}, ErrNoIdentity
	case 1:
		return found[0], nil
	default:
		return Identity{}, fmt.Errorf("the certificate carries %d Gavel identities (%s, %s, ...): want exactly one", len(found), found[0], found[1])
	}
}

func rolesList() string {
	names := make([]string, 0, len(Roles()))
	for _, r := range Roles() {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}

// FromCertFile is the identity of the first certificate of a PEM file.
func FromCertFile(path string) (Identity, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Identity{}, err
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return Identity{}, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return Identity{}, fmt.Errorf("%s: %w", path, err)
		}
		return FromCertificate(cert)
	}
}
