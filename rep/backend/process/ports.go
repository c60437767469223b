package process

import (
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/gavelhq/gavel/rep/backend"
)

// portPool hands out host ports from a range, skipping ports in use on the host.
type portPool struct {
	mu         sync.Mutex
	start, end uint32
	next       uint32
	used       map[uint32]bool
}

func newPortPool(start, end uint32) *portPool {
	return &portPool{start: start, end: end, next: start, used: map[uint32]bool{}}
}

// acquire returns a free port, trying each port of the range at most once.
func (p *portPool) acquire() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	size := p.end - p.start + 1
	for i := uint32(0); i < size; i++ {
		port := p.next
		p.next++
		if p.next > p.end {
			p.next = p.start
		}
		if p.used[port] || !hostPortFree(port) {
			continue
		}
		p.used[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("range %d-%d: %w", p.start, p.end, backend.ErrNoPortsAvailable)
}

// claim marks a port as used (rediscovery); it does not check the host.
func (p *portPool) claim(port uint32) {
	p.mu.Lock()
	p.used[port] = true
	p.mu.Unlock()
}

func (p *portPool) release(port uint32) {
	p.mu.Lock()
	delete(p.used, port)
	p.mu.Unlock()
}

func hostPortFree(port uint32) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(int(port))))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
