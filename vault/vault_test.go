package vault_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

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
	v := vault.New(ring)
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
	n, err := vault.New(ring2).Rotate(ctx, db)
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
	fresh := vault.New(ring3)
	for _, it := range items {
		got, err := fresh.OpenString(ctx, db.Pool, it.aad, it.sealed)
		if err != nil || got != it.plain {
			t.Errorf("after rotation: %q %v", got, err)
		}
	}
	// A node that started before the rotation (old ring, file-backed) picks
	// up the new key from the file when it meets it.
	if _, err := vault.New(ring).OpenString(ctx, db.Pool, items[0].aad, items[0].sealed); err != nil {
		t.Errorf("running node after rotation: %v", err)
	}
}
