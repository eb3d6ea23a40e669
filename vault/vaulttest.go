package vault

import (
	"testing"

	"teleconsult/store"
)

// NewForTest returns a Vault with a fresh random master key, for tests.
func NewForTest(t testing.TB, db *store.DB) *Vault {
	t.Helper()
	kr, err := ParseKeyring(NewMasterKeyLine())
	if err != nil {
		t.Fatal(err)
	}
	return New(kr, db)
}
