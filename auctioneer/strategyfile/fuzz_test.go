package strategyfile_test

import (
	"math"
	"testing"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/auctioneer/strategyfile"
)

// nanGuard fails the test if the strategy it wraps ever scores NaN.
type nanGuard struct {
	auctioneer.Strategy
	t *testing.T
}

func (g nanGuard) Score(c *auctioneer.Cell, w *auctioneer.Work) float64 {
	s := g.Strategy.Score(c, w)
	if math.IsNaN(s) {
		g.t.Fatalf("NaN score on cell %s", c.ID())
	}
	return s
}

// FuzzParse: any input is refused with an error or compiles into a
// strategy that places a scenario without panicking and never scores NaN.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		binpackCEL, diegoCEL, "base: spread", "score: 0.0 / 0.0",
		"score: 'double(1 / (cell.index - cell.index))'",
		"params: {a: 2}\nscore: 'params.a * usage_after'",
		`{"score": "cell.placement_tags.exists(t, t in work.placement_tags) ? 0.0 : 1.0"}`,
		"score: '-9223372036854775807 - cell.index - 2'",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := strategyfile.Parse(data)
		if err != nil {
			return
		}
		reg := auctioneer.NewRegistry()
		if err := reg.Register(file.Name(), func(o auctioneer.Options) (auctioneer.Strategy, error) {
			s, err := file.New(o)
			return nanGuard{Strategy: s, t: t}, err
		}); err != nil {
			t.Fatal(err)
		}
		opts := auctioneer.DefaultOptions()
		opts.Strategy, opts.Registry = file.Name(), reg
		a := randomAuction(1)
		res, err := auctioneer.Run(a, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Placements)+len(res.Failures) != len(a.LRPs)+len(a.Tasks) {
			t.Fatal("items lost")
		}
	})
}
