package integration_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A gavel dev cluster whose auctioneer runs with --auction-seed is captured
// by gavel sim capture and replayed by gavel sim run: every instance lands
// on the cell the cluster put it on.
//
// The auctioneer's auction n breaks ties with seed + n over the cells in
// cell-id order, and one desired LRP reaches it as one start request, so
// one auction places all its instances. A capture of the cells cleared
// with the desired work (--work desired --existing clear) replays the
// first app's auction; a capture of the cells as they are with the second
// app taken off them (--replace api) replays the second app's auction with
// the seed the auctioneer logged for it; a capture of the cluster as it is
// (--work unplaced) has nothing to place and each cell's instances and
// free memory as its rep reports them. Three cells in three zones and 5
// and 4 instances leave ties that only the seed decides (the replay with
// another seed is checked to differ for one of the two apps).
func TestSimCaptureReplaysTheDevClustersPlacements(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	work := t.TempDir()
	const seed = 7
	d := startDev(t, work, "capture", "--cells", "3", "--auction-seed", fmt.Sprint(seed))

	if out, err := d.gavel("push", "web", "--command", "exec "+bin("app"), "--instances", "5", "--memory", "64M", "--disk", "64M"); err != nil {
		t.Fatalf("push web: %v: %s", err, out)
	}
	if out, err := d.gavel("wait", "web", "--running", "5", "--timeout", "60s"); err != nil {
		t.Fatalf("wait web: %v: %s", err, out)
	}
	webCells := d.instanceCells(t, "web")

	webScenario := filepath.Join(work, "web.json")
	if out, err := d.gavel("sim", "capture", "--work", "desired", "--existing", "clear", "--seed", fmt.Sprint(seed), "-o", webScenario); err != nil {
		t.Fatalf("capture web: %v: %s", err, out)
	}
	if got := d.replay(t, webScenario, nil); !maps.Equal(got, webCells) {
		t.Fatalf("the replay of web's auction placed %v; the cluster placed %v", got, webCells)
	}

	if out, err := d.gavel("push", "api", "--command", "exec "+bin("app"), "--instances", "4", "--memory", "256M", "--disk", "256M"); err != nil {
		t.Fatalf("push api: %v: %s", err, out)
	}
	if out, err := d.gavel("wait", "api", "--running", "4", "--timeout", "60s"); err != nil {
		t.Fatalf("wait api: %v: %s", err, out)
	}
	apiCells := d.instanceCells(t, "api")
	apiSeed := d.auctionSeed(t, 4)
	t.Logf("web's instances went to %v, api's to %v with seed %d", webCells, apiCells, apiSeed)

	apiScenario := filepath.Join(work, "api.json")
	if out, err := d.gavel("sim", "capture", "--replace", "api", "--seed", fmt.Sprint(apiSeed), "-o", apiScenario); err != nil {
		t.Fatalf("capture api: %v: %s", err, out)
	}
	if got := d.replay(t, apiScenario, nil); !maps.Equal(got, apiCells) {
		t.Fatalf("the replay of api's auction placed %v; the cluster placed %v", got, apiCells)
	}
	differs := false
	for other := int64(100); other < 110 && !differs; other++ {
		differs = !maps.Equal(d.replay(t, webScenario, &other), webCells) || !maps.Equal(d.replay(t, apiScenario, &other), apiCells)
	}
	if !differs {
		t.Fatal("seeds 100-109 all replay to the cluster's placements: the test cannot tell a replayed seed from any other")
	}

	nowScenario := filepath.Join(work, "now.json")
	if out, err := d.gavel("sim", "capture", "--work", "unplaced", "-o", nowScenario); err != nil {
		t.Fatalf("capture now: %v: %s", err, out)
	}
	if got := d.replay(t, nowScenario, nil); len(got) != 0 {
		t.Fatalf("the cluster as it is replays with placements %v, want none", got)
	}
	var s struct {
		Cells []struct {
			CellID string `json:"cell_id"`
			Total  struct {
				MemoryMB int `json:"memory_mb"`
			} `json:"total"`
			LRPs []struct {
				ProcessGUID string `json:"process_guid"`
				Index       int    `json:"index"`
				MemoryMB    int    `json:"memory_mb"`
			} `json:"lrps"`
		} `json:"cells"`
	}
	readJSON(t, nowScenario, &s)
	if len(s.Cells) != 3 {
		t.Fatalf("captured %d cells, want 3", len(s.Cells))
	}
	captured := map[string]string{}
	for _, c := range s.Cells {
		used := 0
		for _, l := range c.LRPs {
			captured[fmt.Sprintf("%s.%d", l.ProcessGUID, l.Index)] = c.CellID
			used += l.MemoryMB
		}
		out, err := d.gavel("cell-state", c.CellID, "--json")
		if err != nil {
			t.Fatalf("cell-state %s: %v: %s", c.CellID, err, out)
		}
		var st struct {
			Available struct {
				MemoryMB int `json:"memory_mb"`
			} `json:"available_resources"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("cell-state %s: %v: %s", c.CellID, err, out)
		}
		if free := c.Total.MemoryMB - used; free != st.Available.MemoryMB {
			t.Errorf("cell %s: the scenario leaves %d MB free, the rep reports %d MB", c.CellID, free, st.Available.MemoryMB)
		}
	}
	want := map[string]string{}
	for k, v := range webCells {
		want[k] = v
	}
	for k, v := range apiCells {
		want[k] = v
	}
	if !maps.Equal(captured, want) {
		t.Fatalf("the captured cells hold %v; the BBS has %v", captured, want)
	}
}

// instanceCells maps "guid.index" to the cell of each instance of guid.
func (c *devCluster) instanceCells(t *testing.T, guid string) map[string]string {
	t.Helper()
	out, err := c.gavel("lrp", guid, "--json")
	if err != nil {
		t.Fatalf("lrp %s: %v: %s", guid, err, out)
	}
	cells := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var row struct {
			Key *struct {
				ProcessGUID string `json:"process_guid"`
				Index       int    `json:"index"`
			} `json:"key"`
			InstanceKey *struct {
				CellID string `json:"cell_id"`
			} `json:"instance_key"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("lrp %s: %v: %s", guid, err, line)
		}
		if row.Key == nil || row.InstanceKey == nil || row.InstanceKey.CellID == "" {
			continue // the desired LRP's line
		}
		cells[fmt.Sprintf("%s.%d", row.Key.ProcessGUID, row.Key.Index)] = row.InstanceKey.CellID
	}
	return cells
}

// replay runs gavel sim run on a scenario (with seed, when not nil) and
// maps "guid.index" to the cell of each placement.
func (c *devCluster) replay(t *testing.T, scenario string, seed *int64) map[string]string {
	t.Helper()
	args := []string{"sim", "run", "--scenario", scenario, "--format", "json"}
	if seed != nil {
		args = append(args, "--seed", fmt.Sprint(*seed))
	}
	out, err := c.gavel(args...)
	if err != nil {
		t.Fatalf("sim run %s: %v: %s", scenario, err, out)
	}
	var r struct {
		Placements []struct {
			ProcessGUID string `json:"process_guid"`
			Index       int    `json:"index"`
			CellID      string `json:"cell_id"`
		} `json:"placements"`
		Failures []json.RawMessage `json:"failures"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("sim run %s: %v: %s", scenario, err, out)
	}
	if len(r.Failures) > 0 {
		t.Fatalf("sim run %s failed to place: %s", scenario, out)
	}
	cells := map[string]string{}
	for _, p := range r.Placements {
		cells[fmt.Sprintf("%s.%d", p.ProcessGUID, p.Index)] = p.CellID
	}
	return cells
}

// auctionSeed returns the seed of the last auction that placed n LRP
// instances, from the auctioneer's auction-completed log lines.
func (c *devCluster) auctionSeed(t *testing.T, n int) int64 {
	t.Helper()
	var seed int64
	found := false
	waitFor(t, 10*time.Second, fmt.Sprintf("an auction of %d LRP instances in the log", n), func() error {
		f, err := os.Open(filepath.Join(c.work, "data-"+c.name, "gavel.log"))
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if !strings.Contains(sc.Text(), "auction-completed") {
				continue
			}
			var line struct {
				Data struct {
					LRPs   int   `json:"lrps"`
					Placed int   `json:"placed"`
					Seed   int64 `json:"seed"`
				} `json:"data"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Data.LRPs == n && line.Data.Placed == n {
				seed, found = line.Data.Seed, true
			}
		}
		if !found {
			return fmt.Errorf("none yet")
		}
		return sc.Err()
	})
	return seed
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
