// Package rungroup runs ifrit runners together, as ifrit's grouper does, for
// groups made by the thousand: a simulated cell is a group of five members and
// a rep process runs hundreds of cells in one parallel group.
//
// grouper starts a goroutine for every Process.Wait call, and its ordered
// group calls Wait on every earlier member while starting each later one, so
// a five-member group keeps ~25 goroutines parked until it exits (half of a
// simulated cell's goroutines). Here every member costs exactly one goroutine,
// the one running it: waiting for a member is a receive on a channel it
// closes.
//
// The semantics follow grouper's: Ordered starts members one at a time, each
// once the one before is ready, and stops them in reverse order; Parallel
// starts and stops them all at once. A group is ready once every member is.
// The group forwards the signal it receives; when a member exits on its own,
// the others get os.Interrupt. Run returns nil when every member returned nil,
// else their errors joined, each prefixed with the member's name.
package rungroup

import (
	"errors"
	"fmt"
	"os"

	"github.com/tedsuo/ifrit"
)

// Member is one named runner of a group.
type Member struct {
	Name   string
	Runner ifrit.Runner
}

// Process is a runner started by Start.
type Process struct {
	name    string
	signals chan os.Signal
	ready   chan struct{}
	exited  chan struct{}
	err     error // set before exited is closed
}

// Start runs r on a goroutine of its own and returns at once.
func Start(name string, r ifrit.Runner) *Process { return start(name, r, nil) }

// start is Start that, once r returned, sends on exits (when not nil) from
// the same goroutine.
func start(name string, r ifrit.Runner, exits chan<- struct{}) *Process {
	p := &Process{name: name, signals: make(chan os.Signal, 1), ready: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		p.err = r.Run(p.signals, p.ready)
		close(p.exited)
		if exits != nil {
			exits <- struct{}{}
		}
	}()
	return p
}

// Ready is closed once the runner is ready.
func (p *Process) Ready() <-chan struct{} { return p.ready }

// Exited is closed once the runner returned.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is what the runner returned; valid once Exited is closed.
func (p *Process) Err() error { return p.err }

// Signal delivers sig unless the runner has not read an earlier one yet (it
// then has a signal to act on) or has exited. It never blocks.
func (p *Process) Signal(sig os.Signal) {
	select {
	case p.signals <- sig:
	default:
	}
}

// Stop signals the runner and waits for it to return.
func (p *Process) Stop(sig os.Signal) error {
	p.Signal(sig)
	<-p.exited
	return p.err
}

// Ordered returns a runner that starts members in order, each once the one
// before it is ready, and stops them in reverse order.
func Ordered(members ...Member) ifrit.Runner { return &group{members: members, ordered: true} }

// Parallel returns a runner that starts and stops members all at once.
func Parallel(members ...Member) ifrit.Runner { return &group{members: members} }

type group struct {
	members []Member
	ordered bool
}

// Run implements ifrit.Runner.
func (g *group) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	// Every member sends once when it returns, so sends never block with
	// this capacity.
	exits := make(chan struct{}, len(g.members))
	procs := make([]*Process, 0, len(g.members))
	for i, m := range g.members {
		procs = append(procs, start(m.Name, m.Runner, exits))
		if !g.ordered {
			continue
		}
		if stop, sig := waitReady(procs[i], signals, exits); stop {
			return g.stop(procs, sig)
		}
	}
	if !g.ordered {
		for _, p := range procs {
			if stop, sig := waitReady(p, signals, exits); stop {
				return g.stop(procs, sig)
			}
		}
	}
	close(ready)
	select {
	case sig := <-signals:
		return g.stop(procs, sig)
	case <-exits:
		return g.stop(procs, os.Interrupt)
	}
}

// waitReady waits for p to be ready; it says to stop, with the signal to
// forward, when the group is signalled or any member returns first.
func waitReady(p *Process, signals <-chan os.Signal, exits <-chan struct{}) (stop bool, sig os.Signal) {
	select {
	case <-p.ready:
		return false, nil
	case sig := <-signals:
		return true, sig
	case <-exits:
		return true, os.Interrupt
	}
}

// stop signals the started members, in reverse order one after the other
// when ordered, else all at once, waits for them all and returns their errors.
func (g *group) stop(procs []*Process, sig os.Signal) error {
	if g.ordered {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].Stop(sig)
		}
	} else {
		for _, p := range procs {
			p.Signal(sig)
		}
	}
	var errs []error
	for _, p := range procs {
		<-p.exited
		if p.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, p.err))
		}
	}
	return errors.Join(errs...)
}
