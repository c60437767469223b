package process_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

// Metrics counts the container's processes (a process and the child it
// forked), their resident memory and CPU time, and the bytes of its
// directory; a container with nothing running reports no memory or pids.
func TestMetricsReadTheContainersProcessesAndDisk(t *testing.T) {
	b, err := process.New(process.Options{Root: t.TempDir(), PortRangeStart: 45100, PortRangeEnd: 45199,
		PollInterval: 10 * time.Millisecond, DisableCgroups: true})
	require.NoError(t, err)
	ctx := context.Background()
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: "m"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Destroy(ctx, "m") })
	mr := c.(backend.MetricsReporter)

	idle, err := mr.Metrics(ctx)
	require.NoError(t, err)
	require.Zero(t, idle.PidsCurrent)
	require.Zero(t, idle.MemoryUsageInBytes)

	info, err := c.Info(ctx)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(info.Path, "rootfs", "blob"), make([]byte, 256<<10), 0o644))
	// Busy for a while (CPU time), then a child and itself wait.
	_, err = c.Run(ctx, backend.ProcessSpec{Path: "sh", Args: []string{"-c",
		`i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo busy-done > done; sleep 30 & wait`}}, backend.ProcessIO{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(info.Path, "rootfs", "done"))
		return err == nil
	}, 30*time.Second, 20*time.Millisecond)
	var m backend.ContainerMetrics
	require.Eventually(t, func() bool {
		m, err = mr.Metrics(ctx)
		return err == nil && m.PidsCurrent == 2
	}, 10*time.Second, 20*time.Millisecond, "sh and its sleep: %+v", m)
	require.Greater(t, m.MemoryUsageInBytes, uint64(100<<10), "resident memory of two processes")
	require.Positive(t, m.CPUUsage, "the busy loop's CPU time")
	require.Equal(t, m.CPUUser+m.CPUSystem, m.CPUUsage)
	require.GreaterOrEqual(t, m.DiskBytesUsed, uint64(256<<10), "the 256 KiB file")
	require.Positive(t, m.Age)
}
