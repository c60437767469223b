package auctioneer

// Spread places each item on the least used cell that fits: the score is
// the mean utilisation of memory, disk and containers after the placement
// (proxy allowance included for LRPs). Unlike diego it has no zone walk,
// no anti-affinity and no starting-container term; the weights in Options
// are ignored.
type Spread struct{}

var _ Indexable = Spread{}

// NewSpread builds the spread strategy.
func NewSpread(Options) (Strategy, error) { return Spread{}, nil }

// Score implements Strategy.
func (Spread) Score(c *Cell, w *Work) float64 {
	return c.UsageAfter(placedMemory(c, w), w.DiskMB())
}

// BalanceZones implements Strategy: spread ignores zones.
func (Spread) BalanceZones() bool { return false }

// ScoreForm implements Indexable: the usage, proxy included for LRPs.
func (Spread) ScoreForm(k Kind) (ScoreForm, bool) {
	return ScoreForm{UsageSign: 1, ProxyInUsage: k == KindLRP}, true
}
