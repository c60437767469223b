package locket

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Sentinel errors.
var (
	// ErrLockLost is returned by [Lock.Run] when a held lock is lost.
	ErrLockLost = errors.New("locket: lock lost")
	// ErrHeld is returned by [Backend.Acquire] when another owner holds the
	// record.
	ErrHeld = errors.New("locket: held by another owner")
	// ErrNotFound is returned by the Fetch functions when there is no record.
	ErrNotFound = errors.New("locket: not found")
	// ErrLeaseLost is the cause reported by [Lease.Err] for a lost lease.
	ErrLeaseLost = errors.New("locket: lease lost")
)

// AcquireRequest describes a leased record to create.
type AcquireRequest struct {
	// Key is the full key, see keys.go.
	Key string
	// Value is stored as is.
	Value []byte
	// TTL is the lease time to live; a backend may round it up.
	TTL time.Duration
	// CanReplace, if set, is asked about an existing record's value: when it
	// returns true the record is ours (the same owner restarted) and is
	// replaced instead of waited for.
	CanReplace func(current []byte) bool
}

// Backend stores leased records. Implementations are safe for concurrent
// use.
type Backend interface {
	// Acquire creates the record if its key is absent (or CanReplace allows
	// replacing it), bound to a new lease kept alive until it is released or
	// lost. It returns an error wrapping ErrHeld when another owner holds the
	// key, and another error when the backend fails. It blocks for at most
	// one round trip and honours ctx.
	Acquire(ctx context.Context, req AcquireRequest) (Lease, error)
	// WaitReleased blocks until key has no record, or ctx is done (then it
	// returns ctx's error). It returns at once when the key is absent.
	WaitReleased(ctx context.Context, key string) error
}

// Lease is a held record. Its methods are safe for concurrent use.
type Lease interface {
	// Lost is closed when the record is lost: the lease expired or was
	// revoked, its keep-alive ended, or the key was deleted or overwritten.
	// It is not closed by Release.
	Lost() <-chan struct{}
	// Err says why the lease was lost (wrapping ErrLeaseLost), nil before.
	Err() error
	// Release stops the keep-alive and deletes the record if still held.
	// It is idempotent.
	Release(ctx context.Context) error
}

// leaseState is what every Lease keeps about its end: the Lost channel,
// the error that closed it, and whether it was released on purpose. The
// backends' leases embed it.
type leaseState struct {
	key  string
	lost chan struct{}

	mu       sync.Mutex
	err      error
	released bool
}

func newLeaseState(key string) leaseState {
	return leaseState{key: key, lost: make(chan struct{})}
}

// Lost implements [Lease].
func (s *leaseState) Lost() <-chan struct{} { return s.lost }

// Err implements [Lease].
func (s *leaseState) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// markLost records why the lease was lost and closes Lost, unless the lease
// was released on purpose or already lost; it reports whether it did.
func (s *leaseState) markLost(reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released || s.err != nil {
		return false
	}
	s.err = fmt.Errorf("%w: %s: %s", ErrLeaseLost, s.key, reason)
	close(s.lost)
	return true
}

// markReleased records a release on purpose; false when it was released
// before.
func (s *leaseState) markReleased() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return false
	}
	s.released = true
	return true
}
