package e2e_test

import (
	"context"
	"os"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	"google.golang.org/protobuf/proto"

	auctioneerapp "github.com/gavelhq/gavel/auctioneer/app"
	"github.com/gavelhq/gavel/auctioneer/internal/reptest"
	bbsapp "github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/locket"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

const wait = 20 * time.Second

// run runs r in the background until the test ends and waits for ready.
func run(t *testing.T, name string, r ifrit.Runner) ifrit.Process {
	t.Helper()
	proc := ifrit.Background(r)
	t.Cleanup(func() {
		proc.Signal(os.Interrupt)
		select {
		case <-proc.Wait():
		case <-time.After(wait):
			t.Errorf("%s did not stop", name)
		}
	})
	select {
	case <-proc.Ready():
	case err := <-proc.Wait():
		t.Fatalf("%s exited: %v", name, err)
	case <-time.After(wait):
		t.Fatalf("%s did not start", name)
	}
	return proc
}

// startBBS runs a real BBS on the shared etcd under prefix and returns a client to it.
func startBBS(t *testing.T, prefix string) (*bbsapp.BBS, *client.Client) {
	cfg := bbsapp.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.InstanceID = "bbs-1"
	cfg.KeyPrefix = prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.LockTTL = config.Duration(2 * time.Second)
	cfg.LockRetryInterval = config.Duration(100 * time.Millisecond)
	require.NoError(t, cfg.Validate())
	b := bbsapp.New(cfg, lager.NewLogger("bbs"))
	run(t, "bbs", b.Runner())
	require.Eventually(t, b.Held, wait, 10*time.Millisecond, "the BBS never took its lock")
	c, err := client.New(client.Config{Addresses: []string{b.Addr()}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return b, c
}

// startAuctioneer runs the auctioneer daemon in this process.
func startAuctioneer(t *testing.T, prefix, bbsAddr string) *auctioneerapp.Auctioneer {
	cfg := auctioneerapp.DefaultConfig()
	cfg.InsecurePlaintext = true // not about TLS: mTLS is tested in integration/ and TestDefaultConfigServesMutualTLS
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.DebugAddress = "127.0.0.1:0"
	cfg.InstanceID = "auctioneer-1"
	cfg.KeyPrefix = prefix
	cfg.Etcd = etcdclient.Config{Endpoints: etcdtest.SharedServer(t).Endpoints()}
	cfg.BBSAddresses = []string{bbsAddr}
	cfg.LockTTL = config.Duration(2 * time.Second)
	cfg.LockRetryInterval = config.Duration(100 * time.Millisecond)
	cfg.CellStateTimeout = config.Duration(2 * time.Second)
	require.NoError(t, cfg.Validate())
	a := auctioneerapp.New(cfg, lager.NewLogger("auctioneer"))
	run(t, "auctioneer", a.Runner())
	require.Eventually(t, a.Held, wait, 10*time.Millisecond, "the auctioneer never took its lock")
	return a
}

// startCell runs a fake cell that claims what it accepts, as a rep does,
// and registers its presence.
func startCell(t *testing.T, prefix, cellID string, bbs *client.Client) *reptest.Rep {
	cell := reptest.New(reptest.Cell(cellID, "z1", 1024, 4096, 100))
	cell.OnAccepted = func(ctx context.Context, lrps []*repv1.LRP, tasks []*repv1.Task) {
		for _, l := range lrps {
			_, err := bbs.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{
				ProcessGuid: l.GetKey().GetProcessGuid(), Index: l.GetKey().GetIndex(),
				InstanceKey: &modelsv1.ActualLRPInstanceKey{InstanceGuid: uuid.NewString(), CellId: cellID},
			})
			if err != nil {
				t.Errorf("%s: claim %s/%d: %v", cellID, l.GetKey().GetProcessGuid(), l.GetKey().GetIndex(), err)
			}
		}
		for _, tk := range tasks {
			if _, err := bbs.StartTask(ctx, &bbsv1.StartTaskRequest{TaskGuid: tk.GetTaskGuid(), CellId: cellID}); err != nil {
				t.Errorf("%s: start task %s: %v", cellID, tk.GetTaskGuid(), err)
			}
		}
	}
	cell.Serve(t)
	value, err := proto.Marshal(cell.Presence())
	require.NoError(t, err)
	run(t, "presence "+cellID, locket.NewPresence(locket.PresenceOptions{
		Client: etcdtest.Shared(t), KeyPrefix: prefix, Name: cellID, Owner: "rep-" + cellID,
		Value: value, TTL: 2 * time.Second,
	}))
	return cell
}

func desiredLRP(guid string, instances, memoryMB int32) *modelsv1.DesiredLRP {
	return &modelsv1.DesiredLRP{
		ProcessGuid: guid, Domain: "d", RootFs: "preloaded:cflinuxfs4", Instances: instances,
		MemoryMb: memoryMB, DiskMb: 256,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/app"}}},
	}
}

func task(guid string, memoryMB int32) *bbsv1.DesireTaskRequest {
	return &bbsv1.DesireTaskRequest{TaskGuid: guid, Domain: "d", Definition: &modelsv1.TaskDefinition{
		RootFs: "preloaded:cflinuxfs4", MemoryMb: memoryMB, DiskMb: 256,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/task"}}},
	}}
}

func actuals(t *testing.T, c *client.Client, guid string) []*modelsv1.ActualLRP {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{ProcessGuids: []string{guid}})
	require.NoError(t, err)
	return resp.GetActualLrps()
}

func getTask(t *testing.T, c *client.Client, guid string) *modelsv1.Task {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.GetTask(ctx, &bbsv1.GetTaskRequest{TaskGuid: guid})
	require.NoError(t, err)
	return resp.GetTask()
}

// TestPlacementEndToEnd: the BBS asks the auctioneer to place what is
// desired; the auctioneer fetches both cells' states, sends each its work,
// the cells claim it, and what fits nowhere gets Diego's placement error.
func TestPlacementEndToEnd(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	bbs, c := startBBS(t, prefix)
	cellA := startCell(t, prefix, "cell-a", c)
	cellB := startCell(t, prefix, "cell-b", c)
	startAuctioneer(t, prefix, bbs.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: desiredLRP("app", 4, 128)})
	require.NoError(t, err)
	_, err = c.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: desiredLRP("too-big", 2, 4096)})
	require.NoError(t, err)
	_, err = c.DesireTask(ctx, task("small-task", 64))
	require.NoError(t, err)

	// The four instances end CLAIMED, two on each cell.
	var perCell map[string]int
	require.Eventually(t, func() bool {
		perCell = map[string]int{}
		for _, a := range actuals(t, c, "app") {
			if a.GetState() == modelsv1.ActualLRPState_ACTUAL_LRP_STATE_CLAIMED {
				perCell[a.GetInstanceKey().GetCellId()]++
			}
		}
		return perCell["cell-a"]+perCell["cell-b"] == 4
	}, wait, 20*time.Millisecond, "claimed: %v", perCell)
	require.Equal(t, map[string]int{"cell-a": 2, "cell-b": 2}, perCell)

	// The cells were sent the work over Perform, each index exactly once.
	seen := map[int32]string{}
	for _, cell := range []*reptest.Rep{cellA, cellB} {
		for _, p := range cell.Performs() {
			require.Equal(t, cell.CellID(), p.GetCellId())
			for _, l := range p.GetLrps() {
				if l.GetKey().GetProcessGuid() != "app" {
					continue
				}
				_, dup := seen[l.GetKey().GetIndex()]
				seen[l.GetKey().GetIndex()] = cell.CellID()
				require.False(t, dup, "index %d sent twice", l.GetKey().GetIndex())
				require.Equal(t, int32(128), l.GetResource().GetMemoryMb())
			}
		}
	}
	require.Len(t, seen, 4)

	// The instances too large for any cell stay UNCLAIMED with Diego's error.
	require.Eventually(t, func() bool {
		as := actuals(t, c, "too-big")
		if len(as) != 2 {
			return false
		}
		for _, a := range as {
			if a.GetPlacementError() != "insufficient resources: memory" {
				return false
			}
		}
		return true
	}, wait, 20*time.Millisecond)
	for _, a := range actuals(t, c, "too-big") {
		require.Equal(t, modelsv1.ActualLRPState_ACTUAL_LRP_STATE_UNCLAIMED, a.GetState())
	}

	// The task that fits was started by the cell that won it.
	require.Eventually(t, func() bool {
		return getTask(t, c, "small-task").GetState() == modelsv1.TaskState_TASK_STATE_RUNNING
	}, wait, 20*time.Millisecond)
	require.Contains(t, []string{"cell-a", "cell-b"}, getTask(t, c, "small-task").GetCellId())

	// A task too large for any cell is rejected until the BBS gives up on
	// it, with the placement error as the reason.
	_, err = c.DesireTask(ctx, task("huge-task", 8192))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return getTask(t, c, "huge-task").GetFailed() }, wait, 20*time.Millisecond)
	require.Equal(t, "insufficient resources: memory", getTask(t, c, "huge-task").GetFailureReason())
}
