// Package vault encrypts health data at rest with envelope encryption.
//
// Each account has a data key (AES-256) stored in the data_keys table,
// wrapped by a master key that lives outside the database, behind the
// small Keyring interface a KMS could implement. Every sealed value is
// AES-256-GCM with the table, column and row id bound in as additional
// data, so a ciphertext copied to another row or column does not open.
//
// Sealed format: version (1 byte) | data key id (16 bytes) | nonce (12
// bytes) | ciphertext and tag.
package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
	"teleconsult/store"
)

const formatV1 = 1

// ErrDecrypt is returned when a sealed value does not open: wrong row,
// wrong column, tampered bytes, or a destroyed key.
var ErrDecrypt = problem.New(problem.Internal, "decrypt_failed", "stored data could not be decrypted")

// ErrKeyDestroyed is returned when the data key was destroyed (an erased
// account): the data is gone for good.
var ErrKeyDestroyed = problem.New(problem.Gone, "key_destroyed", "this data was erased")

// AAD names where a sealed value lives; it is bound into the ciphertext.
type AAD struct {
	Table, Column, RowID string
}

func (a AAD) bytes(keyID string) []byte {
	return []byte("teleconsult/v1|" + a.Table + "|" + a.Column + "|" + a.RowID + "|" + keyID)
}

// Vault seals and opens health data. It is safe for concurrent use.
//
// It caches unwrapped data keys. Several nodes share one database, and a
// key one of them destroys must stop opening on the others: see Run and
// MaxStale (cache.go).
type Vault struct {
	ring Keyring
	db   *store.DB // where destroyed keys are learnt of; nil caches nothing

	// MaxStale bounds how long a cached data key is used without checking
	// that no key was destroyed meanwhile (default DefaultMaxStale). Set
	// it before first use.
	MaxStale time.Duration

	listening     chan struct{}
	listeningOnce sync.Once

	start   time.Time    // origin of checked, on the monotonic clock
	checked atomic.Int64 // 1 + start of the last check, in ns since start; 0: never
	checkMu sync.Mutex   // one check at a time; guards polled
	polled  int64        // generation the last full check covered

	mu    sync.RWMutex      // guards the fields below
	cache map[string][]byte // data key id -> plaintext data key
	gen   int64             // highest generation of destructions heard of
}

// New returns a Vault whose data keys are wrapped by ring. db is where it
// learns of data keys destroyed by other nodes; with a nil db (a command
// that only rotates keys) it caches no key.
func New(ring Keyring, db *store.DB) *Vault {
	return &Vault{ring: ring, db: db, MaxStale: DefaultMaxStale, listening: make(chan struct{}),
		start: time.Now(), polled: -1, cache: map[string][]byte{}}
}

// NewKey creates a fresh data key, stores it wrapped and returns its id.
func (v *Vault) NewKey(ctx context.Context, q store.Q) (string, error) {
	dk := make([]byte, 32)
	if _, err := rand.Read(dk); err != nil {
		return "", err
	}
	mid, wrapped, err := v.ring.Wrap(ctx, dk)
	if err != nil {
		return "", fmt.Errorf("vault: wrap data key: %w", err)
	}
	var id string
	err = q.QueryRow(ctx, `INSERT INTO data_keys (master_key_id, wrapped) VALUES ($1, $2) RETURNING id::text`, mid, wrapped).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("vault: store data key: %w", err)
	}
	// A new key cannot have been destroyed before it existed.
	if v.db != nil {
		v.mu.Lock()
		v.cache[id] = dk
		v.mu.Unlock()
	}
	return id, nil
}

// AccountKey returns the data key id of an account, creating it on first
// use. Concurrent first uses agree on one key.
func (v *Vault) AccountKey(ctx context.Context, q store.Q, accountID string) (string, error) {
	var id *string
	err := q.QueryRow(ctx, `SELECT data_key_id::text FROM accounts WHERE id = $1`, accountID).Scan(&id)
	if err != nil {
		return "", store.NotFound(err, "account")
	}
	if id != nil {
		return *id, nil
	}
	newID, err := v.NewKey(ctx, q)
	if err != nil {
		return "", err
	}
	err = q.QueryRow(ctx, `UPDATE accounts SET data_key_id = coalesce(data_key_id, $2) WHERE id = $1 RETURNING data_key_id::text`, accountID, newID).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("vault: set account key: %w", err)
	}
	if *id != newID {
		_, _ = q.Exec(ctx, `DELETE FROM data_keys WHERE id = $1`, newID)
	}
	return *id, nil
}

// Seal encrypts plaintext with data key keyID for the place aad names.
func (v *Vault) Seal(ctx context.Context, q store.Q, keyID string, aad AAD, plaintext []byte) ([]byte, error) {
	kid, err := parseUUID(keyID)
	if err != nil {
		return nil, fmt.Errorf("vault: seal: %w", err)
	}
	dk, err := v.dataKey(ctx, q, keyID)
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(dk)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+16+gcm.NonceSize(), 1+16+gcm.NonceSize()+len(plaintext)+gcm.Overhead())
	out[0] = formatV1
	copy(out[1:17], kid[:])
	nonce := out[17 : 17+gcm.NonceSize()]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(out, nonce, plaintext, aad.bytes(keyID)), nil
}

// SealString is Seal for text.
func (v *Vault) SealString(ctx context.Context, q store.Q, keyID string, aad AAD, s string) ([]byte, error) {
	return v.Seal(ctx, q, keyID, aad, []byte(s))
}

// KeyOf returns the data key id a sealed value was sealed with.
func KeyOf(sealed []byte) (string, error) {
	if len(sealed) < 1+16 || sealed[0] != formatV1 {
		return "", ErrDecrypt
	}
	return formatUUID(sealed[1:17]), nil
}

// Open decrypts a value sealed for the place aad names.
func (v *Vault) Open(ctx context.Context, q store.Q, aad AAD, sealed []byte) ([]byte, error) {
	keyID, err := KeyOf(sealed)
	if err != nil {
		return nil, err
	}
	dk, err := v.dataKey(ctx, q, keyID)
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(dk)
	if err != nil {
		return nil, err
	}
	ns := gcm.NonceSize()
	if len(sealed) < 17+ns+gcm.Overhead() {
		return nil, ErrDecrypt
	}
	pt, err := gcm.Open(nil, sealed[17:17+ns], sealed[17+ns:], aad.bytes(keyID))
	if err != nil {
		return nil, ErrDecrypt.Wrap(err)
	}
	return pt, nil
}

// OpenString is Open for text. A nil sealed value opens to "".
func (v *Vault) OpenString(ctx context.Context, q store.Q, aad AAD, sealed []byte) (string, error) {
	if sealed == nil {
		return "", nil
	}
	b, err := v.Open(ctx, q, aad, sealed)
	return string(b), err
}

// DestroyKey makes every value sealed with keyID unreadable for good
// (crypto-erasure of an account). Run it in the erasure's transaction: at
// commit, every node is told to forget the key (see Run), and the
// generation it bumps tells nodes that missed the notification.
func (v *Vault) DestroyKey(ctx context.Context, q store.Q, keyID string) error {
	_, err := q.Exec(ctx, `WITH k AS (
			UPDATE data_keys SET wrapped = '\x'::bytea, destroyed_at = coalesce(destroyed_at, now())
			WHERE id = $1 RETURNING id),
		g AS (UPDATE vault_generation SET generation = generation + 1 WHERE EXISTS (SELECT FROM k) RETURNING generation)
		SELECT pg_notify($2, k.id::text || ' ' || g.generation) FROM k, g`, keyID, destroyedChannel)
	if err != nil {
		return fmt.Errorf("vault: destroy key: %w", err)
	}
	v.mu.Lock()
	delete(v.cache, keyID)
	v.mu.Unlock()
	return nil
}

// Rotate re-wraps every data key not wrapped by the keyring's current
// master key, in batches, while the service keeps running (servers reload
// their keyring when they meet an unknown master key id). It returns the
// number of keys re-wrapped. Keys cached by running nodes stay good:
// re-wrapping changes how a data key is stored, not the key.
func (v *Vault) Rotate(ctx context.Context, db *store.DB) (int, error) {
	cur := v.ring.CurrentID()
	total := 0
	for {
		n := 0
		err := db.Tx(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT id::text, master_key_id, wrapped FROM data_keys
				WHERE master_key_id <> $1 AND destroyed_at IS NULL LIMIT 500 FOR UPDATE SKIP LOCKED`, cur)
			if err != nil {
				return err
			}
			type row struct {
				id, mid string
				wrapped []byte
			}
			var batch []row
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.id, &r.mid, &r.wrapped); err != nil {
					return err
				}
				batch = append(batch, r)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			for _, r := range batch {
				dk, err := v.ring.Unwrap(ctx, r.mid, r.wrapped)
				if err != nil {
					return fmt.Errorf("unwrap key %s: %w", r.id, err)
				}
				mid, w, err := v.ring.Wrap(ctx, dk)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE data_keys SET master_key_id = $2, wrapped = $3 WHERE id = $1`, r.id, mid, w); err != nil {
					return err
				}
			}
			n = len(batch)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("vault: rotate: %w", err)
		}
		total += n
		if n == 0 {
			return total, nil
		}
	}
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return u, fmt.Errorf("bad key id %q", s)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("bad key id %q", s)
	}
	return u, nil
}

func formatUUID(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
