package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/app"
)

// configWithStrategyFile writes a strategy file and a config naming it,
// and loads the config.
func configWithStrategyFile(t *testing.T, strategy string) (app.Config, string, error) {
	t.Helper()
	dir := t.TempDir()
	sf := filepath.Join(dir, "strategy.yaml")
	require.NoError(t, os.WriteFile(sf, []byte(strategy), 0o600))
	path := filepath.Join(dir, "auctioneer.json")
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`{
		"etcd": {"endpoints": ["http://10.0.0.1:2379"]},
		"bbs_addresses": ["10.0.0.2:8889"],
		"insecure_plaintext": true,
		"strategy_file": %q
	}`, sf)), 0o600))
	cfg, err := app.Load(path)
	require.NoError(t, err)
	return cfg, sf, cfg.Validate()
}

func TestStrategyFileConfigPlacesWithTheFile(t *testing.T) {
	// The highest cell index wins: not what diego (the default strategy) does.
	cfg, sf, err := configWithStrategyFile(t, "name: last-cell\nscore: '-double(cell.index)'\n")
	require.NoError(t, err)
	require.Equal(t, sf, cfg.StrategyFile)

	opts, file, err := cfg.Engine(nil)
	require.NoError(t, err)
	require.Equal(t, "last-cell", file.Name())
	require.Equal(t, "last-cell", opts.Strategy)

	a := appOnCells(3, 3)
	res, err := auctioneer.Run(a, opts)
	require.NoError(t, err)
	require.Len(t, res.Placements, 3)
	for _, p := range res.Placements {
		require.Equal(t, "cell-2", p.CellID)
	}
	// Without the file the same config spreads the app (diego).
	cfg.StrategyFile = ""
	opts, file, err = cfg.Engine(nil)
	require.NoError(t, err)
	require.Nil(t, file)
	res, err = auctioneer.Run(a, opts)
	require.NoError(t, err)
	cells := map[string]bool{}
	for _, p := range res.Placements {
		cells[p.CellID] = true
	}
	require.Len(t, cells, 3)
}

func TestStrategyFileConfigErrorsNameTheField(t *testing.T) {
	for strategy, want := range map[string]string{
		"score: 'cell.nope'\n":                        "strategy_file: strategy file ",
		"base: fifo\n":                                `base: unknown strategy "fifo"`,
		"score: 'cell.zone'\n":                        "score: must be of type double or int, not string",
		"base: diego\nbin_pack_first_fit_weight: 3\n": "bin_pack_first_fit_weight: must be between 0 and 1",
	} {
		_, _, err := configWithStrategyFile(t, strategy)
		require.ErrorContains(t, err, "strategy_file: strategy file ", strategy)
		require.ErrorContains(t, err, want, strategy)
	}
}

// A score that fails on some cells scores them +Inf: the daemon's observer
// is told of every failure, naming the item and the cell, and the run
// places on the cells where the score works.
func TestStrategyFileConfigReportsFailedEvaluations(t *testing.T) {
	// Integer division by zero on cell-0 only.
	cfg, _, err := configWithStrategyFile(t, "name: breaks\nscore: '10 / cell.index'\n")
	require.NoError(t, err)
	var failures []error
	opts, _, err := cfg.Engine(func(err error) { failures = append(failures, err) })
	require.NoError(t, err)

	a := appOnCells(2, 3)
	res, err := auctioneer.Run(a, opts)
	require.NoError(t, err)
	require.Len(t, res.Placements, 3)
	for _, p := range res.Placements {
		require.Equal(t, "cell-1", p.CellID)
	}
	require.Len(t, failures, 3, "one failed evaluation per item on cell-0")
	require.ErrorContains(t, failures[0], "strategy breaks: score of lrp app index 0 on cell cell-0: division by zero")
}

// appOnCells is an auction of n instances of one app on cells alike but
// for their index, in one zone.
func appOnCells(cells, n int) auctioneer.Auction {
	var a auctioneer.Auction
	for i := range cells {
		total := auctioneer.Resources{MemoryMB: 1024, DiskMB: 1024, Containers: 10}
		a.Cells = append(a.Cells, auctioneer.CellState{CellID: fmt.Sprintf("cell-%d", i), Zone: "z", Index: i, Total: total, Available: total,
			RootFSProviders: map[string][]string{"preloaded": {"cflinuxfs4"}}})
	}
	for i := range n {
		a.LRPs = append(a.LRPs, auctioneer.LRPStart{ProcessGUID: "app", Index: i, MemoryMB: 64, DiskMB: 64, RootFS: "preloaded:cflinuxfs4"})
	}
	return a
}
