package encryption_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gavelhq/gavel/bbs/encryption"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, encryption.KeySize) }

func TestSealOpenRoundTripAndLabel(t *testing.T) {
	kr, err := encryption.New(map[string][]byte{"k1": key(1)}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("env SECRET=hunter2")
	sealed, err := kr.Seal([]byte("/gavel/v1/task/a"), secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("sealed value contains the plaintext")
	}
	if l, ok, err := encryption.Label(sealed); err != nil || !ok || l != "k1" {
		t.Fatalf("Label = %q %v %v, want k1", l, ok, err)
	}
	pt, label, err := kr.Open([]byte("/gavel/v1/task/a"), sealed)
	if err != nil || label != "k1" || !bytes.Equal(pt, secret) {
		t.Fatalf("Open = %q %q %v", pt, label, err)
	}
	// Bound to its etcd key: the same value under another key does not open.
	if _, _, err := kr.Open([]byte("/gavel/v1/task/b"), sealed); err == nil {
		t.Fatal("a sealed value opened under another record's key")
	}
	// Two seals of one value differ (random nonce).
	again, _ := kr.Seal([]byte("/gavel/v1/task/a"), secret)
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals are identical")
	}
}

func TestPlaintextRecordsStayReadable(t *testing.T) {
	kr, _ := encryption.New(map[string][]byte{"k1": key(1)}, "k1")
	plain := []byte{0x0a, 0x03, 'a', 'b', 'c'} // a protobuf record
	for _, k := range []*encryption.Keyring{kr, nil} {
		pt, label, err := k.Open(nil, plain)
		if err != nil || label != "" || !bytes.Equal(pt, plain) {
			t.Fatalf("Open(plaintext) = %q %q %v", pt, label, err)
		}
	}
	// A nil keyring (encryption off) writes plaintext.
	var off *encryption.Keyring
	if out, _ := off.Seal(nil, plain); !bytes.Equal(out, plain) {
		t.Fatal("nil keyring changed the value")
	}
}

func TestMissingKeyIsAnErrorNamingTheLabel(t *testing.T) {
	old, _ := encryption.New(map[string][]byte{"old-key": key(1)}, "old-key")
	sealed, _ := old.Seal(nil, []byte("x"))
	kr, _ := encryption.New(map[string][]byte{"new-key": key(2)}, "new-key")
	_, label, err := kr.Open(nil, sealed)
	if !errors.Is(err, encryption.ErrMissingKey) || !strings.Contains(err.Error(), `"old-key"`) || label != "old-key" {
		t.Fatalf("err = %v label %q, want ErrMissingKey naming old-key", err, label)
	}
	var off *encryption.Keyring
	if _, _, err := off.Open(nil, sealed); !errors.Is(err, encryption.ErrMissingKey) {
		t.Fatalf("nil keyring: err = %v", err)
	}
	// Same label, wrong key bytes: authentication fails, naming the label.
	wrong, _ := encryption.New(map[string][]byte{"old-key": key(3)}, "")
	if _, _, err := wrong.Open(nil, sealed); err == nil || !strings.Contains(err.Error(), "old-key") {
		t.Fatalf("wrong key: err = %v", err)
	}
}

func TestConfigValidateAndLoad(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "k")
	if err := os.WriteFile(kf, key(7), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	_ = os.WriteFile(short, []byte("abc"), 0o600)
	cases := []struct {
		name string
		cfg  encryption.Config
		want string
	}{
		{"active not a key", encryption.Config{Keys: map[string]encryption.Key{"a": {Passphrase: "p"}}, ActiveKeyLabel: "b"}, "encryption.active_key_label"},
		{"both sources", encryption.Config{Keys: map[string]encryption.Key{"a": {Passphrase: "p", KeyFile: kf}}}, "exactly one of passphrase and key_file"},
		{"no source", encryption.Config{Keys: map[string]encryption.Key{"a": {}}}, "exactly one"},
		{"bad label", encryption.Config{Keys: map[string]encryption.Key{"a b": {Passphrase: "p"}}}, "printable"},
		{"short key file", encryption.Config{Keys: map[string]encryption.Key{"a": {KeyFile: short}}, ActiveKeyLabel: "a"}, "exactly 32 bytes"},
	}
	for _, c := range cases {
		if _, err := encryption.Load(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	kr, err := encryption.Load(encryption.Config{Keys: map[string]encryption.Key{"file": {KeyFile: kf}, "pass": {Passphrase: "correct horse"}}, ActiveKeyLabel: "pass"})
	if err != nil || kr.Active() != "pass" {
		t.Fatalf("Load = %v %v", kr, err)
	}
	// A passphrase key is the same on every replica (fixed salt per label).
	again, _ := encryption.Load(encryption.Config{Keys: map[string]encryption.Key{"pass": {Passphrase: "correct horse"}}})
	sealed, _ := kr.Seal(nil, []byte("v"))
	if pt, _, err := again.Open(nil, sealed); err != nil || string(pt) != "v" {
		t.Fatalf("a second derivation does not open: %v", err)
	}
	if off, err := encryption.Load(encryption.Config{}); err != nil || off != nil {
		t.Fatalf("empty config = %v %v, want nil keyring", off, err)
	}
	if s := (encryption.Key{Passphrase: "hunter2"}).String(); strings.Contains(s, "hunter2") {
		t.Fatalf("Key.String leaks the passphrase: %s", s)
	}
}

func BenchmarkOpen(b *testing.B) {
	kr, _ := encryption.New(map[string][]byte{"k1": key(1)}, "k1")
	sealed, _ := kr.Seal([]byte("/gavel/v1/actual/pg/0/ordinary"), bytes.Repeat([]byte("x"), 300))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, err := kr.Open([]byte("/gavel/v1/actual/pg/0/ordinary"), sealed); err != nil {
			b.Fatal(err)
		}
	}
}
