package integration_test

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// gavel dev --encryption-key-file seals every record it writes: an app's
// environment secret is nowhere in etcd in plain text (read raw, past the
// BBS), the desired LRP's records carry the encryption envelope, and the app
// still runs (the BBS opens what it sealed).
func TestDevEncryptionLeavesNoPlaintextSecretInEtcd(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	work := t.TempDir()
	keyFile := filepath.Join(work, "bbs.key")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDev(t, work, "enc", "--encryption-key-file", keyFile)

	const secret = "dev-db-password-7c21"
	if out, err := d.gavel("push", "vault", "--command", "exec sleep 600", "--health-check", "none", "--env", "DB_PASSWORD="+secret); err != nil {
		t.Fatalf("push: %v: %s", err, out)
	}
	if out, err := d.gavel("wait", "vault", "--running", "1", "--timeout", "60s"); err != nil {
		t.Fatalf("wait: %v: %s", err, out)
	}

	line := d.d.logLine("  etcd ")
	fields := strings.Fields(line)
	if len(fields) < 2 || !strings.HasPrefix(fields[1], "http") {
		t.Fatalf("gavel dev's banner names no etcd endpoint: %q", line)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{fields[1]}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx(t), "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	sealed := 0
	for _, kv := range resp.Kvs {
		if bytes.Contains(kv.Value, []byte(secret)) {
			t.Errorf("plaintext secret in etcd at %s", kv.Key)
		}
		if strings.Contains(string(kv.Key), "/vault") {
			if !bytes.HasPrefix(kv.Value, []byte{0, 'G', 'V', 'E'}) {
				t.Errorf("record %s of app vault is not sealed (starts %q)", kv.Key, kv.Value[:min(8, len(kv.Value))])
			}
			sealed++
		}
	}
	if sealed == 0 {
		t.Fatalf("no record of app vault among %d keys: the check above saw nothing", len(resp.Kvs))
	}
}
