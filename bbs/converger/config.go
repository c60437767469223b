package converger

import (
	"errors"
	"fmt"
	"time"

	"github.com/gavelhq/gavel/bbs/models"
	"github.com/gavelhq/gavel/internal/config"
)

// Defaults, as Diego's (reference/bbs.md §3.1).
const (
	DefaultInterval            = 30 * time.Second
	DefaultStaleUnclaimed      = 30 * time.Second
	DefaultKickTask            = 30 * time.Second
	DefaultExpirePendingTask   = 30 * time.Minute
	DefaultExpireCompletedTask = 2 * time.Minute
)

// Failure reasons convergence writes on tasks (Diego's strings).
const (
	TaskExpiredReason  = "not started within time limit"
	TaskCellGoneReason = "cell disappeared before completion"
)

// Config is the convergence section of the BBS config; durations are JSON
// strings such as "30s".
type Config struct {
	// Interval is the time between periodic passes (default 30s). A lost cell
	// triggers a pass at once, whatever the interval.
	Interval config.Duration `json:"interval"`
	// StaleUnclaimed is the age at which an UNCLAIMED instance is auctioned
	// again (default 30s).
	StaleUnclaimed config.Duration `json:"stale_unclaimed"`
	// KickTask is the age (since the last update) at which a COMPLETED task's
	// callback is retried and a RESOLVING task goes back to COMPLETED (default 30s).
	KickTask config.Duration `json:"kick_task"`
	// ExpirePendingTask is how long a task may stay PENDING before it fails
	// (default 30m).
	ExpirePendingTask config.Duration `json:"expire_pending_task"`
	// ExpireCompletedTask is how long after its first completion a COMPLETED
	// or RESOLVING task is deleted (default 2m).
	ExpireCompletedTask config.Duration `json:"expire_completed_task"`
	// CellReturn, when set, adds one pass this long after the BBS becomes
	// active: the cells of a restarted cluster have had their presence TTL to
	// come back, so what is still missing is missing indeed and is placed
	// then rather than at the next interval (default 0: no such pass; gavel
	// dev sets it to the cells' presence TTL).
	CellReturn config.Duration `json:"cell_return"`
	// CrashPolicy decides when CRASHED instances restart (not in the config
	// file: Diego's policy; the zero value means models.DefaultCrashPolicy).
	CrashPolicy models.CrashPolicy `json:"-"`
}

// DefaultConfig returns Diego's durations.
func DefaultConfig() Config {
	return Config{
		Interval:            config.Duration(DefaultInterval),
		StaleUnclaimed:      config.Duration(DefaultStaleUnclaimed),
		KickTask:            config.Duration(DefaultKickTask),
		ExpirePendingTask:   config.Duration(DefaultExpirePendingTask),
		ExpireCompletedTask: config.Duration(DefaultExpireCompletedTask),
	}
}

// AcceleratedConfig is the profile for tests and `gavel dev`: every duration
// shrunk so whole lifecycles play out in seconds.
func AcceleratedConfig() Config {
	return Config{
		Interval:            config.Duration(time.Second),
		StaleUnclaimed:      config.Duration(time.Second),
		KickTask:            config.Duration(time.Second),
		ExpirePendingTask:   config.Duration(20 * time.Second),
		ExpireCompletedTask: config.Duration(10 * time.Second),
	}
}

// withDefaults fills zero durations with the defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.StaleUnclaimed == 0 {
		c.StaleUnclaimed = d.StaleUnclaimed
	}
	if c.KickTask == 0 {
		c.KickTask = d.KickTask
	}
	if c.ExpirePendingTask == 0 {
		c.ExpirePendingTask = d.ExpirePendingTask
	}
	if c.ExpireCompletedTask == 0 {
		c.ExpireCompletedTask = d.ExpireCompletedTask
	}
	if c.CrashPolicy == (models.CrashPolicy{}) {
		c.CrashPolicy = models.DefaultCrashPolicy()
	}
	return c
}

// Validate checks the durations without side effects; a zero duration means
// its default. Errors name the field.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		d    config.Duration
	}{
		{"convergence.interval", c.Interval},
		{"convergence.stale_unclaimed", c.StaleUnclaimed},
		{"convergence.kick_task", c.KickTask},
		{"convergence.expire_pending_task", c.ExpirePendingTask},
		{"convergence.expire_completed_task", c.ExpireCompletedTask},
		{"convergence.cell_return", c.CellReturn},
	} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s: must be >= 0 (got %s)", f.name, f.d))
		}
	}
	if c.KickTask > 0 && c.ExpireCompletedTask > 0 && c.ExpireCompletedTask.D() < c.KickTask.D() {
		errs = append(errs, fmt.Errorf("convergence.expire_completed_task: must be at least kick_task (%s < %s)", c.ExpireCompletedTask, c.KickTask))
	}
	return errors.Join(errs...)
}
