package encryption

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/crypto/scrypt"
)

// KeySize is the size of an AES-256 key, in bytes.
const KeySize = 32

// MaxLabelLen bounds a key label, in bytes (the envelope stores it in one byte).
const MaxLabelLen = 64

// saltPrefix and the label make the fixed scrypt salt of a passphrase key:
// the same passphrase under the same label always gives the same key, on
// every replica, and different labels give different keys.
const saltPrefix = "gavel-bbs-encryption-v1:"

// scrypt cost parameters for passphrase keys (derived once at startup).
const (
	scryptN = 1 << 15
	scryptR = 8
	scryptP = 1
)

// magic starts every envelope. A protobuf record never starts with 0x00 (a
// field number of zero is invalid), so a plaintext record is never mistaken
// for an envelope.
var magic = []byte{0x00, 'G', 'V', 'E'}

// version is the envelope format: magic, version, label length, label,
// nonce, AES-GCM ciphertext with its tag.
const version = 1

// ErrMissingKey is wrapped by errors opening a record whose key label is not configured.
var ErrMissingKey = errors.New("encryption key not configured")

// Key is where one labelled key comes from: exactly one of a passphrase
// (stretched with scrypt) or a file holding 32 raw bytes.
type Key struct {
	// Passphrase is stretched into the key with scrypt and a salt fixed by the label.
	Passphrase string `json:"passphrase,omitempty"`
	// KeyFile is a file of exactly 32 bytes, the AES-256 key itself.
	KeyFile string `json:"key_file,omitempty"`
}

// String never shows the passphrase, so a logged config leaks no secret.
func (k Key) String() string {
	if k.KeyFile != "" {
		return "key_file:" + k.KeyFile
	}
	if k.Passphrase != "" {
		return "passphrase:<redacted>"
	}
	return "<empty>"
}

// Config is the BBS config's encryption section.
type Config struct {
	// Keys maps a label to its key. Records sealed under any of them can be read.
	Keys map[string]Key `json:"keys,omitempty"`
	// ActiveKeyLabel is the key new records are sealed under; empty writes
	// plaintext (encryption off) while existing sealed records stay readable.
	ActiveKeyLabel string `json:"active_key_label,omitempty"`
}

// Enabled says whether any key is configured.
func (c Config) Enabled() bool { return len(c.Keys) > 0 }

// Validate checks the section without reading key files; errors name the field.
func (c Config) Validate() error {
	var errs []error
	for _, label := range sortedLabels(c.Keys) {
		k := c.Keys[label]
		if err := checkLabel(label); err != nil {
			errs = append(errs, fmt.Errorf("encryption.keys[%q]: %w", label, err))
		}
		if (k.Passphrase == "") == (k.KeyFile == "") {
			errs = append(errs, fmt.Errorf("encryption.keys[%q]: exactly one of passphrase and key_file is required", label))
		}
	}
	if c.ActiveKeyLabel != "" {
		if _, ok := c.Keys[c.ActiveKeyLabel]; !ok {
			errs = append(errs, fmt.Errorf("encryption.active_key_label: %q is not a label in encryption.keys (have %s)", c.ActiveKeyLabel, strings.Join(sortedLabels(c.Keys), ", ")))
		}
	}
	return errors.Join(errs...)
}

func checkLabel(label string) error {
	if label == "" || len(label) > MaxLabelLen {
		return fmt.Errorf("a label must be 1 to %d bytes (got %d)", MaxLabelLen, len(label))
	}
	for _, r := range label {
		if r <= ' ' || r > '~' {
			return errors.New("a label must be printable ASCII without spaces")
		}
	}
	return nil
}

func sortedLabels(m map[string]Key) []string {
	out := make([]string, 0, len(m))
	for l := range m {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// Keyring seals with the active key and opens with any configured key. A nil
// *Keyring is encryption off: it seals nothing and opens only plaintext.
// Safe for concurrent use.
type Keyring struct {
	aeads  map[string]cipher.AEAD
	active string
}

// Load derives or reads every key of cfg (scrypt runs here, once) and returns
// the keyring; nil when cfg configures no keys.
func Load(cfg Config) (*Keyring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, nil
	}
	raw := make(map[string][]byte, len(cfg.Keys))
	for _, label := range sortedLabels(cfg.Keys) {
		k := cfg.Keys[label]
		var key []byte
		var err error
		if k.KeyFile != "" {
			key, err = readKeyFile(k.KeyFile)
		} else {
			key, err = DeriveKey(label, k.Passphrase)
		}
		if err != nil {
			return nil, fmt.Errorf("encryption.keys[%q]: %w", label, err)
		}
		raw[label] = key
	}
	return New(raw, cfg.ActiveKeyLabel)
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	if len(b) != KeySize {
		return nil, fmt.Errorf("key_file %s: must hold exactly %d bytes (got %d)", path, KeySize, len(b))
	}
	return b, nil
}

// DeriveKey stretches a passphrase into a 32-byte key with scrypt and the
// label's fixed salt.
func DeriveKey(label, passphrase string) ([]byte, error) {
	if passphrase == "" {
		return nil, errors.New("passphrase: must not be empty")
	}
	k, err := scrypt.Key([]byte(passphrase), []byte(saltPrefix+label), scryptN, scryptR, scryptP, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	return k, nil
}

// New builds a keyring from raw 32-byte keys by label; active, when not
// empty, must be one of them.
func New(keys map[string][]byte, active string) (*Keyring, error) {
	kr := &Keyring{aeads: make(map[string]cipher.AEAD, len(keys)), active: active}
	for label, key := range keys {
		if err := checkLabel(label); err != nil {
			return nil, fmt.Errorf("key %q: %w", label, err)
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("key %q: must be %d bytes (got %d)", label, KeySize, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", label, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", label, err)
		}
		kr.aeads[label] = aead
	}
	if _, ok := kr.aeads[active]; active != "" && !ok {
		return nil, fmt.Errorf("active key label %q is not a configured key", active)
	}
	return kr, nil
}

// Active is the label new records are sealed under ("" when writes are plaintext).
func (k *Keyring) Active() string {
	if k == nil {
		return ""
	}
	return k.active
}

// Seal returns plaintext sealed under the active key, bound to aad (the
// record's etcd key, so a sealed value cannot be moved to another record);
// with no active key it returns plaintext itself.
func (k *Keyring) Seal(aad, plaintext []byte) ([]byte, error) {
	if k == nil || k.active == "" {
		return plaintext, nil
	}
	aead := k.aeads[k.active]
	hdrLen := len(magic) + 2 + len(k.active)
	out := make([]byte, hdrLen+aead.NonceSize(), hdrLen+aead.NonceSize()+len(plaintext)+aead.Overhead())
	n := copy(out, magic)
	out[n] = version
	out[n+1] = byte(len(k.active))
	copy(out[n+2:], k.active)
	nonce := out[hdrLen:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("read a nonce: %w", err)
	}
	return aead.Seal(out, nonce, plaintext, aad), nil
}

// Open returns the plaintext of data and the label it was sealed under (""
// for a plaintext record). A record sealed under a label that is not
// configured is an error wrapping ErrMissingKey and naming the label.
func (k *Keyring) Open(aad, data []byte) ([]byte, string, error) {
	label, ok, err := Label(data)
	if err != nil || !ok {
		return data, "", err
	}
	var aead cipher.AEAD
	if k != nil {
		aead = k.aeads[label]
	}
	if aead == nil {
		return nil, label, fmt.Errorf("%w: record is sealed under key label %q", ErrMissingKey, label)
	}
	hdrLen := len(magic) + 2 + len(label)
	if len(data) < hdrLen+aead.NonceSize()+aead.Overhead() {
		return nil, label, fmt.Errorf("sealed record under key label %q is truncated", label)
	}
	nonce := data[hdrLen : hdrLen+aead.NonceSize()]
	// The header needs no authentication of its own: another label selects
	// another key and another version is refused, so either fails to open.
	pt, err := aead.Open(nil, nonce, data[hdrLen+aead.NonceSize():], aad)
	if err != nil {
		return nil, label, fmt.Errorf("open record under key label %q: authentication failed (wrong key or tampered record)", label)
	}
	return pt, label, nil
}

// Label reads the key label of a sealed value without decrypting it; ok is
// false for a plaintext value.
func Label(data []byte) (label string, ok bool, err error) {
	if !bytes.HasPrefix(data, magic) {
		return "", false, nil
	}
	n := len(magic)
	if len(data) < n+2 {
		return "", true, errors.New("sealed record: truncated header")
	}
	if data[n] != version {
		return "", true, fmt.Errorf("sealed record: unknown envelope version %d", data[n])
	}
	l := int(data[n+1])
	if len(data) < n+2+l {
		return "", true, errors.New("sealed record: truncated label")
	}
	return string(data[n+2 : n+2+l]), true, nil
}
