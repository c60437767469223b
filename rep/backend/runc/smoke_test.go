package runc

import (
	"context"
	"testing"

	"github.com/gavelhq/gavel/rep/backend"
)

func TestSmoke(t *testing.T) {
	e := newEnv(t)
	b := e.newBackend(t)
	ctx := context.Background()
	c, err := b.Create(ctx, backend.ContainerSpec{Handle: "smoke-" + e.suffix, Image: "preloaded:busybox"})
	if err != nil {
		t.Fatal(err)
	}
	status, out, errOut := run(t, c, sh("hostname; echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); id; ip addr"))
	t.Logf("status %d\n%s\n%s", status, out, errOut)
}
