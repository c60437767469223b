package runc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Teardown removes what the backend keeps on the host for all its
// containers: its bridge and its cgroup parent in every hierarchy. Call it
// once every container is destroyed, when the cell goes away for good (a
// gavel dev cluster stopping, a test ending); a later New creates them again.
// A cgroup parent that still holds containers is left, with an error.
func (b *Backend) Teardown(ctx context.Context) error {
	errs := []error{b.net.removeBridge(ctx)}
	for _, d := range b.cgroups.parentDirs() {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
