package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/locket"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// OwnerAnnotation is the CellPresence annotation naming the rep that
// registered it. A rep that restarts with the same owner replaces its own
// record at once instead of waiting for the old lease to expire.
const OwnerAnnotation = "gavel.rep/owner"

// presenceOwner is stable across restarts of a cell whose containers
// survive them (hostname and the backend's depot: the process or runc root
// directory, or the Garden server's address), and empty for a simulated cell.
func presenceOwner(cfg Config) string {
	var where string
	switch cfg.Backend {
	case BackendProcess:
		where = cfg.Process.RootDir
	case BackendRunc:
		where = "runc\x00" + cfg.Runc.RootDir
	case BackendGarden:
		where = "garden\x00" + cfg.Garden.Network + "\x00" + cfg.Garden.Address
	default:
		return ""
	}
	host, _ := os.Hostname()
	sum := sha256.Sum256([]byte(cfg.CellID + "\x00" + host + "\x00" + where))
	return hex.EncodeToString(sum[:12])
}

// presence keeps a cell's presence registered. Unlike locket.Presence it
// takes back a record left by its own earlier run at once, and, when
// keepOnStop says so, does not delete the record on a signal: a restarting
// cell whose containers keep running never vanishes from the BBS (the
// record lives until its lease expires, or until the next run replaces it).
type presence struct {
	backend    locket.Backend
	key        string
	value      []byte
	owner      string
	ttl, retry time.Duration
	keepOnStop func() bool
	logger     lager.Logger
}

func (p *presence) canReplace(current []byte) bool {
	if p.owner == "" {
		return false
	}
	var cur modelsv1.CellPresence
	if err := proto.Unmarshal(current, &cur); err != nil {
		return false
	}
	return cur.GetAnnotations()[OwnerAnnotation] == p.owner
}

// Run registers, closes ready, and keeps the record registered until signalled.
func (p *presence) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-signals
		cancel()
	}()
	req := locket.AcquireRequest{Key: p.key, Value: p.value, TTL: p.ttl, CanReplace: p.canReplace}
	first := true
	for {
		lease, err := p.backend.Acquire(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, locket.ErrHeld) {
				p.logger.Info("presence-held-by-another-owner", lager.Data{"key": p.key})
			} else {
				p.logger.Error("presence-acquire-failed", err)
			}
			if !p.wait(ctx) {
				return nil
			}
			continue
		}
		p.logger.Info("presence-registered", lager.Data{"key": p.key})
		if first {
			close(ready)
			first = false
		}
		select {
		case <-lease.Lost():
			p.logger.Error("presence-lost", lease.Err())
		case <-ctx.Done():
			if p.keepOnStop != nil && p.keepOnStop() {
				p.logger.Info("presence-left-for-the-next-run")
				return nil
			}
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := lease.Release(rctx)
			rcancel()
			if err != nil {
				return fmt.Errorf("release presence: %w", err)
			}
			return nil
		}
	}
}

// wait waits for the key's release or the retry interval; false when ctx ends.
func (p *presence) wait(ctx context.Context) bool {
	wctx, cancel := context.WithTimeout(ctx, p.retry)
	defer cancel()
	_ = p.backend.WaitReleased(wctx, p.key)
	return ctx.Err() == nil
}
