package freeport

import (
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPortsAreDistinctFreeAndBelowTheEphemeralRange(t *testing.T) {
	p := New()
	require.NotZero(t, p.lo, "this machine's ephemeral range leaves room below it")
	hi := p.lo + p.span
	seen := map[int]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				addr, err := p.Addr()
				require.NoError(t, err)
				_, portText, err := net.SplitHostPort(addr)
				require.NoError(t, err)
				port, err := strconv.Atoi(portText)
				require.NoError(t, err)
				mu.Lock()
				require.False(t, seen[port], "port %d returned twice", port)
				seen[port] = true
				mu.Unlock()
				require.GreaterOrEqual(t, port, pickLow)
				require.Less(t, port, hi)
				ln, err := net.Listen("tcp", addr)
				require.NoError(t, err, "a returned port can be bound")
				ln.Close()
			}
		}()
	}
	wg.Wait()
	require.Len(t, seen, 400)
}

func TestBoundPortsAreSkippedAndExhaustionIsAnError(t *testing.T) {
	// Take three consecutive ports, then give a picker a range of five that
	// holds them: it returns only the other two. The ports lie outside
	// New's range, so no picker of another test process takes the two.
	base := 13000
	var held []net.Listener
	for port := base; len(held) < 3; port++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil { // in use already: restart the run of three above it
			for _, l := range held {
				l.Close()
			}
			held, base = nil, port+1
			continue
		}
		held = append(held, ln)
	}
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	p := newPicker(base-1, base+4) // base-1, base..base+2 (held), base+3
	got := map[int]bool{}
	for i := 0; i < 2; i++ {
		port, err := p.Port()
		require.NoError(t, err)
		got[port] = true
	}
	for port := base; port < base+3; port++ {
		require.False(t, got[port], "port %d is bound and must be skipped", port)
	}
	_, err := p.Port()
	require.ErrorContains(t, err, "none of the 5 ports")
}

func TestEphemeralLowReadsTheKernelsRange(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int
	}{
		{"32768\t60999\n", 32768},
		{"40000 65000", 40000},
		{"", linuxEphemeralLow},
		{"garbage", linuxEphemeralLow},
		{"x 60999", linuxEphemeralLow},
	} {
		require.Equal(t, tc.want, ephemeralLow(tc.text), "%q", tc.text)
	}
}

// Without room below the ephemeral range a picker asks the kernel, and
// still never returns a port twice.
func TestKernelFallbackReturnsDistinctFreePorts(t *testing.T) {
	p := &Picker{given: map[int]bool{}} // what New returns on such a machine
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		port, err := p.Port()
		require.NoError(t, err)
		require.False(t, seen[port], "port %d returned twice", port)
		seen[port] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		require.NoError(t, err, "a returned port can be bound")
		ln.Close()
	}
}
