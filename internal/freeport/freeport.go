// Package freeport picks loopback TCP ports for daemons that must be told
// their address before they bind it: a bench cluster's etcd, BBS and cells, a
// test's daemons.
//
// Listening on port 0 and closing the listener yields a port from the
// kernel's ephemeral range, which the kernel may give to any outgoing
// connection or port-0 bind on the machine before the daemon binds it. On a
// machine running many test packages at once that happens: a bench cell once
// exited with "address already in use" on the debug port chosen for it. A
// Picker takes ports below the ephemeral range instead, which the kernel never
// hands out by itself, probes each one before returning it, and never returns
// the same port twice.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const (
	// pickLow is the lowest port a Picker returns. Below it lie ranges
	// other parts give out without asking the kernel: devcluster's named
	// clusters take [18000, 20000) and the integration tests' cells give
	// their containers host ports from [20000, 30000), so none meets a
	// Picker's port.
	pickLow = 30000
	// minSpan is the fewest ports a range must offer to be worth using;
	// below it a Picker falls back to port 0.
	minSpan = 1000
	// ephemeralRangeFile holds the kernel's ephemeral range as "low high".
	ephemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"
	// linuxEphemeralLow is the start of Linux's default ephemeral range.
	linuxEphemeralLow = 32768
)

// Picker returns distinct loopback ports that are free when returned. It is
// safe for concurrent use.
type Picker struct {
	mu    sync.Mutex
	lo    int // lowest port, inclusive; 0 means ask the kernel for port 0
	span  int
	next  int // offset of the next port to probe
	given map[int]bool
}

// New returns a Picker over the ports from 30000 up to the start of this
// machine's ephemeral range. The search starts at a random port, so pickers
// in processes started together rarely probe the same ports. If that range
// holds fewer than 1,000 ports (an unusual ephemeral range), the Picker asks
// the kernel for port 0 instead.
func New() *Picker {
	raw, _ := os.ReadFile(ephemeralRangeFile) // absent off Linux: assume the default
	hi := ephemeralLow(string(raw))
	if hi-pickLow < minSpan {
		return &Picker{given: map[int]bool{}}
	}
	return newPicker(pickLow, hi)
}

// newPicker returns a Picker over [lo, hi) starting at a random port.
func newPicker(lo, hi int) *Picker {
	span := hi - lo
	return &Picker{lo: lo, span: span, next: rand.IntN(span), given: map[int]bool{}}
}

// ephemeralLow parses the low end of an ephemeral range written as "low high";
// anything else means Linux's default.
func ephemeralLow(rangeText string) int {
	f := strings.Fields(rangeText)
	if len(f) != 2 {
		return linuxEphemeralLow
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 0 {
		return linuxEphemeralLow
	}
	return low
}

// Port returns a loopback port that was free a moment ago and that this
// Picker has not returned before.
func (p *Picker) Port() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lo == 0 {
		return p.kernelPort()
	}
	for tried := 0; tried < p.span; tried++ {
		port := p.lo + p.next
		p.next = (p.next + 1) % p.span
		if p.given[port] || !free(port) {
			continue
		}
		p.given[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("free port: none of the %d ports %d-%d is free", p.span, p.lo, p.lo+p.span-1)
}

// kernelPort asks the kernel for a port, skipping ones already returned.
func (p *Picker) kernelPort() (int, error) {
	for tries := 0; tries < 100; tries++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !p.given[port] {
			p.given[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("free port: the kernel kept offering ports already returned")
}

// Addr is Port as "127.0.0.1:port".
func (p *Picker) Addr() (string, error) {
	port, err := p.Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// free reports whether port can be bound on loopback now.
func free(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
