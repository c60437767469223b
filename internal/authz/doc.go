// Package authz says who may call what: every certificate Gavel issues
// carries an [Identity] (a role and, for a rep, its cell id) as a SAN URI
// spiffe://gavel/<role>[/<cell-id>], and one table (table.go) maps every RPC
// Gavel serves to the roles allowed to call it.
//
// internal/grpcserver enforces the table on every call of a server that
// requires client certificates: the caller's identity comes from its verified
// certificate, a call whose RPC is not in the table or whose role is not
// listed is refused with PermissionDenied naming the role and the RPC, and a
// certificate without a Gavel identity (issued before roles existed) is
// refused everything but the health service, with a message saying to
// reissue it. The identity is put in the call's context ([FromContext]), so
// handlers can make the checks that need the request body: a rep acts only
// for its own cell id ([CheckCell]).
//
// A server without TLS (insecure_plaintext: gavel dev, simulated cells, the
// benchmark) has no identities and allows every call.
package authz
