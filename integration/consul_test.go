package integration_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/locket"
	"github.com/gavelhq/gavel/locket/consultest"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repapp "github.com/gavelhq/gavel/rep/app"
)

// Every daemon keeps its locks and presences in Consul (the in-process
// double of Consul's HTTP API: no Consul server can run here): the BBS and
// the auctioneer hold their locks there, the cells register there, the
// active BBS mirrors both into etcd for its cache, and work is placed. A
// cell whose rep dies loses its Consul session, and its instances are
// placed again on the others.
func TestConsulLocketEndToEnd(t *testing.T) {
	t.Parallel()
	skipIfShort(t)
	d := consultest.New(t)
	c := start(t, options{consulAddr: d.Addr(), backend: repapp.BackendSim, bbsReplicas: 2})

	for _, name := range []string{"bbs", "auctioneer"} {
		e, ok := d.Entry(locket.ConsulKey(locket.LockKey("", name)))
		if !ok || e.Session == "" {
			t.Errorf("the %s lock is not held in Consul: %+v", name, e)
		}
	}
	for _, id := range c.cellIDs() {
		if e, ok := d.Entry(locket.ConsulKey(locket.PresenceKey("", id))); !ok || e.Session == "" {
			t.Errorf("%s's presence is not held in Consul: %+v", id, e)
		}
		// Nothing but the mirror writes cells in etcd; they carry no lease.
		resp, err := c.etcd.Get(ctx(t), locket.PresenceKey("", id))
		if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease != 0 {
			t.Errorf("%s's presence is not mirrored into etcd as a plain key: %v %v", id, resp, err)
		}
	}

	c.desire(appLRP("consul-web", 3))
	rows := c.waitRunning("consul-web", 3, placeTimeout)

	victim := rows[0].GetInstanceKey().GetCellId()
	for i, r := range c.reps {
		if r.id == victim {
			c.killRep(i)
		}
	}
	waitFor(t, presenceTTL+10*time.Second, victim+"'s Consul session expires", func() error {
		if e, ok := d.Entry(locket.ConsulKey(locket.PresenceKey("", victim))); ok && e.Session != "" {
			return errors.New("still held")
		}
		return nil
	})
	var after []*modelsv1.ActualLRP
	waitFor(t, placeTimeout, "consul-web: 3 instances RUNNING, none on "+victim, func() error {
		rows, err := c.actuals("consul-web")
		if err != nil {
			return err
		}
		running := 0
		for _, a := range rows {
			if a.GetInstanceKey().GetCellId() == victim {
				return fmt.Errorf("still on %s: %s", victim, describe(rows))
			}
			if a.GetPresence() == models.Ordinary && a.GetState() == models.Running {
				running++
			}
		}
		if running != 3 {
			return fmt.Errorf("%d running: %s", running, describe(rows))
		}
		after = rows
		return nil
	})
	t.Logf("consul-web re-placed off %s: %s", victim, fmt.Sprint(describe(after)))
}
