package integration_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// A desired LRP's instances all become RUNNING, spread over the three cells,
// and each answers HTTP on its host port with its own index.
func TestDesireRunsAndAnswers(t *testing.T) {
	t.Parallel()
	c := start(t, options{})
	c.desire(appLRP("web", 3))
	rows := c.waitRunning("web", 3, placeTimeout)
	checkAnswers(t, rows)
	cells := map[string]bool{}
	for _, a := range rows {
		cells[a.GetInstanceKey().GetCellId()] = true
		if a.GetRoutable() != true {
			t.Errorf("instance %d is RUNNING but not routable", a.GetKey().GetIndex())
		}
	}
	if len(cells) != 3 {
		t.Errorf("3 instances on 3 empty cells should spread one per cell; got %s", describe(rows))
	}
}

// Scaling up starts the new indices; scaling down stops the extra instances'
// processes and removes their rows; the remaining ones keep running untouched.
func TestScaleUpAndDown(t *testing.T) {
	t.Parallel()
	c := start(t, options{})
	c.desire(appLRP("scaled", 1))
	first := c.waitRunning("scaled", 1, placeTimeout)

	scale := func(n int32) {
		t.Helper()
		if _, err := c.client().UpdateDesiredLRP(ctx(t), &bbsv1.UpdateDesiredLRPRequest{
			ProcessGuid: "scaled", Update: &modelsv1.DesiredLRPUpdate{Instances: &n},
		}); err != nil {
			t.Fatalf("scale to %d: %v", n, err)
		}
	}
	scale(4)
	up := c.waitRunning("scaled", 4, placeTimeout)
	checkAnswers(t, up)
	if up[0].GetInstanceKey().GetInstanceGuid() != first[0].GetInstanceKey().GetInstanceGuid() {
		t.Errorf("scaling up replaced index 0: %s then %s", first[0].GetInstanceKey().GetInstanceGuid(), up[0].GetInstanceKey().GetInstanceGuid())
	}

	scale(2)
	down := c.waitRunning("scaled", 2, placeTimeout)
	for i, a := range down {
		if a.GetInstanceKey().GetInstanceGuid() != up[i].GetInstanceKey().GetInstanceGuid() {
			t.Errorf("scaling down replaced index %d", i)
		}
	}
	for _, a := range up[2:] {
		addr := hostAddr(a)
		waitFor(t, graceTime+5*time.Second, fmt.Sprintf("removed instance %d stops answering on %s", a.GetKey().GetIndex(), addr), func() error {
			if _, err := get(addr, "/"); err == nil {
				return fmt.Errorf("still answers")
			}
			return nil
		})
	}
	checkAnswers(t, down)

	out, err := c.gavel("scale", "scaled", "3")
	if err != nil {
		t.Fatalf("gavel scale: %v\n%s", err, out)
	}
	checkAnswers(t, c.waitRunning("scaled", 3, placeTimeout))
}

// An app that crashes is restarted at once while its crash count is below 3
// (Diego's policy); after the third crash it waits (30 s, then doubling), so
// it stays CRASHED with crash_count 3, and the CLI shows it.
func TestCrashingAppFollowsTheCrashPolicy(t *testing.T) {
	t.Parallel()
	c := start(t, options{})
	// The app serves (so it becomes RUNNING) and exits 1 after 1.5 s.
	c.desire(appLRP("crasher", 1, func(d *modelsv1.DesiredLRP) {
		d.Action = shAction(bin("app") + " & sleep 1.5; exit 1")
	}))
	var last *modelsv1.ActualLRP
	seen := map[int32]bool{}
	sawRunning := false
	waitFor(t, 60*time.Second, "crash_count reaches 3 and the instance waits CRASHED", func() error {
		rows, err := c.actuals("crasher")
		if err != nil {
			return err
		}
		if len(rows) != 1 {
			return fmt.Errorf("rows: %s", describe(rows))
		}
		last = rows[0]
		seen[last.GetCrashCount()] = true
		sawRunning = sawRunning || last.GetState() == models.Running
		if last.GetCrashCount() == 3 && last.GetState() == models.Crashed {
			return nil
		}
		return fmt.Errorf("now %s", describe(rows))
	})
	if !sawRunning {
		t.Errorf("the app never showed RUNNING between crashes")
	}
	if !seen[1] && !seen[2] {
		t.Errorf("crash_count jumped to 3 without showing 1 or 2 (saw %v)", seen)
	}
	if last.GetCrashReason() == "" {
		t.Errorf("a crashed instance carries its crash reason: %s", describe([]*modelsv1.ActualLRP{last}))
	}
	// The policy waits 30 s before the 4th start: it holds at 3, CRASHED.
	hold := time.Now().Add(5 * time.Second)
	for time.Now().Before(hold) {
		rows, err := c.actuals("crasher")
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].GetCrashCount() != 3 || rows[0].GetState() != models.Crashed {
			t.Fatalf("after the 3rd crash the instance must wait CRASHED with crash_count 3; now %s", describe(rows))
		}
		time.Sleep(250 * time.Millisecond)
	}
	out, err := c.gavel("lrp", "crasher")
	if err != nil {
		t.Fatalf("gavel lrp: %v\n%s", err, out)
	}
	if !containsRow(out, "crasher", "0", "CRASHED", "3") {
		t.Errorf("gavel lrp does not show index 0 CRASHED with 3 crashes:\n%s", out)
	}
}

// containsRow reports whether a table line holds every field, in order.
func containsRow(table string, fields ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		cols := strings.Fields(line)
		i := 0
		for _, col := range cols {
			if i < len(fields) && col == fields[i] {
				i++
			}
		}
		if i == len(fields) {
			return true
		}
	}
	return false
}

// SIGKILL one rep: once its presence expires its instances are started on
// the other cells, within the presence TTL plus a few seconds, and answer
// there; the rows on the dead cell go away.
func TestKilledRepsInstancesMoveToOtherCells(t *testing.T) {
	t.Parallel()
	c := start(t, options{})
	c.desire(appLRP("survivor", 3))
	rows := c.waitRunning("survivor", 3, placeTimeout)
	victim := c.reps[0]
	var moved []int32
	for _, a := range rows {
		if a.GetInstanceKey().GetCellId() == victim.id {
			moved = append(moved, a.GetKey().GetIndex())
		}
	}
	if len(moved) == 0 {
		t.Fatalf("no instance on %s to move: %s", victim.id, describe(rows))
	}

	killed := time.Now()
	c.killRep(0)
	deadline := presenceTTL + 2*convergenceInterval + 10*time.Second
	waitFor(t, deadline, "every instance RUNNING on a live cell", func() error {
		rows, err := c.actuals("survivor")
		if err != nil {
			return err
		}
		running := map[int32]bool{}
		for _, a := range rows {
			if a.GetState() == models.Running && a.GetPresence() == models.Ordinary && a.GetInstanceKey().GetCellId() != victim.id {
				running[a.GetKey().GetIndex()] = true
			}
		}
		if len(running) != 3 {
			return fmt.Errorf("now %s", describe(rows))
		}
		return nil
	})
	t.Logf("instances %v of %s back on other cells %s after the SIGKILL (presence TTL %s)", moved, victim.id, time.Since(killed).Round(time.Millisecond), presenceTTL)
	c.waitCells(c.reps[1].id, c.reps[2].id)
	after := c.waitRunning("survivor", 3, 10*time.Second)
	for _, a := range after {
		if a.GetInstanceKey().GetCellId() == victim.id {
			t.Errorf("instance %d still on the dead cell: %s", a.GetKey().GetIndex(), describe(after))
		}
	}
	checkAnswers(t, after)
}

// Cells with a required placement tag take only work with that tag; work
// with no tags spreads evenly over the zones of the untagged cells.
func TestPlacementTagsAndZones(t *testing.T) {
	t.Parallel()
	c := start(t, options{cells: []cellSpec{
		{zone: "z1", tags: []string{"gpu"}},
		{zone: "z2"},
		{zone: "z3"},
		{zone: "z1"},
	}})
	tagged, untagged := c.reps[0].id, []string{c.reps[1].id, c.reps[2].id, c.reps[3].id}

	c.desire(appLRP("gpu-app", 3, func(d *modelsv1.DesiredLRP) { d.PlacementTags = []string{"gpu"} }))
	c.desire(appLRP("plain", 6))
	gpu := c.waitRunning("gpu-app", 3, placeTimeout)
	for _, a := range gpu {
		if a.GetInstanceKey().GetCellId() != tagged {
			t.Errorf("gpu-app instance %d on %s, want the gpu cell %s", a.GetKey().GetIndex(), a.GetInstanceKey().GetCellId(), tagged)
		}
	}
	checkAnswers(t, gpu)

	plain := c.waitRunning("plain", 6, placeTimeout)
	zones := map[string]int{}
	for _, a := range plain {
		cell := a.GetInstanceKey().GetCellId()
		if cell == tagged {
			t.Errorf("untagged instance %d on the gpu cell", a.GetKey().GetIndex())
		}
		zones[a.GetAvailabilityZone()]++
	}
	if zones["z1"] != 2 || zones["z2"] != 2 || zones["z3"] != 2 {
		t.Errorf("6 instances over cells %v in zones z2, z3, z1 should be 2 per zone; got %v: %s", untagged, zones, describe(plain))
	}

	// A tagged task lands on the tagged cell too.
	task := &bbsv1.DesireTaskRequest{TaskGuid: "gpu-task", Domain: "it", Definition: &modelsv1.TaskDefinition{
		RootFs: "preloaded:cflinuxfs4", MemoryMb: 32, DiskMb: 32, Action: shAction("true"), PlacementTags: []string{"gpu"},
		LogGuid: "gpu-task", LogSource: "TASK",
	}}
	if _, err := c.client().DesireTask(ctx(t), task); err != nil {
		t.Fatal(err)
	}
	done := c.waitTask("gpu-task", models.TaskCompleted, placeTimeout)
	if done.GetCellId() != tagged || done.GetFailed() {
		t.Errorf("gpu-task ran on %q (failed=%v %q), want %s", done.GetCellId(), done.GetFailed(), done.GetFailureReason(), tagged)
	}
}

// An app larger than every cell cannot be placed: its instances stay
// UNCLAIMED with Diego's "insufficient resources" placement error, and the
// CLI shows it.
func TestTooLargeAppShowsInsufficientResources(t *testing.T) {
	t.Parallel()
	c := start(t, options{})
	c.desire(appLRP("huge", 2, func(d *modelsv1.DesiredLRP) { d.MemoryMb = 4096 }))
	waitFor(t, placeTimeout, "both instances carry the placement error", func() error {
		rows, err := c.actuals("huge")
		if err != nil {
			return err
		}
		if len(rows) != 2 {
			return fmt.Errorf("rows: %s", describe(rows))
		}
		for _, a := range rows {
			if a.GetState() != models.Unclaimed || !strings.HasPrefix(a.GetPlacementError(), "insufficient resources") {
				return fmt.Errorf("now %s", describe(rows))
			}
		}
		return nil
	})
	// Re-auctions by convergence keep failing the same way; nothing lands.
	time.Sleep(3 * convergenceInterval)
	rows, err := c.actuals("huge")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range rows {
		if a.GetState() != models.Unclaimed || a.GetInstanceKey().GetCellId() != "" || !strings.HasPrefix(a.GetPlacementError(), "insufficient resources") {
			t.Errorf("an unplaceable instance changed: %s", describe(rows))
		}
	}
	out, err := c.gavel("lrp", "huge")
	if err != nil {
		t.Fatalf("gavel lrp: %v\n%s", err, out)
	}
	if !strings.Contains(out, "insufficient resources") {
		t.Errorf("gavel lrp does not show the placement error:\n%s", out)
	}
	// A fitting app still runs next to it.
	c.desire(appLRP("small", 1))
	checkAnswers(t, c.waitRunning("small", 1, placeTimeout))
}
