package authz

import (
	"context"
	"crypto/x509"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ctxKey is the context key of a caller's identity.
type ctxKey struct{}

// NewContext returns ctx carrying the caller's identity.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext is the caller's identity; ok is false when the call carries
// none (a plaintext server, where every call is allowed, or a health check).
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// PeerCertificate is the verified leaf certificate of the call's peer, or nil
// when the connection is not TLS or the peer sent no certificate.
func PeerCertificate(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// Authorize decides a call to fullMethod by the holder of cert (the peer's
// verified certificate; nil when it sent none): it returns the caller's
// identity, or a PermissionDenied status error naming the role and the RPC.
// An RPC absent from the table is refused (default deny).
func Authorize(fullMethod string, cert *x509.Certificate) (Identity, error) {
	rule, known := table[fullMethod]
	if cert == nil {
		if rule.AnyPeer {
			return Identity{}, nil
		}
		return Identity{}, status.Errorf(codes.PermissionDenied, "%s: refused: the call carries no verified client certificate, so no role", fullMethod)
	}
	id, err := FromCertificate(cert)
	if err != nil {
		if rule.AnyPeer {
			return Identity{}, nil
		}
		return Identity{}, status.Errorf(codes.PermissionDenied, "%s: refused to certificate %q: %v", fullMethod, cert.Subject.CommonName, err)
	}
	switch {
	case !known:
		return id, status.Errorf(codes.PermissionDenied, "role %s may not call %s: the RPC is not in Gavel's table of RPCs and roles (internal/authz), so no role may", id.Role, fullMethod)
	case !rule.Allows(id.Role):
		return id, status.Errorf(codes.PermissionDenied, "role %s may not call %s (allowed: %s)", id.Role, fullMethod, joinRoles(rule.Roles))
	}
	return id, nil
}

// AuthorizeContext authorizes the call of ctx (see Authorize) and returns ctx
// carrying the caller's identity.
func AuthorizeContext(ctx context.Context, fullMethod string) (context.Context, error) {
	id, err := Authorize(fullMethod, PeerCertificate(ctx))
	if err != nil {
		return ctx, err
	}
	if id.Role == "" {
		return ctx, nil
	}
	return NewContext(ctx, id), nil
}

// CheckCell refuses a rep acting for a cell other than its own: when the
// caller of ctx is a rep and cellID (the request's field named field) is not
// its cell id, it returns PermissionDenied naming the role, the RPC, the
// field and both cell ids. Other callers (and calls without identity) pass:
// the table already decided they may make the call.
func CheckCell(ctx context.Context, fullMethod, field, cellID string) error {
	id, ok := FromContext(ctx)
	if !ok || id.Role != Rep || cellID == id.CellID {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "role rep (cell %q) may not call %s for %s %q: a rep acts only for its own cell id", id.CellID, fullMethod, field, cellID)
}

func joinRoles(rs []Role) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}
