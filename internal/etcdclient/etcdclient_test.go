package etcdclient_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/internal/freeport"
)

func TestDial(t *testing.T) {
	srv := etcdtest.SharedServer(t)
	// A bound against a hang, not a speed target: an 8 MiB put on a loaded
	// CI machine can take several seconds.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	client, err := etcdclient.Dial(ctx, etcdclient.Config{Endpoints: srv.Endpoints()})
	require.NoError(t, err)
	defer client.Close()

	// 8 MiB values exceed gRPC's 4 MiB default receive size on the way back.
	prefix := etcdtest.Prefix(t)
	big := make([]byte, 8<<20)
	_, err = client.Put(ctx, prefix+"big", string(big))
	require.NoError(t, err)
	resp, err := client.Get(ctx, prefix+"big")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	assert.Len(t, resp.Kvs[0].Value, 8<<20)
}

func TestDialFailsClearly(t *testing.T) {
	// A port with nothing listening.
	deadAddr, err := freeport.New().Addr()
	require.NoError(t, err)
	dead := "http://" + deadAddr

	t.Run("nothing listening", func(t *testing.T) {
		_, err := etcdclient.Dial(context.Background(), etcdclient.Config{
			Endpoints: []string{dead}, DialTimeout: config.Duration(500 * time.Millisecond),
		})
		require.Error(t, err)
		assert.Contains(t, err.Error(), dead)
	})
	t.Run("no endpoints", func(t *testing.T) {
		_, err := etcdclient.Dial(context.Background(), etcdclient.Config{})
		assert.ErrorContains(t, err, "no endpoints")
	})
	t.Run("bad TLS files", func(t *testing.T) {
		cfg := etcdclient.Config{Endpoints: []string{dead}}
		cfg.TLS.CAFile = "/nonexistent/ca.pem"
		_, err := etcdclient.Dial(context.Background(), cfg)
		assert.ErrorContains(t, err, "ca_file")
	})
}

// A ctx deadline governs the whole dial, authentication included: a
// DialTimeout too short to authenticate does not fail a dial whose ctx
// allows the time (with a user and password the dial includes a bcrypt
// check, which took more than the 5 s default on a loaded CI machine).
func TestDialHonoursTheContextDeadline(t *testing.T) {
	srv := etcdtest.StartWith(t, etcdtest.Options{})
	admin := etcdtest.Client(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := admin.UserAdd(ctx, "root", "rootpw")
	require.NoError(t, err)
	_, err = admin.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = admin.AuthEnable(ctx)
	require.NoError(t, err)

	client, err := etcdclient.Dial(ctx, etcdclient.Config{Endpoints: srv.Endpoints(), Username: "root", Password: "rootpw",
		DialTimeout: config.Duration(time.Nanosecond)})
	require.NoError(t, err)
	require.NoError(t, client.Close())
}
