package devcluster

import (
	"testing"

	"github.com/stretchr/testify/require"

	repapp "github.com/gavelhq/gavel/rep/app"
)

// Every container cell of every dev cluster gets its own bridge (a valid
// interface name), subnet, cgroup parent, depot and ports.
func TestContainerCellsDoNotShareHostResources(t *testing.T) {
	seen := map[string]string{}
	once := func(kind, v, who string) {
		t.Helper()
		key := kind + "=" + v
		if prev, ok := seen[key]; ok {
			t.Fatalf("%s %s is used by %s and %s", kind, v, prev, who)
		}
		seen[key] = who
	}
	for _, dataDir := range []string{"/tmp/a/.gavel", "/tmp/b/.gavel"} {
		for _, backend := range []string{repapp.BackendRunc, repapp.BackendGarden} {
			c := New(Options{DataDir: dataDir, Backend: backend}, nil)
			for i := 0; i < c.opts.Cells; i++ {
				cfg := repapp.DefaultConfig()
				cfg.CellID = "cell-" + string(rune('1'+i))
				who := dataDir + " " + backend + " " + cfg.CellID
				require.NoError(t, c.configureBackend(&cfg, i), who)
				rc := c.runcConfig(cfg.CellID, i, c.opts.PortRangeStart+uint32(i)*1000)
				require.LessOrEqual(t, len(rc.BridgeName), 15, "bridge %q is not a valid interface name", rc.BridgeName)
				require.Empty(t, rc.Validate("runc"), who)
				if backend == repapp.BackendRunc {
					require.Equal(t, rc, cfg.Runc)
					once("bridge", rc.BridgeName, who)
					once("subnet", rc.Subnet, who)
					once("cgroup", rc.CgroupParent, who)
					once("depot", rc.RootDir, who)
				} else {
					require.Equal(t, repapp.BackendGarden, cfg.Backend)
					once("socket", cfg.Garden.Address, who)
				}
			}
		}
	}
}

func TestUnknownBackendIsRefused(t *testing.T) {
	c := New(Options{Backend: "docker"}, nil)
	cfg := repapp.DefaultConfig()
	require.ErrorContains(t, c.configureBackend(&cfg, 0), `backend "docker": must be one of [process runc garden]`)
}
