package app

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/executor"
)

// evacuatorTick is how often the evacuator looks at the cell's containers
// (an in-memory list: cheap).
const evacuatorTick = 100 * time.Millisecond

// runEvacuator waits for a drain (Cell.Drain: the Drain RPC, or SIGUSR1 on
// the rep). The cell then refuses work and the harmonizer evacuates its
// containers; the evacuator watches them go:
//   - once the cell has no container left it closes Drained (the rep stops
//     when all its cells are drained) and waits for the stop signal: exit 0;
//   - at the deadline, the LRP instances still here that have no replacement
//     placed become ordinary instances again (they keep running and are
//     never lost, see Harmonizer.Reclaim) when containers outlive the rep,
//     and it returns an error naming every stranded instance and task: the
//     rep exits non-zero.
func (c *Cell) runEvacuator(signals <-chan os.Signal, ready chan<- struct{}) error {
	close(ready)
	select {
	case <-signals:
		return nil
	case <-c.evac.Started():
	}
	deadline := c.evac.Deadline()
	c.logger.Info("drain-started", lager.Data{"deadline": deadline.Format(time.RFC3339Nano), "containers": len(c.remaining())})
	ticker := time.NewTicker(evacuatorTick)
	defer ticker.Stop()
	for {
		remaining := c.remaining()
		if len(remaining) == 0 {
			c.logger.Info("drained")
			c.isDrained.Store(true)
			close(c.drained)
			<-signals
			return nil
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return c.strand(remaining)
		}
		select {
		case <-signals:
			c.logger.Info("drain-interrupted", lager.Data{"remaining": describe(remaining)})
			return nil
		case <-ticker.C:
		}
	}
}

// remaining lists the cell's LRP and task containers.
func (c *Cell) remaining() []executor.Container {
	var out []executor.Container
	for _, ctr := range c.exec.List() {
		if rep.IsLRP(ctr) || rep.IsTask(ctr) {
			out = append(out, ctr)
		}
	}
	return out
}

// strand ends a drain at its deadline.
func (c *Cell) strand(remaining []executor.Container) error {
	names := describe(remaining)
	data := lager.Data{"stranded": names, "timeout": c.cfg.EvacuationTimeout.D().String()}
	if c.cfg.Backend == BackendProcess && !c.cfg.DestroyContainersOnExit {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		reclaimed, err := c.harmonizer.Reclaim(ctx, remaining)
		cancel()
		if err != nil {
			c.logger.Error("reclaim-failed", err)
		}
		keys := make([]string, len(reclaimed))
		for i, k := range reclaimed {
			keys[i] = fmt.Sprintf("%s/%d", k.GetProcessGuid(), k.GetIndex())
		}
		data["reclaimed"] = keys
	}
	c.logger.Error("evacuation-timed-out", nil, data)
	return fmt.Errorf("cell %s: evacuation timed out after %s with %d stranded: %s",
		c.cfg.CellID, c.cfg.EvacuationTimeout.D(), len(remaining), strings.Join(names, ", "))
}

// describe names containers: "lrp <process_guid>/<index> (instance <guid>)" or "task <guid>".
func describe(cs []executor.Container) []string {
	out := make([]string, 0, len(cs))
	for _, ctr := range cs {
		if rep.IsLRP(ctr) {
			k := rep.ActualLRPKey(ctr)
			out = append(out, fmt.Sprintf("lrp %s/%d (instance %s, %s)", k.GetProcessGuid(), k.GetIndex(), ctr.Guid, ctr.State))
		} else {
			out = append(out, fmt.Sprintf("task %s (%s)", ctr.Guid, ctr.State))
		}
	}
	sort.Strings(out)
	return out
}
