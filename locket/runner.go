package locket

import (
	"context"
	"errors"
	"os"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
)

// Defaults shared by locks and presences (Diego's values).
const (
	// DefaultTTL is the lease time to live.
	DefaultTTL = 15 * time.Second
	// DefaultRetryInterval is how often an attempt to acquire is retried
	// when no release is seen.
	DefaultRetryInterval = 5 * time.Second
	// releaseTimeout bounds the release on a signal.
	releaseTimeout = 5 * time.Second
)

// signalContext returns a context cancelled when a signal arrives (or the
// returned cancel is called).
func signalContext(signals <-chan os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// acquirer tries to acquire one record until it succeeds or ctx is done.
type acquirer struct {
	backend Backend
	req     AcquireRequest
	clock   clock.Clock
	retry   time.Duration
	logger  lager.Logger
}

// acquire blocks until the record is held (returns the lease) or ctx is done
// (returns nil). Between attempts it waits for the key to be released or
// for the retry interval, whichever comes first.
func (a *acquirer) acquire(ctx context.Context) Lease {
	lastHeld := false
	for {
		lease, err := a.backend.Acquire(ctx, a.req)
		if err == nil {
			return lease
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrHeld) {
			if !lastHeld {
				a.logger.Info("held-by-another-owner", lager.Data{"key": a.req.Key, "retry-interval": a.retry.String()})
			}
			lastHeld = true
		} else {
			a.logger.Error("acquire-failed", err, lager.Data{"key": a.req.Key})
			lastHeld = false
		}
		if !a.wait(ctx, errors.Is(err, ErrHeld)) {
			return nil
		}
	}
}

// wait waits for the retry interval or, when watch is true, for the key to
// be released, whichever comes first. It returns false when ctx is done.
func (a *acquirer) wait(ctx context.Context, watch bool) bool {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	released := make(chan struct{})
	if watch {
		go func() {
			if err := a.backend.WaitReleased(wctx, a.req.Key); err == nil {
				close(released)
			}
		}()
	}
	timer := a.clock.NewTimer(a.retry)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C():
	case <-released:
	}
	return true
}

// release releases lease within releaseTimeout and logs failures.
func release(lease Lease, logger lager.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := lease.Release(ctx); err != nil {
		logger.Error("release-failed", err)
	}
}
