package authz

import (
	"slices"

	"google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	auctioneerv1 "github.com/gavelhq/gavel/proto/gen/gavel/auctioneer/v1"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// Rule says who may call one RPC.
type Rule struct {
	// Roles may call the RPC.
	Roles []Role
	// AnyPeer lets any peer whose certificate the CA vouches for call it,
	// with or without a role: the health service, for probes and load
	// balancers.
	AnyPeer bool
	// CellScoped marks a lifecycle call a rep may make only for its own cell
	// id; the handler checks the cell id in the request body (CheckCell).
	CellScoped bool
	// Internal marks a call of the components' own protocol (a cell's
	// lifecycle reports, work and stops sent to a cell, auction requests,
	// placement failures): only the components named may make it, never an
	// operator, so no person's certificate can claim, start, crash or stop
	// an instance behind the scheduler's back.
	Internal bool
}

// Allows reports whether role may call the RPC.
func (r Rule) Allows(role Role) bool { return r.AnyPeer || slices.Contains(r.Roles, role) }

// roles is a role list with the operator, who may call everything but the
// components' own protocol, always in it.
func roles(rs ...Role) []Role { return append([]Role{Operator}, rs...) }

// internal is the rule of a call of the components' protocol: only rs.
func internal(rs ...Role) Rule { return Rule{Roles: rs, Internal: true} }

// everyone is every role.
func everyone() []Role { return Roles() }

// table maps every RPC Gavel serves (full method name) to its rule. It is
// built once and never written. An RPC absent from it is refused to every
// role (default deny); TestTableCoversEveryRPC fails for one.
var table = buildTable()

func buildTable() map[string]Rule {
	// Reads of the BBS: lists, gets and events.
	reader := roles(Controller, Bulker, RouteEmitter, Rep)
	// The external API of controllers.
	external := roles(Controller, Bulker)
	// Lifecycle calls of a cell, for its own cell id only.
	cell := Rule{Roles: []Role{Rep}, CellScoped: true, Internal: true}

	t := map[string]Rule{
		// BBS: everyone may ping (the Go client finds the active replica with it).
		bbsv1.BBSService_Ping_FullMethodName: {Roles: everyone()},

		// Domains are an operator's (or the bulker's) business.
		bbsv1.BBSService_UpsertDomain_FullMethodName: {Roles: roles(Bulker)},
		bbsv1.BBSService_ListDomains_FullMethodName:  {Roles: reader},

		// Desired LRPs.
		bbsv1.BBSService_DesireLRP_FullMethodName:                     {Roles: external},
		bbsv1.BBSService_UpdateDesiredLRP_FullMethodName:              {Roles: external},
		bbsv1.BBSService_RemoveDesiredLRP_FullMethodName:              {Roles: external},
		bbsv1.BBSService_GetDesiredLRP_FullMethodName:                 {Roles: reader},
		bbsv1.BBSService_ListDesiredLRPs_FullMethodName:               {Roles: reader},
		bbsv1.BBSService_ListDesiredLRPSchedulingInfos_FullMethodName: {Roles: reader},
		bbsv1.BBSService_ListDesiredLRPRoutingInfos_FullMethodName:    {Roles: reader},

		// Actual LRPs: reads and the external restart of one instance.
		bbsv1.BBSService_ListActualLRPs_FullMethodName:  {Roles: reader},
		bbsv1.BBSService_GetActualLRP_FullMethodName:    {Roles: reader},
		bbsv1.BBSService_RetireActualLRP_FullMethodName: {Roles: external},

		// Tasks: the external API.
		bbsv1.BBSService_DesireTask_FullMethodName:    {Roles: external},
		bbsv1.BBSService_GetTask_FullMethodName:       {Roles: reader},
		bbsv1.BBSService_ListTasks_FullMethodName:     {Roles: reader},
		bbsv1.BBSService_CancelTask_FullMethodName:    {Roles: external},
		bbsv1.BBSService_ResolvingTask_FullMethodName: {Roles: external},
		bbsv1.BBSService_DeleteTask_FullMethodName:    {Roles: external},

		// Cells: the auctioneer reads them too.
		bbsv1.BBSService_ListCells_FullMethodName:       {Roles: roles(Controller, Bulker, RouteEmitter, Rep, Auctioneer)},
		bbsv1.BBSService_SubscribeEvents_FullMethodName: {Roles: reader},

		// The lifecycle of instances, reported by their cell.
		bbsv1.BBSService_ClaimActualLRP_FullMethodName:       cell,
		bbsv1.BBSService_StartActualLRP_FullMethodName:       cell,
		bbsv1.BBSService_CrashActualLRP_FullMethodName:       cell,
		bbsv1.BBSService_RemoveActualLRP_FullMethodName:      cell,
		bbsv1.BBSService_BatchClaimActualLRPs_FullMethodName: cell,
		bbsv1.BBSService_BatchStartActualLRPs_FullMethodName: cell,
		// Placement failures, written back by the auctioneer.
		bbsv1.BBSService_FailActualLRP_FullMethodName: internal(Auctioneer),

		// The lifecycle of tasks. RejectTask: the auctioneer hands back a task
		// it could not place; a rep one of its own cell it could not run.
		bbsv1.BBSService_StartTask_FullMethodName:    cell,
		bbsv1.BBSService_CompleteTask_FullMethodName: cell,
		bbsv1.BBSService_FailTask_FullMethodName:     {Roles: roles()},
		bbsv1.BBSService_RejectTask_FullMethodName:   {Roles: []Role{Rep, Auctioneer}, CellScoped: true, Internal: true},

		// Evacuation, by the draining cell.
		bbsv1.BBSService_EvacuateClaimedActualLRP_FullMethodName:   cell,
		bbsv1.BBSService_EvacuateRunningActualLRP_FullMethodName:   cell,
		bbsv1.BBSService_EvacuateStoppedActualLRP_FullMethodName:   cell,
		bbsv1.BBSService_EvacuateCrashedActualLRP_FullMethodName:   cell,
		bbsv1.BBSService_RemoveEvacuatingActualLRP_FullMethodName:  cell,
		bbsv1.BBSService_ReclaimEvacuatingActualLRP_FullMethodName: cell,
		bbsv1.BBSService_BatchEvacuateActualLRPs_FullMethodName:    cell,

		// The auctioneer takes placement requests from the BBS.
		auctioneerv1.AuctioneerService_RequestLRPAuctions_FullMethodName:  internal(BBS),
		auctioneerv1.AuctioneerService_RequestTaskAuctions_FullMethodName: internal(BBS),

		// A rep: the auctioneer reads its state and gives it work; the BBS
		// stops its instances and cancels its tasks (an operator retires an
		// instance or cancels a task through the BBS); drain is an operator's.
		repv1.RepService_State_FullMethodName:            {Roles: roles(Auctioneer, BBS)},
		repv1.RepService_Perform_FullMethodName:          internal(Auctioneer),
		repv1.RepService_StopLRPInstance_FullMethodName:  internal(BBS),
		repv1.RepService_CancelTask_FullMethodName:       internal(BBS),
		repv1.RepService_Ping_FullMethodName:             {Roles: everyone()},
		repv1.RepService_StreamLogs_FullMethodName:       {Roles: roles(Controller)},
		repv1.RepService_ContainerMetrics_FullMethodName: {Roles: roles(Controller)},
		repv1.RepService_Drain_FullMethodName:            {Roles: roles()},

		// Every server: health for any peer the CA vouches for; reflection for every role.
		grpc_health_v1.Health_Check_FullMethodName:                             {AnyPeer: true},
		grpc_health_v1.Health_Watch_FullMethodName:                             {AnyPeer: true},
		grpc_health_v1.Health_List_FullMethodName:                              {AnyPeer: true},
		reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      {Roles: everyone()},
		reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: {Roles: everyone()},
	}
	return t
}

// Lookup returns the rule of an RPC (its full method name,
// "/gavel.bbs.v1.BBSService/DesireLRP"); ok is false for an RPC absent from
// the table, which no role may call.
func Lookup(fullMethod string) (Rule, bool) {
	r, ok := table[fullMethod]
	if ok {
		r.Roles = slices.Clone(r.Roles)
	}
	return r, ok
}

// Methods lists every RPC in the table, sorted.
func Methods() []string {
	out := make([]string, 0, len(table))
	for m := range table {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}
