package integration_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/authz"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// The real daemons enforce roles end to end: the certificate of cell-1's rep
// cannot claim an instance for cell-2 (nor for a cell that does not exist),
// nor start one at an outside address for another cell; the route emitter's
// cannot desire or crash; the CLI's (operator) cannot act as a cell or stop a
// container on a rep; while the cluster, each component with its own
// certificate, runs the app.
func TestRolesEndToEnd(t *testing.T) {
	t.Parallel()
	c := start(t, options{})
	c.desire(appLRP("roles", 1))
	rows := c.waitRunning("roles", 1, placeTimeout)
	key := rows[0].GetKey()

	as := func(id authz.Identity) *client.Client {
		files := c.ca.IssueFor(t, id)
		cfg, err := files.Client("")
		if err != nil {
			t.Fatal(err)
		}
		cl, err := client.New(client.Config{Addresses: c.bbsAddrs, TLS: cfg, Retries: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	rep1 := as(authz.RepFor("cell-1"))
	emitter := as(authz.Identity{Role: authz.RouteEmitter})
	denied := func(what string, err error, parts ...string) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s: want PermissionDenied, got %v", what, err)
		}
		for _, p := range parts {
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("%s: %q does not name %q", what, err, p)
			}
		}
	}
	for _, cell := range []string{"cell-2", "no-such-cell"} {
		_, err := rep1.ClaimActualLRP(ctx(t), &bbsv1.ClaimActualLRPRequest{ProcessGuid: "roles", Index: 0,
			InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "rogue", CellId: cell}})
		denied("claim for "+cell, err, `role rep (cell "cell-1")`, "ClaimActualLRP", cell)
	}
	_, err := rep1.StartActualLRP(ctx(t), &bbsv1.StartActualLRPRequest{ActualLrpKey: key,
		InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "rogue", CellId: "cell-2"},
		NetInfo:     &modelsv1.ActualLRPNetInfo{Address: "203.0.113.7"}})
	denied("start for cell-2", err, "StartActualLRP", "cell-2")
	_, err = emitter.DesireLRP(ctx(t), &bbsv1.DesireLRPRequest{DesiredLrp: appLRP("emitted", 1)})
	denied("route emitter desires", err, "role route-emitter may not call /gavel.bbs.v1.BBSService/DesireLRP")
	_, err = emitter.CrashActualLRP(ctx(t), &bbsv1.CrashActualLRPRequest{ActualLrpKey: key, InstanceKey: rows[0].GetInstanceKey()})
	denied("route emitter crashes", err, "CrashActualLRP")

	// The CLI's certificate (the operator's) is not a cell's: it cannot claim
	// for a nonexistent cell, start an instance at an outside address, or
	// stop a container on a rep; it can drain (see the drain tests).
	_, err = c.client().ClaimActualLRP(ctx(t), &bbsv1.ClaimActualLRPRequest{ProcessGuid: "roles", Index: 0,
		InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: "rogue", CellId: "no-such-cell"}})
	denied("the operator claims", err, "role operator may not call /gavel.bbs.v1.BBSService/ClaimActualLRP (allowed: rep)")
	_, err = c.client().StartActualLRP(ctx(t), &bbsv1.StartActualLRPRequest{ActualLrpKey: key, InstanceKey: rows[0].GetInstanceKey(),
		NetInfo: &modelsv1.ActualLRPNetInfo{Address: "203.0.113.7"}})
	denied("the operator starts", err, "role operator may not call /gavel.bbs.v1.BBSService/StartActualLRP")
	cells, err := c.client().ListCells(ctx(t), &bbsv1.ListCellsRequest{})
	if err != nil || len(cells.GetCells()) == 0 {
		t.Fatalf("list cells: %v", err)
	}
	conn, err := grpc.NewClient(cells.GetCells()[0].GetRepAddress(), grpc.WithTransportCredentials(credentials.NewTLS(c.clientTLS)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = repv1.NewRepServiceClient(conn).StopLRPInstance(ctx(t), &repv1.StopLRPInstanceRequest{})
	denied("the operator stops a container", err, "role operator may not call /gavel.rep.v1.RepService/StopLRPInstance (allowed: bbs)")

	// The instance is untouched: still RUNNING on its cell at its address.
	after := c.waitRunning("roles", 1, placeTimeout)
	if after[0].GetInstanceKey().GetInstanceGuid() != rows[0].GetInstanceKey().GetInstanceGuid() || after[0].GetState() != modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING {
		t.Fatalf("the instance changed: %v → %v", rows[0], after[0])
	}
}
