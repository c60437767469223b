package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/locket"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// stateRep answers State for every cell announced at its address: an
// empty cell id (the capture takes the presence's), 1024 MB, 3 containers,
// one instance of app "a" on it.
type stateRep struct {
	repv1.UnimplementedRepServiceServer
}

func (stateRep) State(context.Context, *repv1.StateRequest) (*repv1.StateResponse, error) {
	return &repv1.StateResponse{
		Zone:               "z1",
		TotalResources:     &repv1.Resources{MemoryMb: 1024, DiskMb: 2048, Containers: 3},
		AvailableResources: &repv1.Resources{MemoryMb: 1000, DiskMb: 2024, Containers: 2},
		Lrps:               []*repv1.LRP{{Key: &modelsv1.ActualLRPKey{ProcessGuid: "a", Index: 1}, InstanceGuid: "i"}},
	}, nil
}

// Sixty cells (presences written to the BBS's etcd, one fake rep behind
// them all): progress lines on stderr, every cell captured, the cell
// bound refused, an unreachable rep named.
func TestSimCaptureLargeClusterShowsProgressAndBounds(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	addr := startBBS(t, func(c *app.Config) { c.KeyPrefix = prefix })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	repv1.RegisterRepServiceServer(srv, stateRep{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	etcd := etcdtest.Client(t, etcdtest.SharedServer(t))
	ctx := context.Background()
	const cells = 60
	for i := range cells {
		id := fmt.Sprintf("cell-%02d", i)
		rep := lis.Addr().String()
		if i == cells-1 {
			rep = "127.0.0.1:1" // nothing listens
		}
		value, err := proto.Marshal(&modelsv1.CellPresence{CellId: id, RepAddress: rep, Zone: "z1", Capacity: &modelsv1.CellCapacity{MemoryMb: 1024, DiskMb: 2048, Containers: 3}})
		require.NoError(t, err)
		_, err = etcd.Put(ctx, locket.PresenceKey(prefix, id), string(value))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		out, err := gavel(t, addr, "cells")
		return err == nil && strings.Count(out, "cell-") == cells
	}, 10*time.Second, 50*time.Millisecond)

	run := func(args ...string) (string, string, error) {
		cmd := NewRootCommand()
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(append(append([]string{"sim", "capture"}, args...), "--bbs-address", addr, "--cell-timeout", "2s"))
		err := cmd.Execute()
		return out.String(), errOut.String(), err
	}
	_, _, err = run()
	require.ErrorContains(t, err, "1 of 60 cells did not answer State: cell-59 at 127.0.0.1:1")
	require.ErrorContains(t, err, "(--skip-unreachable leaves them out)")

	_, _, err = run("--max-cells", "59")
	require.ErrorContains(t, err, "the cluster has 60 cells, more than --max-cells 59")

	path := filepath.Join(t.TempDir(), "big.json")
	_, stderr, err := run("--skip-unreachable", "-o", path)
	require.NoError(t, err)
	for _, line := range []string{"cell states: 6 of 60\n", "cell states: 60 of 60\n", "note: 1 of 60 cells did not answer State: cell-59", "captured 59 cells holding 59 LRP instances and tasks; to place: 0 LRP instances, 0 tasks\n"} {
		require.Contains(t, stderr, line)
	}
	require.Equal(t, 10, strings.Count(stderr, "cell states: "), "a line per tenth")
	s, err := loadScenario(path)
	require.NoError(t, err)
	require.Len(t, s.Cells, 59)
	require.Equal(t, "cell-00", s.Cells[0].CellID)
	require.Equal(t, "a", s.Cells[0].LRPs[0].ProcessGUID)
	require.Contains(t, stderr, "note: cell cell-00 reports 1000 MB memory", "the rep's free memory is not total minus its 0 MB instance")
}
