package models

import (
	"time"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// CrashPolicy decides when a crashed instance restarts, as Diego does.
type CrashPolicy struct {
	// ImmediateRestarts: an instance whose crash count is below this restarts at once (3).
	ImmediateRestarts int32
	// MaxRestartAttempts: an instance that crashed this often is never restarted again (200).
	MaxRestartAttempts int32
	// MinBackoff is the wait after the first delayed crash, doubling each crash (30 s).
	MinBackoff time.Duration
	// MaxBackoff caps the wait (16 min).
	MaxBackoff time.Duration
	// ResetAfter: an instance that ran longer than this starts counting crashes from 1 again (5 min).
	ResetAfter time.Duration
}

// DefaultCrashPolicy is Diego's policy.
func DefaultCrashPolicy() CrashPolicy {
	return CrashPolicy{
		ImmediateRestarts:  3,
		MaxRestartAttempts: 200,
		MinBackoff:         30 * time.Second,
		MaxBackoff:         16 * time.Minute,
		ResetAfter:         5 * time.Minute,
	}
}

// NextCrashCount is the crash count after a crash of an instance that was in
// state since the given time.
func (p CrashPolicy) NextCrashCount(state modelsv1.ActualLRPState, count int32, since, now time.Time) int32 {
	if state == Running && now.Sub(since) > p.ResetAfter {
		return 1
	}
	return count + 1
}

// RestartDelay is how long after its crash an instance with this crash count
// waits before it restarts; ok is false when it is never restarted.
func (p CrashPolicy) RestartDelay(crashCount int32) (delay time.Duration, ok bool) {
	if crashCount < p.ImmediateRestarts {
		return 0, true
	}
	if crashCount >= p.MaxRestartAttempts {
		return 0, false
	}
	delay = p.MinBackoff
	for i := p.ImmediateRestarts; i < crashCount && delay < p.MaxBackoff; i++ {
		delay *= 2
	}
	if delay > p.MaxBackoff {
		delay = p.MaxBackoff
	}
	return delay, true
}

// ShouldRestart says whether an instance with this crash count, crashed at
// since, restarts at now.
func (p CrashPolicy) ShouldRestart(crashCount int32, since, now time.Time) bool {
	delay, ok := p.RestartDelay(crashCount)
	return ok && now.Sub(since) >= delay
}
