// Package sim is a container backend that simulates containers without
// running anything, for scale tests and many simulated cells in one OS
// process.
//
// A simulated container holds only its spec and a few counters. A process
// started in it "starts" at once, answers health probes (the container
// implements backend.Prober) after Options.StartDelay, and exits with status 0
// after Options.RunDuration (0 means never), unless it crashes: with
// probability Options.CrashRate (drawn from a seeded generator, so a run can
// be replayed) it exits with status 1 at a uniformly drawn time within
// Options.CrashWindow. Timers of one Backend share a single goroutine and a
// heap, driven by the injected clock, and processes report their exit through
// backend.ExitNotifier callbacks instead of a blocked Wait, so thousands of
// containers cost no goroutines of their own, in the backend or in the
// executor supervising them. Resources are accounted instantly.
package sim
