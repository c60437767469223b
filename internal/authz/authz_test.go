package authz_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gavelhq/gavel/internal/authz"
	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// gavelFiles are the proto files that declare the services Gavel serves.
func gavelFiles() []protoreflect.FileDescriptor {
	return []protoreflect.FileDescriptor{
		bbsv1.File_gavel_bbs_v1_bbs_proto,
		repv1.File_gavel_rep_v1_rep_proto,
		auctioneerv1.File_gavel_auctioneer_v1_auctioneer_proto,
	}
}

// Every RPC of every Gavel service has a rule: an RPC added without one
// fails here (at run time it would be refused to everyone).
func TestTableCoversEveryRPC(t *testing.T) {
	var missing []string
	n := 0
	for _, f := range gavelFiles() {
		for i := 0; i < f.Services().Len(); i++ {
			svc := f.Services().Get(i)
			for j := 0; j < svc.Methods().Len(); j++ {
				full := "/" + string(svc.FullName()) + "/" + string(svc.Methods().Get(j).Name())
				n++
				if _, ok := authz.Lookup(full); !ok {
					missing = append(missing, full)
				}
			}
		}
	}
	require.Empty(t, missing, "RPCs without a rule in internal/authz/table.go")
	require.Greater(t, n, 40)
}

// Every rule names valid roles, gives the operator everything but the
// components' protocol, and only rep-scoped rules are cell-scoped.
func TestTableRules(t *testing.T) {
	internal := 0
	for _, m := range authz.Methods() {
		r, _ := authz.Lookup(m)
		if r.AnyPeer {
			continue
		}
		require.Equal(t, !r.Internal, r.Allows(authz.Operator), "%s: the operator may call everything but the components' protocol", m)
		if r.Internal {
			internal++
		}
		for _, role := range r.Roles {
			require.True(t, role.Valid(), "%s: role %q", m, role)
		}
		if r.CellScoped {
			require.True(t, r.Allows(authz.Rep), "%s: cell-scoped rules are for reps", m)
			require.True(t, r.Internal, "%s: a cell's report is the components' protocol", m)
		}
	}
	require.Greater(t, internal, 15)
}

// The table's decisions for the attacks that motivated it.
func TestTableRefusesWhatEachRoleMustNotDo(t *testing.T) {
	refused := map[authz.Role][]string{
		authz.RouteEmitter: {bbsv1.BBSService_DesireLRP_FullMethodName, bbsv1.BBSService_CrashActualLRP_FullMethodName, bbsv1.BBSService_UpsertDomain_FullMethodName},
		authz.Controller:   {bbsv1.BBSService_ClaimActualLRP_FullMethodName, bbsv1.BBSService_StartActualLRP_FullMethodName, repv1.RepService_StopLRPInstance_FullMethodName, repv1.RepService_Drain_FullMethodName, bbsv1.BBSService_UpsertDomain_FullMethodName},
		authz.Rep:          {bbsv1.BBSService_DesireLRP_FullMethodName, repv1.RepService_Perform_FullMethodName, bbsv1.BBSService_FailActualLRP_FullMethodName},
		authz.BBS:          {bbsv1.BBSService_DesireLRP_FullMethodName, repv1.RepService_Drain_FullMethodName},
		// The CLI's certificate claimed an instance for a nonexistent cell,
		// started it at an outside address and stopped containers.
		authz.Operator: {bbsv1.BBSService_ClaimActualLRP_FullMethodName, bbsv1.BBSService_StartActualLRP_FullMethodName,
			repv1.RepService_StopLRPInstance_FullMethodName, repv1.RepService_Perform_FullMethodName,
			bbsv1.BBSService_EvacuateRunningActualLRP_FullMethodName, bbsv1.BBSService_BatchEvacuateActualLRPs_FullMethodName},
		authz.Auctioneer: {bbsv1.BBSService_DesireLRP_FullMethodName, bbsv1.BBSService_ClaimActualLRP_FullMethodName, bbsv1.BBSService_ListDesiredLRPs_FullMethodName,
			bbsv1.BBSService_BatchEvacuateActualLRPs_FullMethodName},
	}
	for role, methods := range refused {
		for _, m := range methods {
			r, ok := authz.Lookup(m)
			require.True(t, ok, m)
			require.False(t, r.Allows(role), "%s must not call %s", role, m)
		}
	}
	r, _ := authz.Lookup(bbsv1.BBSService_UpsertDomain_FullMethodName)
	require.True(t, r.Allows(authz.Bulker))
	// The batched evacuation is the rep's alone, for its own cell.
	r, _ = authz.Lookup(bbsv1.BBSService_BatchEvacuateActualLRPs_FullMethodName)
	for _, role := range authz.Roles() {
		require.Equal(t, role == authz.Rep, r.Allows(role), "BatchEvacuateActualLRPs for %s", role)
	}
	require.True(t, r.CellScoped && r.Internal)
	for _, m := range []string{repv1.RepService_Drain_FullMethodName, bbsv1.BBSService_UpsertDomain_FullMethodName, bbsv1.BBSService_RetireActualLRP_FullMethodName} {
		r, _ := authz.Lookup(m)
		require.True(t, r.Allows(authz.Operator), "the operator may call %s", m)
	}
}

func TestIdentityURI(t *testing.T) {
	for _, tc := range []struct {
		uri  string
		id   authz.Identity
		ok   bool
		err  string
		name string
	}{
		{uri: "spiffe://gavel/operator", id: authz.Identity{Role: authz.Operator}, ok: true, name: "operator"},
		{uri: "spiffe://gavel/rep/cell-7", id: authz.RepFor("cell-7"), ok: true, name: "rep-cell-7"},
		{uri: "spiffe://gavel/route-emitter", id: authz.Identity{Role: authz.RouteEmitter}, ok: true, name: "route-emitter"},
		{uri: "spiffe://other/operator"},
		{uri: "https://gavel/operator"},
		{uri: "spiffe://gavel/rep", ok: true, err: "cell id is required"},
		{uri: "spiffe://gavel/operator/cell-7", ok: true, err: "takes no cell id"},
		{uri: "spiffe://gavel/admin", ok: true, err: `role "admin": must be one of`},
		{uri: "spiffe://gavel/rep/a/b", ok: true, err: "want spiffe://gavel/<role>[/<cell-id>]"},
		{uri: "spiffe://gavel/rep/cell%207", ok: true, err: "must match"},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			u, err := url.Parse(tc.uri)
			require.NoError(t, err)
			id, ok, err := authz.ParseURI(u)
			require.Equal(t, tc.ok, ok)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.id, id)
			if ok {
				require.Equal(t, tc.uri, id.URI().String(), "round trip")
				require.Equal(t, tc.name, id.Name())
			}
		})
	}
}

func certWith(uris ...string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: "test"}}
	for _, s := range uris {
		u, _ := url.Parse(s)
		c.URIs = append(c.URIs, u)
	}
	return c
}

func TestAuthorize(t *testing.T) {
	desire := bbsv1.BBSService_DesireLRP_FullMethodName
	health := "/grpc.health.v1.Health/Check"

	id, err := authz.Authorize(desire, certWith("spiffe://gavel/controller"))
	require.NoError(t, err)
	require.Equal(t, authz.Controller, id.Role)

	_, err = authz.Authorize(desire, certWith("spiffe://gavel/route-emitter"))
	requireDenied(t, err, "role route-emitter may not call /gavel.bbs.v1.BBSService/DesireLRP (allowed: operator, controller, bulker)")

	_, err = authz.Authorize(desire, certWith())
	requireDenied(t, err, "reissue it with gavel certs")
	_, err = authz.Authorize(health, certWith())
	require.NoError(t, err, "health checks need no role")
	_, err = authz.Authorize(health, nil)
	require.NoError(t, err)
	_, err = authz.Authorize(desire, nil)
	requireDenied(t, err, "no verified client certificate")

	_, err = authz.Authorize(desire, certWith("spiffe://gavel/controller", "spiffe://gavel/operator"))
	requireDenied(t, err, "2 Gavel identities")
	_, err = authz.Authorize("/gavel.bbs.v1.BBSService/NotInTheTable", certWith("spiffe://gavel/operator"))
	requireDenied(t, err, "role operator may not call /gavel.bbs.v1.BBSService/NotInTheTable: the RPC is not in Gavel's table")
}

func TestCheckCell(t *testing.T) {
	claim := bbsv1.BBSService_ClaimActualLRP_FullMethodName
	ctx := authz.NewContext(context.Background(), authz.RepFor("cell-a"))
	require.NoError(t, authz.CheckCell(ctx, claim, "instance_key.cell_id", "cell-a"))
	err := authz.CheckCell(ctx, claim, "instance_key.cell_id", "cell-b")
	requireDenied(t, err, `role rep (cell "cell-a") may not call /gavel.bbs.v1.BBSService/ClaimActualLRP for instance_key.cell_id "cell-b"`)

	op := authz.NewContext(context.Background(), authz.Identity{Role: authz.Operator})
	require.NoError(t, authz.CheckCell(op, claim, "instance_key.cell_id", "cell-b"))
	require.NoError(t, authz.CheckCell(context.Background(), claim, "instance_key.cell_id", "cell-b"), "plaintext: no identity")
}

func requireDenied(t *testing.T, err error, contains string) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, codes.PermissionDenied, status.Code(err), err.Error())
	require.True(t, strings.Contains(status.Convert(err).Message(), contains), "%q does not contain %q", status.Convert(err).Message(), contains)
}

// BenchmarkAuthorize is the per-call cost of the role check (the identity is
// parsed from the verified certificate on every call).
func BenchmarkAuthorize(b *testing.B) {
	cert := certWith("spiffe://gavel/rep/cell-7")
	for i := 0; i < b.N; i++ {
		if _, err := authz.Authorize(bbsv1.BBSService_ClaimActualLRP_FullMethodName, cert); err != nil {
			b.Fatal(err)
		}
	}
}
