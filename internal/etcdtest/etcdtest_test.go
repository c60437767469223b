package etcdtest_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

func TestSharedClientsSeeTheSameServer(t *testing.T) {
	a, b := etcdtest.Shared(t), etcdtest.Shared(t)
	prefix := etcdtest.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err := a.Put(ctx, prefix+"k", "v")
	require.NoError(t, err)
	resp, err := b.Get(ctx, prefix+"k")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	assert.Equal(t, "v", string(resp.Kvs[0].Value))
}

func TestPrefixIsUniqueAndSlashed(t *testing.T) {
	p1, p2 := etcdtest.Prefix(t), etcdtest.Prefix(t)
	assert.NotEqual(t, p1, p2)
	for _, p := range []string{p1, p2} {
		assert.True(t, strings.HasPrefix(p, "/test/TestPrefixIsUniqueAndSlashed-"), p)
		assert.True(t, strings.HasSuffix(p, "/"), p)
	}
}

func TestStartGivesAPrivateServer(t *testing.T) {
	private := etcdtest.Start(t)
	shared := etcdtest.Shared(t)
	prefix := etcdtest.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err := private.Put(ctx, prefix+"only-here", "1")
	require.NoError(t, err)
	resp, err := shared.Get(ctx, prefix+"only-here")
	require.NoError(t, err)
	assert.Empty(t, resp.Kvs, "a private server must not share data with the shared one")
	assert.NotEqual(t, private.Endpoints(), shared.Endpoints())
}
