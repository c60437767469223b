package auctioneer

// Diego is Cloud Foundry Diego's scoring, exactly (reference §1.6–§1.7):
//
//	LRP:  UsageAfter(memory + proxy, disk) + starting × StartingContainerWeight
//	      + 1000 × instances of the same app on the cell
//	      + ZoneRank × BinPackFirstFitWeight
//	task: UsageAfter(memory, disk) + starting × StartingContainerWeight
//	      + 1000 × tasks on the cell
//
// with LRPs walking zones from the fewest instances of their app first.
type Diego struct {
	startingWeight float64
	binPackWeight  float64
}

var _ Indexable = (*Diego)(nil)

// NewDiego builds the diego strategy from opts.
func NewDiego(opts Options) (Strategy, error) {
	return &Diego{startingWeight: opts.StartingContainerWeight, binPackWeight: opts.BinPackFirstFitWeight}, nil
}

// Score implements Strategy. The terms are summed in Diego's order so that
// floating-point ties break as they do in Diego.
func (d *Diego) Score(c *Cell, w *Work) float64 {
	startingScore := float64(c.StartingContainers()) * d.startingWeight
	if w.Kind() == KindTask {
		resourceScore := c.UsageAfter(w.MemoryMB(), w.DiskMB()) + startingScore
		return resourceScore + float64(LocalityOffset*c.TaskCount())
	}
	resourceScore := c.UsageAfter(w.MemoryMB()+c.ProxyMemoryMB(), w.DiskMB()) + startingScore
	indexScore := float64(c.ZoneRank()) * d.binPackWeight
	return resourceScore + float64(LocalityOffset*c.AppInstances()) + indexScore
}

// BalanceZones implements Strategy: Diego balances LRPs across zones.
func (d *Diego) BalanceZones() bool { return true }

// ScoreForm implements Indexable: Score is Diego's sum above.
func (d *Diego) ScoreForm(k Kind) (ScoreForm, bool) {
	if k == KindTask {
		return ScoreForm{UsageSign: 1, StartingWeight: d.startingWeight, TaskWeight: LocalityOffset}, true
	}
	return ScoreForm{UsageSign: 1, ProxyInUsage: true, StartingWeight: d.startingWeight,
		ZoneRankWeight: d.binPackWeight, AppInstanceWeight: LocalityOffset}, true
}
