package process_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/process"
)

func TestPropertiesCanBeEditedAndSurviveARestart(t *testing.T) {
	root := t.TempDir()
	opts := process.Options{Root: root, PortRangeStart: 45000, PortRangeEnd: 45099, PollInterval: 10 * time.Millisecond, DisableCgroups: true}
	b, err := process.New(opts)
	require.NoError(t, err)
	ctx := context.Background()
	limits := backend.Limits{MemoryInBytes: 1 << 20, CPUWeight: 512}
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: "h", Properties: backend.Properties{"a": "1", "b": "2"}, Limits: limits})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Destroy(ctx, "h") })

	pe := c.(backend.PropertyEditor)
	require.NoError(t, pe.SetProperty(ctx, "a", "changed"))
	require.NoError(t, pe.SetProperty(ctx, "c", "3"))
	require.NoError(t, pe.RemoveProperty(ctx, "b"))
	require.NoError(t, pe.RemoveProperty(ctx, "missing"))
	want := backend.Properties{"a": "changed", "c": "3"}
	props, err := c.Properties(ctx)
	require.NoError(t, err)
	require.Equal(t, want, props)
	listed, err := b.Containers(ctx, backend.Properties{"c": "3"})
	require.NoError(t, err)
	require.Len(t, listed, 1)
	got, err := c.(backend.LimitsReporter).Limits(ctx)
	require.NoError(t, err)
	require.Equal(t, limits, got)

	b.Detach()
	b2, err := process.New(opts)
	require.NoError(t, err)
	c2, err := b2.Lookup(ctx, "h")
	require.NoError(t, err)
	props, err = c2.Properties(ctx)
	require.NoError(t, err)
	require.Equal(t, want, props, "edits are saved in state.json")
	require.NoError(t, b2.Destroy(ctx, "h"))
	require.ErrorIs(t, c2.(backend.PropertyEditor).SetProperty(ctx, "x", "y"), backend.ErrContainerNotFound)
}
