package auctionrunner

import (
	"context"
	"crypto/tls"
	"fmt"
	"sort"
	"sync"

	"code.cloudfoundry.org/lager/v3"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/auctioneer"
	"github.com/gavelhq/gavel/internal/grpcclient"
	"github.com/gavelhq/gavel/locket"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// Directory lists the live cells.
type Directory interface {
	// Cells returns the presence of every live cell. It blocks for one
	// round trip to the presence store and is safe for concurrent use; an
	// error means the list could not be read at all.
	Cells(ctx context.Context) ([]*modelsv1.CellPresence, error)
}

// LocketDirectory reads cell presences from etcd through locket.
type LocketDirectory struct {
	// Client is the etcd client.
	Client *clientv3.Client
	// Reader, if set, is read instead of Client (the Consul backend).
	Reader locket.Reader
	// KeyPrefix is Gavel's key root ("" means locket's default).
	KeyPrefix string
	// Logger records presences that cannot be decoded.
	Logger lager.Logger
}

var _ Directory = (*LocketDirectory)(nil)

// Cells implements Directory. A presence that does not decode, has no rep
// address, or names another cell id than its key is logged and left out; a
// presence without a cell id takes the id from its key. Cells come sorted
// by id.
func (d *LocketDirectory) Cells(ctx context.Context) ([]*modelsv1.CellPresence, error) {
	var r locket.Reader = d.Reader
	if r == nil {
		r = locket.NewEtcdBackend(d.Client, d.Logger)
	}
	raw, err := locket.FetchPresencesFrom(ctx, r, d.KeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("fetch cell presences: %w", err)
	}
	out := make([]*modelsv1.CellPresence, 0, len(raw))
	for id, value := range raw {
		p := &modelsv1.CellPresence{}
		if err := proto.Unmarshal(value, p); err != nil {
			d.logger().Error("undecodable-cell-presence", err, lager.Data{"cell_id": id})
			continue
		}
		switch p.GetCellId() {
		case "":
			p.CellId = id
		case id:
		default:
			d.logger().Info("cell-presence-id-differs-from-key", lager.Data{"cell_id": id, "presence_cell_id": p.GetCellId()})
			continue
		}
		if p.GetRepAddress() == "" {
			d.logger().Info("cell-presence-without-address", lager.Data{"cell_id": id})
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetCellId() < out[j].GetCellId() })
	return out, nil
}

func (d *LocketDirectory) logger() lager.Logger {
	if d.Logger == nil {
		return lager.NewLogger("auctioneer")
	}
	return d.Logger
}

// Reps gives clients of cells' RepService by address.
type Reps interface {
	// Rep returns a client for the rep at address; it does not block on
	// the network. Safe for concurrent use.
	Rep(address string) (repv1.RepServiceClient, error)
	// Forget drops what is kept for an address no cell announces any more.
	Forget(address string)
}

// RepPool is Reps over one shared gRPC connection per address.
type RepPool struct {
	pool *grpcclient.Pool
}

var _ Reps = (*RepPool)(nil)

// NewRepPool returns a pool whose connections use tlsConfig (nil means
// plaintext).
func NewRepPool(tlsConfig *tls.Config) *RepPool {
	return &RepPool{pool: grpcclient.NewPool(tlsConfig)}
}

// Rep implements Reps.
func (p *RepPool) Rep(address string) (repv1.RepServiceClient, error) {
	conn, err := p.pool.Get(address)
	if err != nil {
		return nil, fmt.Errorf("rep client: %w", err)
	}
	return repv1.NewRepServiceClient(conn), nil
}

// Forget implements Reps.
func (p *RepPool) Forget(address string) { p.pool.Forget(address) }

// Close closes every connection.
func (p *RepPool) Close() { p.pool.Close() }

// liveCell is a cell that answered State: its presence, its client and
// its state in the engine's terms. cached says the state came from the
// runner's cache rather than from a State call of this auction.
type liveCell struct {
	presence *modelsv1.CellPresence
	rep      repv1.RepServiceClient
	state    auctioneer.CellState
	cached   bool
}

// fetchResult is one view of every cell's state: fetched now or reused.
type fetchResult struct {
	cells      []liveCell
	presences  int
	failed     int // State errored or timed out, or no client
	evacuating int
	mismatched int
	fetched    int // State calls made
	reused     int // cells whose cached state was used without a call
}

// fetchAnswers asks the given cells for their State in parallel, at most
// workers at a time, each with timeout, and returns the answers in order.
func (r *Runner) fetchAnswers(ctx context.Context, presences []*modelsv1.CellPresence) []stateAnswer {
	answers := make([]stateAnswer, len(presences))
	if len(presences) == 0 {
		return answers
	}
	workers := min(r.opts.CellStateWorkers, len(presences))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				answers[i] = r.fetchState(ctx, presences[i])
			}
		}()
	}
	for i := range presences {
		next <- i
	}
	close(next)
	wg.Wait()
	return answers
}

const (
	skipEvacuating = "evacuating"
	skipMismatch   = "cell id mismatch"
)

// stateAnswer is one cell's answer to State: the cell, or why it is left out.
type stateAnswer struct {
	cell liveCell
	err  error
	skip string
}

func (r *Runner) fetchState(ctx context.Context, p *modelsv1.CellPresence) (a stateAnswer) {
	rep, err := r.opts.Reps.Rep(p.GetRepAddress())
	if err != nil {
		a.err = err
		return a
	}
	cctx, cancel := context.WithTimeout(ctx, r.opts.CellStateTimeout)
	defer cancel()
	st, err := rep.State(cctx, &repv1.StateRequest{LrpSummaries: true})
	if err != nil {
		a.err = fmt.Errorf("state of cell %s at %s: %w", p.GetCellId(), p.GetRepAddress(), err)
		return a
	}
	a.cell = liveCell{presence: p, rep: rep, state: CellState(p, st)}
	switch {
	case st.GetCellId() != "" && st.GetCellId() != p.GetCellId():
		a.cell.state.CellID = st.GetCellId()
		a.skip = skipMismatch
	case st.GetEvacuating():
		a.skip = skipEvacuating
	}
	return a
}
