package store_test

import (
	"context"
	"errors"
	"testing"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestMigrateFreshDatabase(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	v, err := db.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v != store.LatestVersion() {
		t.Fatalf("fresh database at version %d, binary knows %d", v, store.LatestVersion())
	}
	// Running again changes nothing and fails nothing.
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	var want int
	db.Pool.QueryRow(ctx, `SELECT count(DISTINCT version) FROM schema_migrations`).Scan(&want)
	if n != want {
		t.Errorf("migrations applied twice: %d rows for %d versions", n, want)
	}
}

func TestMigrateEmptyDatabase(t *testing.T) {
	// A database with nothing in it at all, not even the version table.
	db := storetest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public;`); err != nil {
		t.Fatal(err)
	}
	if v, _ := db.Version(ctx); v != 0 {
		t.Fatalf("empty database reports version %d", v)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate empty database: %v", err)
	}
	if v, _ := db.Version(ctx); v != store.LatestVersion() {
		t.Fatalf("after migrate: version %d", v)
	}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future')`, store.LatestVersion()+1); err != nil {
		t.Fatal(err)
	}
	err := db.Migrate(ctx)
	if !errors.Is(err, store.ErrSchemaNewer) {
		t.Fatalf("migrate on a newer schema: %v, want ErrSchemaNewer", err)
	}
}

func TestValidID(t *testing.T) {
	for s, want := range map[string]bool{
		"0b4f8a34-5c1e-4a58-9f1a-2f0d9d1b7c11": true,
		"0B4F8A34-5C1E-4A58-9F1A-2F0D9D1B7C11": true,
		"0b4f8a34-5c1e-4a58-9f1a-2f0d9d1b7c1":  false,
		"0b4f8a345c1e4a589f1a2f0d9d1b7c11":     false,
		"1":                                    false,
		"' OR 1=1 --":                          false,
		"0b4f8a34-5c1e-4a58-9f1a-2f0d9d1b7c1g": false,
	} {
		if store.ValidID(s) != want {
			t.Errorf("ValidID(%q) = %v", s, !want)
		}
	}
}
