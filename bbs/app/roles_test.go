package app

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/authz"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// requireDenied asserts a PermissionDenied whose message holds every part.
func requireDenied(t *testing.T, err error, parts ...string) {
	t.Helper()
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	for _, p := range parts {
		require.Contains(t, status.Convert(err).Message(), p)
	}
}

// The real BBS over mTLS enforces roles: a rep's certificate acts only for
// its own cell id (claim, start, batch claim, start task, reject a task,
// remove), the route emitter's cannot desire or crash, a controller's cannot
// mark domains fresh, and a certificate without a role is refused.
func TestRolesOverMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "gavel")
	cfg := testConfig(t, etcdtest.Prefix(t), "bbs-roles")
	cfg.InsecurePlaintext = false
	bbsFiles := ca.IssueFor(t, authz.Identity{Role: authz.BBS})
	cfg.TLS, cfg.ClientTLS = bbsFiles, bbsFiles
	require.NoError(t, cfg.Validate())
	b := startBBS(t, cfg)
	waitActive(t, b)

	as := func(files tlsconfig.Files) *client.Client {
		tlsCfg, err := files.Client("")
		require.NoError(t, err)
		c, err := client.New(client.Config{Addresses: []string{b.Addr()}, TLS: tlsCfg, Retries: 1})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	operator := as(ca.IssueFor(t, authz.Identity{Role: authz.Operator}))
	controller := as(ca.IssueFor(t, authz.Identity{Role: authz.Controller}))
	emitter := as(ca.IssueFor(t, authz.Identity{Role: authz.RouteEmitter}))
	repA := as(ca.IssueFor(t, authz.RepFor("cell-a")))
	repB := as(ca.IssueFor(t, authz.RepFor("cell-b")))
	legacy := as(ca.Issue(t, "old-client"))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ik := func(cell string) *modelsv1.ActualLRPInstanceKey {
		return &modelsv1.ActualLRPInstanceKey{InstanceGuid: "ig-" + cell, CellId: cell}
	}

	_, err := controller.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg", 3)})
	require.NoError(t, err, "a controller desires LRPs")
	_, err = controller.UpsertDomain(ctx, &bbsv1.UpsertDomainRequest{Domain: "d"})
	requireDenied(t, err, "role controller may not call /gavel.bbs.v1.BBSService/UpsertDomain")
	_, err = operator.UpsertDomain(ctx, &bbsv1.UpsertDomainRequest{Domain: "d"})
	require.NoError(t, err, "the operator marks domains fresh")

	_, err = emitter.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg-emitter", 1)})
	requireDenied(t, err, "role route-emitter may not call /gavel.bbs.v1.BBSService/DesireLRP")
	_, err = emitter.CrashActualLRP(ctx, &bbsv1.CrashActualLRPRequest{ActualLrpKey: &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"}, InstanceKey: ik("cell-a")})
	requireDenied(t, err, "role route-emitter may not call /gavel.bbs.v1.BBSService/CrashActualLRP")
	list, err := emitter.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{"pg"}})
	require.NoError(t, err, "the route emitter reads")
	require.Len(t, list.GetActualLrps(), 3)

	// A rep of cell A cannot claim or start for cell B; for itself it can.
	_, err = repA.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "pg", Index: 0, InstanceKey: ik("cell-b")})
	requireDenied(t, err, `role rep (cell "cell-a") may not call /gavel.bbs.v1.BBSService/ClaimActualLRP for instance_key.cell_id "cell-b"`)
	_, err = repA.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "pg", Index: 0, InstanceKey: ik("cell-a")})
	require.NoError(t, err)
	key := &modelsv1.ActualLRPKey{ProcessGuid: "pg", Index: 0, Domain: "d"}
	net := &modelsv1.ActualLRPNetInfo{Address: "10.9.9.9"}
	_, err = repA.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: key, InstanceKey: ik("cell-b"), NetInfo: net})
	requireDenied(t, err, "StartActualLRP", `"cell-b"`)
	_, err = repA.StartActualLRP(ctx, &bbsv1.StartActualLRPRequest{ActualLrpKey: key, InstanceKey: ik("cell-a"), NetInfo: net})
	require.NoError(t, err)
	_, err = repB.CrashActualLRP(ctx, &bbsv1.CrashActualLRPRequest{ActualLrpKey: key, InstanceKey: ik("cell-a")})
	requireDenied(t, err, "CrashActualLRP", `"cell-a"`)
	_, err = repB.EvacuateRunningActualLRP(ctx, &bbsv1.EvacuateRunningActualLRPRequest{ActualLrpKey: key, InstanceKey: ik("cell-a"), NetInfo: net})
	requireDenied(t, err, "EvacuateRunningActualLRP", `"cell-a"`)
	_, err = repB.RemoveActualLRP(ctx, &bbsv1.RemoveActualLRPRequest{ProcessGuid: "pg", Index: 0})
	requireDenied(t, err, "without instance_key")
	_, err = repA.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg-rep", 1)})
	requireDenied(t, err, "role rep may not call /gavel.bbs.v1.BBSService/DesireLRP")

	batch, err := repA.BatchClaimActualLRPs(ctx, &bbsv1.BatchClaimActualLRPsRequest{Claims: []*bbsv1.ClaimActualLRPRequest{
		{ProcessGuid: "pg", Index: 1, InstanceKey: ik("cell-a")},
		{ProcessGuid: "pg", Index: 2, InstanceKey: ik("cell-b")},
	}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), batch.GetResults()[0].GetCode())
	require.Equal(t, int32(codes.PermissionDenied), batch.GetResults()[1].GetCode(), batch.GetResults()[1].GetMessage())

	// Tasks: start for another cell is refused; a rep hands back only a task of its own cell.
	_, err = controller.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: "tg", Domain: "d", Definition: &modelsv1.TaskDefinition{
		RootFs: "preloaded:cflinuxfs4", Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/true"}}},
	}})
	require.NoError(t, err)
	_, err = repA.StartTask(ctx, &bbsv1.StartTaskRequest{TaskGuid: "tg", CellId: "cell-b"})
	requireDenied(t, err, "StartTask", `cell_id "cell-b"`)
	_, err = repB.StartTask(ctx, &bbsv1.StartTaskRequest{TaskGuid: "tg", CellId: "cell-b"})
	require.NoError(t, err)
	_, err = repA.RejectTask(ctx, &bbsv1.RejectTaskRequest{TaskGuid: "tg", RejectionReason: "mine now"})
	requireDenied(t, err, "RejectTask", `"cell-b"`)
	_, err = repA.CompleteTask(ctx, &bbsv1.CompleteTaskRequest{TaskGuid: "tg", CellId: "cell-b"})
	requireDenied(t, err, "CompleteTask", `"cell-b"`)
	_, err = repB.RejectTask(ctx, &bbsv1.RejectTaskRequest{TaskGuid: "tg", RejectionReason: "cannot run it"})
	require.NoError(t, err)

	_, err = legacy.Ping(ctx, &bbsv1.PingRequest{})
	requireDenied(t, err, "no Gavel role", "reissue it with gavel certs")
}
