package watcher_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/clock/fakeclock"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/grpc"

	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
	"github.com/gavelhq/gavel/route-emitter/watcher"
)

// fakeBBS serves fixed lists (optionally held behind a gate) and an event stream fed by the test.
type fakeBBS struct {
	mu        sync.Mutex
	desired   []*modelsv1.DesiredLRPRoutingInfo
	actuals   []*modelsv1.ActualLRP
	revision  int64
	gate      chan struct{} // when set, lists wait for it to close
	events    chan *modelsv1.Event
	listCalls int
}

func (f *fakeBBS) wait(ctx context.Context) error {
	f.mu.Lock()
	gate := f.gate
	f.listCalls++
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *fakeBBS) ListDesiredLRPRoutingInfos(ctx context.Context, in *bbsv1.ListDesiredLRPRoutingInfosRequest, _ ...grpc.CallOption) (*bbsv1.ListDesiredLRPRoutingInfosResponse, error) {
	if len(in.GetFilter().GetProcessGuids()) == 0 {
		if err := f.wait(ctx); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &bbsv1.ListDesiredLRPRoutingInfosResponse{Revision: f.revision}
	for _, d := range f.desired {
		if len(in.GetFilter().GetProcessGuids()) == 0 || d.GetKey().GetProcessGuid() == in.GetFilter().GetProcessGuids()[0] {
			out.RoutingInfos = append(out.RoutingInfos, d)
		}
	}
	return out, nil
}

func (f *fakeBBS) ListActualLRPs(ctx context.Context, _ *bbsv1.ListActualLRPsRequest, _ ...grpc.CallOption) (*bbsv1.ListActualLRPsResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &bbsv1.ListActualLRPsResponse{ActualLrps: f.actuals, Revision: f.revision}, nil
}

func (f *fakeBBS) SubscribeEvents(ctx context.Context, _ *bbsv1.SubscribeEventsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[bbsv1.SubscribeEventsResponse], error) {
	return &stream{ctx: ctx, events: f.events}, nil
}

type stream struct {
	grpc.ClientStream
	ctx    context.Context
	events chan *modelsv1.Event
}

func (s *stream) Recv() (*bbsv1.SubscribeEventsResponse, error) {
	select {
	case e := <-s.events:
		return &bbsv1.SubscribeEventsResponse{Event: e}, nil
	case <-s.ctx.Done():
		return nil, io.EOF
	}
}

// recorder is an Emitter keeping every message.
type recorder struct {
	mu           sync.Mutex
	reg, unreg   []string
	broadcastLen []int
}

func (r *recorder) Emit(m routingtable.Messages) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range m.Registrations {
		r.reg = append(r.reg, x.URIs[0]+" "+x.PrivateInstanceID)
	}
	for _, x := range m.Unregistrations {
		r.unreg = append(r.unreg, x.URIs[0]+" "+x.PrivateInstanceID)
	}
	return nil
}

func (r *recorder) Broadcast(regs []routingtable.RegistryMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.broadcastLen = append(r.broadcastLen, len(regs))
	return nil
}

func (r *recorder) snapshot() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string{}, r.reg...), append([]string{}, r.unreg...)
}

func routingInfo(guid string, instances int32) *modelsv1.DesiredLRPRoutingInfo {
	return &modelsv1.DesiredLRPRoutingInfo{
		Key: &modelsv1.DesiredLRPKey{ProcessGuid: guid, Domain: "d", LogGuid: "log"}, Instances: instances,
		Routes:          map[string]string{"cf-router": `[{"hostnames":["` + guid + `.com"],"port":8080}]`},
		ModificationTag: &modelsv1.ModificationTag{Epoch: "e", Index: 1},
	}
}

func running(guid string, index int32, tag uint32) *modelsv1.ActualLRP {
	return &modelsv1.ActualLRP{
		Key:         &modelsv1.ActualLRPKey{ProcessGuid: guid, Index: index, Domain: "d"},
		InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("%s-%d", guid, index), CellId: "c"},
		NetInfo:     &modelsv1.ActualLRPNetInfo{Address: "10.0.0.1", Ports: []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61000 + uint32(index)}}},
		State:       modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING, Presence: modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY,
		ModificationTag: &modelsv1.ModificationTag{Epoch: "a", Index: tag},
	}
}

func created(rev int64, a *modelsv1.ActualLRP) *modelsv1.Event {
	return &modelsv1.Event{Revision: rev, Event: &modelsv1.Event_ActualLrpInstanceCreated{
		ActualLrpInstanceCreated: &modelsv1.ActualLRPInstanceCreatedEvent{ActualLrp: a}}}
}

func removed(rev int64, a *modelsv1.ActualLRP) *modelsv1.Event {
	return &modelsv1.Event{Revision: rev, Event: &modelsv1.Event_ActualLrpInstanceRemoved{
		ActualLrpInstanceRemoved: &modelsv1.ActualLRPInstanceRemovedEvent{ActualLrp: a}}}
}

func run(t *testing.T, bbs *fakeBBS, clk *fakeclock.FakeClock) (*watcher.Watcher, *recorder) {
	t.Helper()
	rec := &recorder{}
	w := watcher.New(watcher.Options{BBS: bbs, Emitter: rec, SyncInterval: time.Minute, Clock: clk})
	proc := ifrit.Invoke(w)
	t.Cleanup(func() { proc.Signal(os.Interrupt); <-proc.Wait() })
	select {
	case <-w.Synced():
	case <-time.After(5 * time.Second):
		t.Fatal("no first sync")
	}
	return w, rec
}

func TestEventsDuringAResyncAreCachedAndReplayed(t *testing.T) {
	bbs := &fakeBBS{
		desired: []*modelsv1.DesiredLRPRoutingInfo{routingInfo("p", 2)},
		actuals: []*modelsv1.ActualLRP{running("p", 0, 1)}, revision: 10,
		events: make(chan *modelsv1.Event, 10),
	}
	clk := fakeclock.NewFakeClock(time.Now())
	_, rec := run(t, bbs, clk)
	reg, _ := rec.snapshot()
	require.Equal(t, []string{"p.com p-0"}, reg)

	// The next resync's lists hang until the gate opens; they still show revision 10.
	gate := make(chan struct{})
	bbs.mu.Lock()
	bbs.gate = gate
	bbs.mu.Unlock()
	clk.WaitForWatcherAndIncrement(time.Minute)
	require.Eventually(t, func() bool { bbs.mu.Lock(); defer bbs.mu.Unlock(); return bbs.listCalls >= 4 }, time.Second, time.Millisecond)

	bbs.events <- removed(9, running("p", 0, 1)) // already in the lists: ignored
	bbs.events <- created(11, running("p", 1, 1))
	time.Sleep(200 * time.Millisecond)
	reg, unreg := rec.snapshot()
	require.Equal(t, []string{"p.com p-0"}, reg, "held while the resync runs")
	require.Empty(t, unreg)

	close(gate)
	require.Eventually(t, func() bool { reg, _ := rec.snapshot(); return len(reg) == 2 }, time.Second, time.Millisecond)
	reg, unreg = rec.snapshot()
	require.Equal(t, []string{"p.com p-0", "p.com p-1"}, reg, "the cached event is replayed on the new table")
	require.Empty(t, unreg, "the old event is not")
}

func TestRunningInstanceOfAnUnknownDesiredLRPFetchesIt(t *testing.T) {
	bbs := &fakeBBS{revision: 5, events: make(chan *modelsv1.Event, 10)}
	clk := fakeclock.NewFakeClock(time.Now())
	w, rec := run(t, bbs, clk)
	bbs.mu.Lock()
	bbs.desired = []*modelsv1.DesiredLRPRoutingInfo{routingInfo("q", 1)} // its created event was missed
	bbs.mu.Unlock()
	bbs.events <- created(6, running("q", 0, 1))
	require.Eventually(t, func() bool { reg, _ := rec.snapshot(); return len(reg) == 1 }, time.Second, time.Millisecond)
	reg, _ := rec.snapshot()
	require.Equal(t, []string{"q.com q-0"}, reg)

	w.Broadcast()
	require.Eventually(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.broadcastLen) == 1 && rec.broadcastLen[0] == 1
	}, time.Second, time.Millisecond)
}

// The start of an evacuation, one revision that removes the ordinary row
// and creates its evacuating twin at the same address, says nothing to the
// routers (diffed per event, it unregistered and re-registered the
// endpoint in the same millisecond); a later revision still does.
func TestOneRevisionIsDiffedAsOneChange(t *testing.T) {
	bbs := &fakeBBS{
		desired: []*modelsv1.DesiredLRPRoutingInfo{routingInfo("p", 2)},
		actuals: []*modelsv1.ActualLRP{running("p", 0, 1)}, revision: 10,
		events: make(chan *modelsv1.Event, 10),
	}
	clk := fakeclock.NewFakeClock(time.Now())
	_, rec := run(t, bbs, clk)
	evacuating := running("p", 0, 2)
	evacuating.Presence = modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_EVACUATING
	bbs.events <- removed(11, running("p", 0, 1))
	bbs.events <- created(11, evacuating)
	bbs.events <- created(12, running("p", 1, 1))
	require.Eventually(t, func() bool { reg, _ := rec.snapshot(); return len(reg) == 2 }, time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	reg, unreg := rec.snapshot()
	require.Equal(t, []string{"p.com p-0", "p.com p-1"}, reg, "only the first registration and the new instance's")
	require.Empty(t, unreg, "the evacuating endpoint never left")

	bbs.events <- removed(13, evacuating)
	require.Eventually(t, func() bool { _, unreg := rec.snapshot(); return len(unreg) == 1 }, time.Second, time.Millisecond)
}

// An instance turning EVACUATING in one changed event (its key changes, its
// address does not) says nothing to the routers either.
func TestInstanceTurningEvacuatingInOneEventIsNoChange(t *testing.T) {
	bbs := &fakeBBS{
		desired: []*modelsv1.DesiredLRPRoutingInfo{routingInfo("p", 1)},
		actuals: []*modelsv1.ActualLRP{running("p", 0, 1)}, revision: 10,
		events: make(chan *modelsv1.Event, 10),
	}
	clk := fakeclock.NewFakeClock(time.Now())
	_, rec := run(t, bbs, clk)
	evacuating := running("p", 0, 2)
	evacuating.Presence = modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_EVACUATING
	bbs.events <- &modelsv1.Event{Revision: 11, Event: &modelsv1.Event_ActualLrpInstanceChanged{
		ActualLrpInstanceChanged: &modelsv1.ActualLRPInstanceChangedEvent{Before: running("p", 0, 1), After: evacuating}}}
	time.Sleep(300 * time.Millisecond)
	reg, unreg := rec.snapshot()
	require.Equal(t, []string{"p.com p-0"}, reg, "no re-registration")
	require.Empty(t, unreg, "no unregistration")
}
