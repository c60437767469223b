package process

import (
	"context"
	"fmt"

	"github.com/gavelhq/gavel/rep/backend"
)

var (
	_ backend.PropertyEditor = (*container)(nil)
	_ backend.LimitsReporter = (*container)(nil)
)

// SetProperty adds or replaces one property and saves state.json.
func (c *container) SetProperty(ctx context.Context, name, value string) error {
	return c.editProperties(ctx, func(p backend.Properties) { p[name] = value })
}

// RemoveProperty deletes one property (a missing one is not an error) and
// saves state.json.
func (c *container) RemoveProperty(ctx context.Context, name string) error {
	return c.editProperties(ctx, func(p backend.Properties) { delete(p, name) })
}

func (c *container) editProperties(ctx context.Context, edit func(backend.Properties)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.created || c.destroyed {
		return fmt.Errorf("edit properties of %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	edit(c.properties)
	if err := c.persistLocked(); err != nil {
		return fmt.Errorf("edit properties of %q: %w", c.handle, err)
	}
	return nil
}

// Limits returns the limits the container was created with.
func (c *container) Limits(ctx context.Context) (backend.Limits, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.created || c.destroyed {
		return backend.Limits{}, fmt.Errorf("limits of %q: %w", c.handle, backend.ErrContainerNotFound)
	}
	return c.limits, ctx.Err()
}
