package integration_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/locket"
)

// SIGKILL the auctioneer, desire an LRP while no auctioneer holds the lock,
// and start the auctioneer again: the BBS held the start requests and hands
// them over as soon as the new auctioneer takes the lock, so the instances
// are placed without any convergence pass (convergence and the stale
// unclaimed re-auction are set to 10 minutes here).
func TestAuctioneerRestartGetsTheWorkItMissed(t *testing.T) {
	t.Parallel()
	const slow = 10 * time.Minute
	c := start(t, options{convergenceInterval: slow, staleUnclaimed: slow})
	c.desire(appLRP("before", 1))
	c.waitRunning("before", 1, placeTimeout)

	c.auctioneer.kill()
	waitFor(t, lockTTL+10*time.Second, "the auctioneer lock expires", func() error {
		if _, err := locket.FetchLock(ctx(t), c.etcd, "", "auctioneer"); err == nil {
			return errors.New("still held")
		}
		return nil
	})
	c.desire(appLRP("held", 2))
	time.Sleep(500 * time.Millisecond)
	rows, err := c.actuals("held")
	require.NoError(t, err)
	require.Len(t, rows, 2)
	for _, r := range rows {
		require.Equal(t, models.Unclaimed, r.GetState(), "no auctioneer: nothing is placed")
	}

	require.NoError(t, c.auctioneer.start())
	waitFor(t, startTimeout, "the restarted auctioneer holds its lock", func() error {
		if err := c.auctioneer.exitedErr(); err != nil {
			return err
		}
		_, err := locket.FetchLock(ctx(t), c.etcd, "", "auctioneer")
		return err
	})
	// Generous, yet far below the 10-minute convergence that used to be
	// the only way this work got placed.
	took := waitFor(t, 20*time.Second, "held: both instances placed (CLAIMED or RUNNING)", func() error {
		rows, err := c.actuals("held")
		if err != nil {
			return err
		}
		for _, r := range rows {
			if s := r.GetState(); s != models.Claimed && s != models.Running {
				return fmt.Errorf("%s", describe(rows))
			}
		}
		return nil
	})
	t.Logf("held work placed %s after the restarted auctioneer's lock was seen", took)
	c.waitRunning("held", 2, placeTimeout)
}
