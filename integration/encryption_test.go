package integration_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/bbs/encryption"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// TestEncryptionLeavesNoPlaintextSecretInEtcd runs an app with an env secret
// on a cluster whose BBS seals records, then reads etcd raw: the secret is
// nowhere, and every BBS record is sealed under the configured label.
func TestEncryptionLeavesNoPlaintextSecretInEtcd(t *testing.T) {
	t.Parallel()
	const secret = "it-db-password-4f9a"
	c := start(t, options{encryptionKey: bytes.Repeat([]byte{0x5a}, encryption.KeySize)})
	c.desire(appLRP("sealed", 2, func(d *modelsv1.DesiredLRP) {
		d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "DB_PASSWORD", Value: secret}}
	}))
	c.waitRunning("sealed", 2, placeTimeout)

	resp, err := c.etcd.Get(ctx(t), "/gavel/v1/", clientv3.WithPrefix())
	require.NoError(t, err)
	sealed := 0
	for _, kv := range resp.Kvs {
		require.False(t, bytes.Contains(kv.Value, []byte(secret)), "plaintext secret at %s", kv.Key)
		if label, ok, _ := encryption.Label(kv.Value); ok {
			require.Equal(t, "it", label, string(kv.Key))
			sealed++
		}
	}
	require.GreaterOrEqual(t, sealed, 4, "schedule, run and two instance rows are sealed")
}
