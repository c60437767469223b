package devcluster

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// A named cluster's ports are distinct, free, below the ephemeral range,
// the same for the same name while they stay free, and a taken one is
// passed over.
func TestNamedPortsAreFreeAndBelowTheEphemeralRange(t *testing.T) {
	ports, err := NamedPorts("ports-test", 4, "32768\t60999\n")
	require.NoError(t, err)
	require.Len(t, ports, 4)
	seen := map[int]bool{}
	for _, p := range ports {
		require.GreaterOrEqual(t, p, namedPortBase)
		require.Less(t, p, namedPortBase+namedPortSpan)
		require.False(t, seen[p], "port %d given twice", p)
		seen[p] = true
	}
	again, err := NamedPorts("ports-test", 4, "")
	require.NoError(t, err)
	require.Equal(t, ports, again, "the same name probes the same ports")

	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])))
	require.NoError(t, err)
	defer l.Close()
	taken, err := NamedPorts("ports-test", 4, "")
	require.NoError(t, err)
	require.NotContains(t, taken, ports[0], "a port in use is passed over")
	require.Equal(t, ports[1:], taken[:3])
}

// An ephemeral range that starts inside the named range shrinks it; one
// that leaves too few ports is refused, saying why.
func TestNamedPortsStayBelowALowEphemeralRange(t *testing.T) {
	low := namedPortBase + 6
	ports, err := NamedPorts("low", 4, strconv.Itoa(low)+" 60999")
	require.NoError(t, err)
	for _, p := range ports {
		require.Less(t, p, low)
	}
	_, err = NamedPorts("low", 4, strconv.Itoa(namedPortBase+3)+" 60999")
	require.EqualError(t, err, "named ports: the ephemeral port range starts at 18003, leaving fewer than 4 ports from 18000")
}
