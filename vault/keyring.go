package vault

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Keyring wraps and unwraps data keys with master keys that live outside
// the database. A KMS client could implement it.
type Keyring interface {
	// CurrentID names the master key new data keys are wrapped with.
	CurrentID() string
	// Wrap encrypts a data key with the current master key.
	Wrap(ctx context.Context, dataKey []byte) (masterID string, wrapped []byte, err error)
	// Unwrap decrypts a data key wrapped by the named master key.
	Unwrap(ctx context.Context, masterID string, wrapped []byte) ([]byte, error)
}

// ErrUnknownMasterKey is returned when a data key was wrapped by a master
// key the keyring does not hold.
var ErrUnknownMasterKey = errors.New("vault: unknown master key")

// StaticKeyring holds master keys in memory; the first is current.
// The text form, one key per line (or comma separated), is "id:base64".
type StaticKeyring struct {
	mu      sync.RWMutex
	current string
	keys    map[string][]byte
	// reload, when set, is called on an unknown id to pick up keys added
	// since start-up (a rotation under way on another node).
	reload func() (*StaticKeyring, error)
}

// ParseKeyring parses the text form of a keyring.
func ParseKeyring(text string) (*StaticKeyring, error) {
	kr := &StaticKeyring{keys: map[string][]byte{}}
	for _, line := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ',' }) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, b64, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("vault: master key line must be id:base64")
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("vault: master key %q must be 32 bytes in base64", id)
		}
		if kr.current == "" {
			kr.current = id
		}
		kr.keys[id] = key
	}
	if kr.current == "" {
		return nil, fmt.Errorf("vault: no master key given")
	}
	return kr, nil
}

// NewMasterKeyLine returns a fresh random master key in the text form.
func NewMasterKeyLine() string {
	key := make([]byte, 32)
	rand.Read(key)
	sum := sha256.Sum256(key)
	return "mk" + hex.EncodeToString(sum[:4]) + ":" + base64.StdEncoding.EncodeToString(key)
}

// LoadKeyringFile reads a keyring from path. When create is true and the
// file does not exist, a new master key is generated and written (mode
// 0600): the demo set-up's "keys generated at first start".
func LoadKeyringFile(path string, create bool) (*StaticKeyring, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		line := NewMasterKeyLine() + "\n"
		if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
			return nil, err
		}
		b = []byte(line)
	} else if err != nil {
		return nil, fmt.Errorf("vault: read master key file: %w", err)
	}
	kr, err := ParseKeyring(string(b))
	if err != nil {
		return nil, err
	}
	kr.reload = func() (*StaticKeyring, error) { return LoadKeyringFile(path, false) }
	return kr, nil
}

// PrependKeyFile adds a new current master key at the top of the file at
// path, keeping the old ones for unwrapping. It returns the new key's id.
func PrependKeyFile(path string) (string, error) {
	old, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line := NewMasterKeyLine()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(line+"\n"+string(old)), 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	id, _, _ := strings.Cut(line, ":")
	return id, nil
}

// CurrentID implements Keyring.
func (k *StaticKeyring) CurrentID() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.current
}

// Wrap implements Keyring with AES-256-GCM under the current master key.
func (k *StaticKeyring) Wrap(_ context.Context, dataKey []byte) (string, []byte, error) {
	k.mu.RLock()
	id, mk := k.current, k.keys[k.current]
	k.mu.RUnlock()
	gcm, err := newGCM(mk)
	if err != nil {
		return "", nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	return id, gcm.Seal(nonce, nonce, dataKey, []byte("data-key|"+id)), nil
}

// Unwrap implements Keyring.
func (k *StaticKeyring) Unwrap(_ context.Context, masterID string, wrapped []byte) ([]byte, error) {
	k.mu.RLock()
	mk, ok := k.keys[masterID]
	k.mu.RUnlock()
	if !ok && k.reload != nil {
		if fresh, err := k.reload(); err == nil {
			k.mu.Lock()
			k.keys = fresh.keys
			k.current = fresh.current
			mk, ok = k.keys[masterID]
			k.mu.Unlock()
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownMasterKey, masterID)
	}
	gcm, err := newGCM(mk)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < gcm.NonceSize() {
		return nil, ErrDecrypt
	}
	return gcm.Open(nil, wrapped[:gcm.NonceSize()], wrapped[gcm.NonceSize():], []byte("data-key|"+masterID))
}
