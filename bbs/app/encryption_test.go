package app

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/stretchr/testify/require"
	"github.com/tedsuo/ifrit"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/bbs/encryption"
	"github.com/gavelhq/gavel/bbs/store"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdserver"
	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

const appSecret = "s3cr3t-db-password"

func secretLRP(guid string) *modelsv1.DesiredLRP {
	d := lrp(guid, 1)
	d.EnvironmentVariables = []*modelsv1.EnvironmentVariable{{Name: "DB_PASSWORD", Value: appSecret}}
	return d
}

// TestEncryptionTurnedOnSealsOldAndNewRecords: records written in plaintext
// before encryption was turned on are re-encrypted by the lock holder, new
// ones are sealed on write, and no secret is left readable in etcd.
func TestEncryptionTurnedOnSealsOldAndNewRecords(t *testing.T) {
	prefix := etcdtest.Prefix(t)
	etcd := etcdtest.Shared(t)

	// A cluster without encryption wrote a record.
	ctx, cancel := context.WithCancel(context.Background())
	plain := store.New(store.Options{Client: etcd, KeyPrefix: prefix, Logger: lager.NewLogger("plain")})
	done := make(chan struct{})
	go func() { _ = plain.Run(ctx); close(done) }()
	require.NoError(t, plain.WaitSynced(ctx))
	_, err := plain.DesireLRP(ctx, secretLRP("pg-old"))
	require.NoError(t, err)
	cancel()
	<-done

	keyFile := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(keyFile, bytes.Repeat([]byte{9}, encryption.KeySize), 0o600))
	cfg := testConfig(t, prefix, "bbs-1")
	cfg.Encryption = encryption.Config{Keys: map[string]encryption.Key{"k1": {KeyFile: keyFile}, "k0": {Passphrase: "pass-phrase-never-logged"}}, ActiveKeyLabel: "k1"}
	cfg.LogLevel = "debug"
	require.NoError(t, cfg.Validate())
	var logs syncBuffer
	b := startBBSLogging(t, cfg, &logs)
	waitActive(t, b)
	c := dial(t, b.Addr())
	_, err = c.DesireLRP(context.Background(), &bbsv1.DesireLRPRequest{DesiredLrp: secretLRP("pg-new")})
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		resp, err := etcd.Get(context.Background(), prefix, clientv3.WithPrefix())
		require.NoError(t, err)
		for _, kv := range resp.Kvs {
			if bytes.Contains(kv.Value, []byte(appSecret)) {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond, "a plaintext secret stays in etcd")
	require.Positive(t, b.store.ReencryptStats().Reencrypted())
	got, err := c.GetDesiredLRP(context.Background(), &bbsv1.GetDesiredLRPRequest{ProcessGuid: "pg-old"})
	require.NoError(t, err)
	require.Equal(t, appSecret, got.GetDesiredLrp().GetEnvironmentVariables()[0].GetValue())
	require.Contains(t, logs.String(), "store-ready")
	require.NotContains(t, logs.String(), appSecret, "a record's secret reached the logs")
	require.NotContains(t, logs.String(), "pass-phrase-never-logged", "a passphrase reached the logs")
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startBBSLogging is startBBS with the BBS's debug logs written to w.
func startBBSLogging(t *testing.T, cfg Config, w io.Writer) *BBS {
	t.Helper()
	logger := lager.NewLogger("bbs")
	logger.RegisterSink(lager.NewWriterSink(w, lager.DEBUG))
	b := New(cfg, logger)
	proc := ifrit.Background(b.Runner())
	t.Cleanup(func() {
		proc.Signal(os.Interrupt)
		<-proc.Wait()
	})
	select {
	case <-b.ready:
	case err := <-proc.Wait():
		t.Fatalf("bbs exited: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("bbs did not start")
	}
	return b
}

func TestEncryptionConfigErrorsNameTheField(t *testing.T) {
	cfg := testConfig(t, etcdtest.Prefix(t), "bbs-1")
	cfg.Encryption = encryption.Config{Keys: map[string]encryption.Key{"k1": {Passphrase: "p"}}, ActiveKeyLabel: "k2"}
	err := cfg.Validate()
	require.ErrorContains(t, err, "encryption.active_key_label")
	require.ErrorContains(t, err, `"k2"`)
}

// TestEmbeddedEtcdOverMutualTLS: the BBS runs its embedded etcd on https with
// client-certificate auth and reaches it with its own client certificate.
func TestEmbeddedEtcdOverMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "etcd-ca")
	cfg := testConfig(t, "/gavel/v1/", "bbs-tls")
	cfg.Etcd = etcdclient.Config{}
	cfg.EmbeddedEtcd = etcdserver.Config{
		DataDir: filepath.Join(t.TempDir(), "etcd"), ClientURL: "https://127.0.0.1:0", PeerURL: "http://127.0.0.1:0",
		UnsafeNoFsync: true, LogFile: filepath.Join(t.TempDir(), "etcd.log"), TLS: ca.Issue(t, "etcd"),
	}
	require.ErrorContains(t, cfg.Validate(), "etcd.tls")
	cfg.Etcd.TLS = ca.Issue(t, "bbs")
	require.NoError(t, cfg.Validate())
	b := startBBS(t, cfg)
	waitActive(t, b)
	eps := b.etcd.Endpoints()
	require.Contains(t, eps[0], "https://")
	c := dial(t, b.Addr())
	_, err := c.DesireLRP(context.Background(), &bbsv1.DesireLRPRequest{DesiredLrp: lrp("pg-tls", 1)})
	require.NoError(t, err)
	_, err = etcdclient.Dial(context.Background(), etcdclient.Config{Endpoints: eps, TLS: tlsconfig.Files{CAFile: ca.File}, DialTimeout: config.Duration(time.Second)})
	require.Error(t, err, "a client without a certificate reached the embedded etcd")
}
