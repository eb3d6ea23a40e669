package vault_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"teleconsult/auth"
	"teleconsult/store"
	"teleconsult/store/storetest"
	"teleconsult/vault"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func newAccount(t *testing.T, db *store.DB, email string) string {
	a, err := auth.NewService(db, auth.DefaultConfig, nil).Signup(context.Background(), email, "a long enough secret", "Test", "fr")
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func TestSealOpen(t *testing.T) {
	db := storetest.New(t)
	v := vault.NewForTest(t, db)
	ctx := context.Background()
	acct := newAccount(t, db, "a@example.test")
	key, err := v.AccountKey(ctx, db.Pool, acct)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := v.AccountKey(ctx, db.Pool, acct); again != key {
		t.Fatalf("account key changed: %s then %s", key, again)
	}
	here := vault.AAD{Table: "appointments", Column: "reason", RowID: "row-1"}
	secret := []byte("douleur thoracique depuis trois jours")
	sealed, err := v.Seal(ctx, db.Pool, key, here, secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) || bytes.Contains(sealed, []byte("thoracique")) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := v.Open(ctx, db.Pool, here, sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %q %v", got, err)
	}
	// Moved to another row, another column or another table: refused.
	for _, elsewhere := range []vault.AAD{
		{Table: "appointments", Column: "reason", RowID: "row-2"},
		{Table: "appointments", Column: "notes", RowID: "row-1"},
		{Table: "prescriptions", Column: "reason", RowID: "row-1"},
	} {
		if _, err := v.Open(ctx, db.Pool, elsewhere, sealed); !errors.Is(err, vault.ErrDecrypt) {
			t.Errorf("opened at %+v: %v", elsewhere, err)
		}
	}
	// A flipped byte: refused.
	bad := bytes.Clone(sealed)
	bad[len(bad)-1] ^= 1
	if _, err := v.Open(ctx, db.Pool, here, bad); !errors.Is(err, vault.ErrDecrypt) {
		t.Errorf("tampered value opened: %v", err)
	}
	// A fresh Vault with the same master key (another node, a restart)
	// reads it; one with another master key does not.
	if _, err := v.Open(ctx, db.Pool, here, sealed); err != nil {
		t.Fatal(err)
	}
	other := vault.NewForTest(t, db)
	if _, err := other.Open(ctx, db.Pool, here, sealed); err == nil {
		t.Error("opened with another master key")
	}
	// Destroyed key: gone for good.
	if err := v.DestroyKey(ctx, db.Pool, key); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Open(ctx, db.Pool, here, sealed); !errors.Is(err, vault.ErrKeyDestroyed) {
		t.Errorf("open after destroy: %v", err)
	}
}

func TestAccountKeyConcurrentFirstUse(t *testing.T) {
	db := storetest.New(t)
	v := vault.NewForTest(t, db)
	acct := newAccount(t, db, "b@example.test")
	var wg sync.WaitGroup
	keys := make([]string, 8)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := v.AccountKey(context.Background(), db.Pool, acct)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for _, k := range keys {
		if k != keys[0] {
			t.Fatalf("concurrent first uses made different keys: %v", keys)
		}
	}
}

func TestRotateKeepsEverythingReadable(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "master.key")
	ring, err := vault.LoadKeyringFile(file, true)
	if err != nil {
		t.Fatal(err)
	}
	v := vault.New(ring, db)
	type item struct {
		aad    vault.AAD
		sealed []byte
		plain  string
	}
	var items []item
	for i, email := range []string{"c1@example.test", "c2@example.test", "c3@example.test"} {
		acct := newAccount(t, db, email)
		key, err := v.AccountKey(ctx, db.Pool, acct)
		if err != nil {
			t.Fatal(err)
		}
		aad := vault.AAD{Table: "t", Column: "c", RowID: email}
		plain := "note " + string(rune('A'+i))
		s, err := v.SealString(ctx, db.Pool, key, aad, plain)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, item{aad, s, plain})
	}
	oldID := ring.CurrentID()
	newID, err := vault.PrependKeyFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ring2, err := vault.LoadKeyringFile(file, false)
	if err != nil || ring2.CurrentID() != newID {
		t.Fatalf("new keyring: %v %s", err, ring2.CurrentID())
	}
	n, err := vault.New(ring2, db).Rotate(ctx, db)
	if err != nil || n != 3 {
		t.Fatalf("rotate: %d %v", n, err)
	}
	var left int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM data_keys WHERE master_key_id = $1`, oldID).Scan(&left)
	if left != 0 {
		t.Errorf("%d data keys still wrapped by the old master key", left)
	}
	// A node started after the rotation, with only the new key, reads all.
	onlyNew, _ := os.ReadFile(file)
	firstLine, _, _ := bytes.Cut(onlyNew, []byte("\n"))
	ring3, err := vault.ParseKeyring(string(firstLine))
	if err != nil {
		t.Fatal(err)
	}
	fresh := vault.New(ring3, db)
	for _, it := range items {
		got, err := fresh.OpenString(ctx, db.Pool, it.aad, it.sealed)
		if err != nil || got != it.plain {
			t.Errorf("after rotation: %q %v", got, err)
		}
	}
	// A node that started before the rotation (old ring, file-backed) picks
	// up the new key from the file when it meets it.
	if _, err := vault.New(ring, db).OpenString(ctx, db.Pool, items[0].aad, items[0].sealed); err != nil {
		t.Errorf("running node after rotation: %v", err)
	}
}

// node is a second `teleconsult serve` process: its own pool on the same
// database, its own Vault with the same master keys.
type node struct {
	db      *store.DB
	vault   *vault.Vault
	queries atomic.Int64 // statements its pool sent
}

func (n *node) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	n.queries.Add(1)
	return ctx
}

func (n *node) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func newNode(t *testing.T, db *store.DB, ring vault.Keyring, maxStale time.Duration, listen bool) *node {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(db.Pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	n := &node{}
	cfg.ConnConfig.Tracer = n
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.db = &store.DB{Pool: pool}
	n.vault = vault.New(ring, n.db)
	n.vault.MaxStale = maxStale
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; pool.Close() })
	if !listen {
		close(done)
		return n
	}
	go func() { defer close(done); n.vault.Run(ctx) }()
	select {
	case <-n.vault.Listening():
	case <-time.After(10 * time.Second):
		t.Fatal("the vault does not listen")
	}
	return n
}

// sealedNote seals a note under a fresh account's data key on v.
func sealedNote(t *testing.T, db *store.DB, v *vault.Vault, email string) (key string, aad vault.AAD, sealed []byte) {
	t.Helper()
	ctx := context.Background()
	key, err := v.AccountKey(ctx, db.Pool, newAccount(t, db, email))
	if err != nil {
		t.Fatal(err)
	}
	aad = vault.AAD{Table: "appointments", Column: "reason", RowID: email}
	if sealed, err = v.SealString(ctx, db.Pool, key, aad, "insomnie"); err != nil {
		t.Fatal(err)
	}
	return key, aad, sealed
}

// destroyWithin destroys key on a (in a transaction, as an erasure does)
// and returns how long b took to stop opening sealed, failing after limit.
func destroyWithin(t *testing.T, db *store.DB, a *vault.Vault, b *node, key string, aad vault.AAD, sealed []byte, limit time.Duration) time.Duration {
	t.Helper()
	ctx := context.Background()
	if got, err := b.vault.OpenString(ctx, b.db.Pool, aad, sealed); err != nil || got != "insomnie" {
		t.Fatalf("node B before the erasure: %q %v", got, err)
	}
	err := db.Tx(ctx, func(tx pgx.Tx) error { return a.DestroyKey(ctx, tx, key) })
	if err != nil {
		t.Fatal(err)
	}
	erased := time.Now()
	for {
		_, err := b.vault.OpenString(ctx, b.db.Pool, aad, sealed)
		if errors.Is(err, vault.ErrKeyDestroyed) {
			return time.Since(erased)
		}
		if err != nil {
			t.Fatalf("node B after the erasure: %v", err)
		}
		if time.Since(erased) > limit {
			t.Fatalf("node B still opens data sealed with a key destroyed on node A %v ago", limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKeyDestroyedOnOneNodeStopsOpeningOnAnother(t *testing.T) {
	db := storetest.New(t)
	ring, err := vault.ParseKeyring(vault.NewMasterKeyLine())
	if err != nil {
		t.Fatal(err)
	}
	a := vault.New(ring, db)

	t.Run("notified", func(t *testing.T) {
		// B would trust its cache for an hour: only the notification can
		// make it forget the key.
		b := newNode(t, db, ring, time.Hour, true)
		key, aad, sealed := sealedNote(t, db, a, "n1@example.test")
		took := destroyWithin(t, db, a, b, key, aad, sealed, 5*time.Second)
		t.Logf("node B refused %v after the erasure committed on node A", took)
	})

	t.Run("notification missed", func(t *testing.T) {
		// B does not listen at all: the generation check alone bounds it.
		const maxStale = 300 * time.Millisecond
		b := newNode(t, db, ring, maxStale, false)
		key, aad, sealed := sealedNote(t, db, a, "n2@example.test")
		took := destroyWithin(t, db, a, b, key, aad, sealed, maxStale+time.Second)
		t.Logf("node B refused %v after the erasure committed on node A (max stale %v)", took, maxStale)
	})

	t.Run("steady state sends no query", func(t *testing.T) {
		b := newNode(t, db, ring, time.Hour, true)
		ctx := context.Background()
		_, aad, sealed := sealedNote(t, db, a, "n3@example.test")
		if _, err := b.vault.Open(ctx, b.db.Pool, aad, sealed); err != nil {
			t.Fatal(err)
		}
		before := b.queries.Load()
		for range 1000 {
			if _, err := b.vault.Open(ctx, b.db.Pool, aad, sealed); err != nil {
				t.Fatal(err)
			}
		}
		if n := b.queries.Load() - before; n != 0 {
			t.Fatalf("1000 opens with a warm cache sent %d queries", n)
		}
	})

	t.Run("rolled back erasure keeps the key", func(t *testing.T) {
		b := newNode(t, db, ring, 50*time.Millisecond, true)
		ctx := context.Background()
		key, aad, sealed := sealedNote(t, db, a, "n4@example.test")
		undo := errors.New("undo")
		err := db.Tx(ctx, func(tx pgx.Tx) error {
			if err := a.DestroyKey(ctx, tx, key); err != nil {
				return err
			}
			return undo
		})
		if !errors.Is(err, undo) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // several checks on B
		for _, v := range []*vault.Vault{a, b.vault} {
			if got, err := v.OpenString(ctx, db.Pool, aad, sealed); err != nil || got != "insomnie" {
				t.Fatalf("after a rolled back erasure: %q %v", got, err)
			}
		}
	})
}
