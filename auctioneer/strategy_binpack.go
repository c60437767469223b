package auctioneer

// BinPack fills the fullest cell that fits: the score is the negated mean
// utilisation of memory, disk and containers after the placement (proxy
// allowance included for LRPs), so the cell left fullest wins. No zone
// balancing, anti-affinity or starting-container term; the weights in
// Options are ignored.
type BinPack struct{}

var _ Indexable = BinPack{}

// NewBinPack builds the binpack strategy.
func NewBinPack(Options) (Strategy, error) { return BinPack{}, nil }

// Score implements Strategy.
func (BinPack) Score(c *Cell, w *Work) float64 {
	return -c.UsageAfter(placedMemory(c, w), w.DiskMB())
}

// BalanceZones implements Strategy: binpack ignores zones.
func (BinPack) BalanceZones() bool { return false }

// ScoreForm implements Indexable: the negated usage, proxy included for
// LRPs.
func (BinPack) ScoreForm(k Kind) (ScoreForm, bool) {
	return ScoreForm{UsageSign: -1, ProxyInUsage: k == KindLRP}, true
}

// placedMemory is the memory w takes on c: an LRP adds the cell's proxy
// allowance.
func placedMemory(c *Cell, w *Work) int {
	if w.Kind() == KindLRP {
		return w.MemoryMB() + c.ProxyMemoryMB()
	}
	return w.MemoryMB()
}
